"""Meetings learned from local stores (Maildir and mbox): the same invites and threads as over IMAP, read
whole only for the messages whose headers say they may hold one."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine.scan import scan_once
from followupd.mail import local_bodies
from followupd.mail.local import MaildirSource, MboxSource
from followupd.mail.local_bodies import BodyReader, content_type
from followupd.store.db import Database
from followupd.store.meetings_views import MeetingView, list_meetings
from tests import mailgen
from tests import meetingmail as mm
from tests.mailgen import Mail, newsletter, person, reply

pytestmark = pytest.mark.timeout(60)

ME = "me@example.org"
NOW = mm.NOW
_serial = iter(range(1, 10_000))


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def make_maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(folder: Path, raw: bytes) -> Path:
    path = folder / "cur" / f"1773000000.M{next(_serial)}P1.host:2,S"
    path.write_bytes(raw)
    os.utime(path, (NOW.timestamp(), NOW.timestamp()))  # the delivery time: after every Date here
    return path


def mbox_entry(raw: bytes, at: datetime = NOW) -> bytes:
    text = raw.replace(b"\r\n", b"\n")
    if text.startswith(b"From "):  # a fixture that already carries its own envelope line
        text = text.split(b"\n", 1)[1]
    quoted = b"\n".join(b">" + line if line.startswith(b"From ") else line for line in text.split(b"\n"))
    return (
        b"From sender@example.org " + at.strftime("%a %b %d %H:%M:%S %Y").encode() + b"\n" + quoted + b"\n\n"
    )


def make_config(db: Database, kind: str, path: Path) -> Config:
    text = (
        f'[database]\nurl = "{db.url.render_as_string(hide_password=False)}"\n\n'
        f'[[accounts]]\nname = "main"\nemail = "{ME}"\naliases = ["{mm.SAM}"]\n'
        f'[accounts.{kind}]\npath = "{path}"\n'
    )
    return config_mod.parse(text, env={})


def scan(db: Database, config: Config, now: datetime = NOW) -> None:
    report = scan_once(db, config, now=now, sleep=lambda seconds: None)
    assert report.errors == {}


def meetings(db: Database) -> dict[str, MeetingView]:
    with db.read() as session:
        return {m.uid: m for m in list_meetings(session, now=NOW)}


def noise() -> list[Mail]:
    """Mail that must be left unread: an old note, a newsletter, a text/plain notification."""
    old = person(
        "Old Friend <old@example.net>",
        mm.SAM,
        "Lunch?",
        datetime(2025, 6, 2, 9, tzinfo=UTC),
        "old-1",
        body="Lunch on Thursday at noon?\n",
    )
    news = newsletter(
        "Brand <news@brand.example>", mm.SAM, "Offers", datetime(2026, 3, 12, tzinfo=UTC), "n-1"
    )
    return [old, news]


INVITE_UIDS = {mm.GOOGLE_UID, mm.OUTLOOK_UID, mm.TEAMS_UID, mm.APPLE_UID, mm.ZOOM_UID}


def test_maildir_invites_and_a_text_thread(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_maildir(tmp_path / "Mail")
    sent = make_maildir(root / ".Sent")
    ask, yes = mm.coffee_thread(ME)
    for raw in [*mm.vendor_invites().values(), ask.render(), *(m.render() for m in noise())]:
        deliver(root, raw)
    deliver(sent, yes.render())
    reads: list[int] = []
    real = BodyReader.read

    def counted(self: BodyReader, folder: str, uid: int) -> bytes | None:
        reads.append(uid)
        return real(self, folder, uid)

    monkeypatch.setattr(BodyReader, "read", counted)
    scan(db, make_config(db, "maildir", root))

    found = meetings(db)
    assert set(found) - INVITE_UIDS == {next(u for u in found if u.startswith("text-"))}
    assert found[mm.APPLE_UID].start_at == utc(3, 24, 9)
    coffee = next(m for m in found.values() if m.source == "text")
    assert (coffee.status, coffee.start_at, coffee.counts) == ("confirmed", utc(3, 12, 14), True)
    assert mailgen.contacts(db)[mm.ADA].last_meeting_at == utc(3, 12, 15)
    # Read whole: the five invites and the two recent person-to-person notes. Not the old note, not the
    # text/plain newsletter.
    assert len(reads) == 7

    # A cancel delivered later is folded in by the next (incremental) scan.
    jonas = "Jonas Beispiel <jonas.beispiel@example.de>"
    deliver(
        root,
        mm.outlook_file("outlook_cancel_custom_tz.ics", "c-1@example.de", sender=jonas, to=mm.SAM, day=8),
    )
    scan(db, make_config(db, "maildir", root), now=NOW)
    assert meetings(db)[mm.OUTLOOK_UID].status == "cancelled"
    assert mailgen.contacts(db)["jonas.beispiel@example.de"].last_meeting_at is None


def test_mbox_invites_and_a_text_thread(tmp_path: Path, db: Database) -> None:
    ask, yes = mm.coffee_thread(ME)
    raws = [*mm.vendor_invites().values(), ask.render(), yes.render(), *(m.render() for m in noise())]
    path = tmp_path / "All mail Including Spam and Trash.mbox"
    path.write_bytes(b"".join(mbox_entry(raw) for raw in raws))
    scan(db, make_config(db, "mbox", path))
    found = meetings(db)
    assert set(found) >= INVITE_UIDS and len(found) == 6
    assert found[mm.TEAMS_UID].start_at == utc(3, 5, 17)
    assert found[mm.ZOOM_UID].start_at == utc(3, 9, 17, 30)
    coffee = next(m for m in found.values() if m.source == "text")
    assert (coffee.status, coffee.start_at) == ("confirmed", utc(3, 12, 14))


def test_body_reader_follows_renamed_maildir_files_and_mbox_boundaries(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "Mail")
    first = deliver(root, b"Subject: one\r\n\r\nfirst body\r\n")
    source = MaildirSource(root)
    reader = BodyReader(source)
    uid = next(iter(source.paths("INBOX")))
    assert reader.read("INBOX", uid) == b"Subject: one\r\n\r\nfirst body\r\n"
    first.rename(first.with_name(first.name.replace(":2,S", ":2,RS")))  # the user replied: a flag changed
    assert reader.read("INBOX", uid) == b"Subject: one\r\n\r\nfirst body\r\n"
    first.with_name(first.name.replace(":2,S", ":2,RS")).unlink()
    assert reader.read("INBOX", uid) is None

    mbox = tmp_path / "box.mbox"
    one = mbox_entry(b"Subject: one\n\nFrom the desk of Ada:\nhello\n")
    two = mbox_entry(b"Subject: two\n\nsecond\n")
    mbox.write_bytes(one + two)
    reader = BodyReader(MboxSource(mbox))
    assert reader.read("box.mbox", 1) == one[:-1]  # up to the blank line before the next From line
    assert reader.read("box.mbox", len(one) + 1) == two
    assert reader.read("box.mbox", 5) is None  # not the start of a message
    small = BodyReader(MboxSource(mbox), limit=20)
    assert small.read("box.mbox", 1) == one[:20]


def test_content_type_gate() -> None:
    assert (
        content_type(b"Subject: x\r\nContent-Type: Multipart/Mixed;\r\n boundary=b\r\n") == "multipart/mixed"
    )
    assert content_type(b"Subject: x\r\n") == "text/plain"
    assert content_type(b"content-type:text/calendar; method=REQUEST\r\n") == "text/calendar"
    assert local_bodies.MAX_BODY_BYTES == 1_000_000
    date = format_datetime(NOW)
    assert content_type(f"Date: {date}\r\nContent-Type: text/html\r\n".encode()) == "text/html"
    # Reused by the mbox test: a reply from the user is outbound.
    assert reply(person("a@example.org", ME, "s", NOW, "x"), ME, NOW, "y").sender == ME


def test_a_later_scan_moves_the_weekly_meeting_on(tmp_path: Path, db: Database) -> None:
    root = make_maildir(tmp_path / "Mail")
    sent = make_maildir(root / ".Sent")
    ask, yes = mm.coffee_thread(ME)
    for raw in [*mm.vendor_invites().values(), ask.render()]:
        deliver(root, raw)
    deliver(sent, yes.render())
    config = make_config(db, "maildir", root)
    scan(db, config)
    scan(db, config, now=utc(3, 25, 12))  # time passes: the weekly meeting moves on
    with db.read() as session:
        found = {m.uid: m for m in list_meetings(session, now=NOW)}
    assert set(found) >= INVITE_UIDS and len(found) == 6
    assert found[mm.APPLE_UID].last_end_at == utc(3, 24, 9, 30)
    assert mailgen.contacts(db)[mm.ADA].last_meeting_at == utc(3, 12, 15)
