"""plan_once against a database built by scanning a small Maildir: which drafts appear, idempotency,
supersede on a newer exchange, ignored contacts, dry runs, review = false, and what the drafts contain."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine.plan import plan_once
from followupd.engine.scan import scan_once
from followupd.store import contacts_repo, drafts_repo
from followupd.store.db import Database
from followupd.store.models import ContactStatus, Draft

ME = "me@example.org"
ADA = "ada@example.com"  # new contact, conversation stopped
BOB = "bob@example.net"  # last exchange half a year ago: keep in touch
CAROL = "carol@example.com"  # the user asked something, no answer
DAN = "dan@example.com"  # wrote last: a reply is owed, no draft
EVE = "eve@example.net"  # like Bob, but ignored

NOW = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
LATER = datetime(2024, 4, 3, 9, 0, tzinfo=UTC)


def eml(sender: str, to: str, subject: str, at: datetime, mid: str, *, reply_to: str | None = None) -> bytes:
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(at)}",
        f"Message-ID: <{mid}>",
    ]
    if reply_to:
        lines += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    return ("\r\n".join(lines) + "\r\n\r\nHello.\r\n").encode()


class Mailbox:
    """A Maildir: INBOX at the root, Sent in ``.Sent``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        for folder in (root, root / ".Sent"):
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)

    def add(self, folder: str, data: bytes, at: datetime) -> None:
        """Deliver ``data``; the file's mtime is the delivery time (Maildir's INTERNALDATE)."""
        self.count += 1
        base = self.root if folder == "INBOX" else self.root / ".Sent"
        path = base / "cur" / f"{1_700_000_000 + self.count}.{self.count}.host:2,S"
        path.write_bytes(data)
        os.utime(path, (at.timestamp(), at.timestamp()))

    def inbound(self, sender: str, subject: str, at: datetime, mid: str, reply_to: str | None = None) -> None:
        self.add("INBOX", eml(sender, ME, subject, at, mid, reply_to=reply_to), at)

    def outbound(self, to: str, subject: str, at: datetime, mid: str, reply_to: str | None = None) -> None:
        self.add("Sent", eml(f"Me Person <{ME}>", to, subject, at, mid, reply_to=reply_to), at)


def build_world(mail: Mailbox) -> None:
    d = datetime
    mail.inbound(ADA, "Lunch at the conference", d(2024, 3, 20, 10, tzinfo=UTC), "a1@example.com")
    mail.outbound(
        ADA, "Re: Lunch at the conference", d(2024, 3, 21, 10, tzinfo=UTC), "a2@example.org", "a1@example.com"
    )
    mail.inbound(BOB, "Project notes", d(2023, 10, 1, 10, tzinfo=UTC), "b1@example.net")
    mail.outbound(
        BOB, "Re: Project notes", d(2023, 10, 2, 10, tzinfo=UTC), "b2@example.org", "b1@example.net"
    )
    mail.outbound(CAROL, "Are you coming to the meetup?", d(2024, 3, 20, 10, tzinfo=UTC), "c1@example.org")
    mail.outbound(DAN, "The slides", d(2024, 3, 1, 10, tzinfo=UTC), "d1@example.org")
    mail.inbound(DAN, "Re: The slides", d(2024, 3, 30, 10, tzinfo=UTC), "d2@example.com", "d1@example.org")
    mail.inbound(EVE, "Old times", d(2023, 10, 1, 10, tzinfo=UTC), "e1@example.net")
    mail.outbound(EVE, "Re: Old times", d(2023, 10, 2, 10, tzinfo=UTC), "e2@example.org", "e1@example.net")


def write_config(tmp_path: Path, url: str, *, review: bool = True) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n\n'
        f'[[accounts]]\nname = "main"\nemail = "{ME}"\ndisplay_name = "Me Person"\n'
        f'[accounts.maildir]\npath = "{tmp_path / "Maildir"}"\n\n'
        f"[send]\nreview = {'true' if review else 'false'}\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def mail(tmp_path: Path) -> Mailbox:
    mailbox = Mailbox(tmp_path / "Maildir")
    build_world(mailbox)
    return mailbox


def open_world(tmp_path: Path, url: str, *, review: bool = True) -> tuple[Database, Config]:
    """Scan the Maildir under ``tmp_path`` into the database at ``url``; the caller disposes of it."""
    config = config_mod.load(write_config(tmp_path, url, review=review))
    db = Database(config.database.url)
    db.upgrade()
    report = scan_once(db, config, now=NOW)
    assert not report.errors
    return db, config


@pytest.fixture
def opened(tmp_path: Path, database_url: str) -> Iterator[Callable[..., tuple[Database, Config]]]:
    """``open_world`` on this test's database (each backend); disposed of afterwards."""
    dbs: list[Database] = []

    def open_(*, review: bool = True) -> tuple[Database, Config]:
        db, config = open_world(tmp_path, database_url, review=review)
        dbs.append(db)
        return db, config

    yield open_
    for db in dbs:
        db.dispose()


@pytest.fixture
def world(opened: Callable[..., tuple[Database, Config]], mail: Mailbox) -> tuple[Database, Config]:
    return opened()


def by_contact(db: Database) -> dict[str, list[drafts_repo.DraftView]]:
    with db.read() as session:
        views = drafts_repo.list_drafts(session)
    out: dict[str, list[drafts_repo.DraftView]] = {}
    for view in views:
        out.setdefault(view.contact, []).append(view)
    return out


def draft_count(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Draft)) or 0


def test_scan_admits_the_people(world: tuple[Database, Config]) -> None:
    db, _ = world
    with db.read() as session:
        emails = {view.email for view in contacts_repo.list_contacts(session)}
    assert {ADA, BOB, CAROL, DAN, EVE} <= emails
    assert ME not in emails


def test_plan_queues_the_right_reasons(world: tuple[Database, Config]) -> None:
    db, config = world
    result = plan_once(db, config, now=NOW)
    reasons = {d.contact: d.reason for d in result.queued}
    assert reasons == {
        ADA: "new_contact",
        BOB: "keep_in_touch",
        CAROL: "awaiting_reply",
        EVE: "keep_in_touch",
    }
    assert DAN not in reasons  # a reply is owed: the user answers, no follow-up draft
    drafts = by_contact(db)
    assert set(drafts) == set(reasons)
    for views in drafts.values():
        (view,) = views
        assert view.state == "queued"
        assert view.why
        assert view.to == view.contact


def test_awaiting_reply_threads_into_the_question(world: tuple[Database, Config]) -> None:
    db, config = world
    plan_once(db, config, now=NOW)
    (carol,) = by_contact(db)[CAROL]
    assert carol.in_reply_to == "<c1@example.org>"
    assert "meetup" in carol.subject.lower()
    (ada,) = by_contact(db)[ADA]
    assert ada.in_reply_to in {"<a2@example.org>", "<a1@example.com>"}  # replies into the last thread
    (bob,) = by_contact(db)[BOB]
    assert bob.in_reply_to is None  # keep-in-touch starts a new thread


def test_drafts_are_clean_and_pass_lint(world: tuple[Database, Config]) -> None:
    db, config = world
    plan_once(db, config, now=NOW)
    with db.read() as session:
        rows = session.scalars(select(Draft)).all()
        assert rows
        for row in rows:
            for header in (row.subject, row.from_addr, row.to_addrs, row.message_id, row.in_reply_to or "",
                           row.references or ""):  # fmt: skip
                assert "\r" not in header and "\n" not in header
            assert row.message_id.startswith("<") and row.message_id.endswith("@example.org>")
            assert row.from_addr == f"Me Person <{ME}>"
            codes = {item["code"] for item in json.loads(row.lint)}
            assert codes <= {"empty-slot"}, (row.reason, row.lint)
            assert row.body.endswith("\n") and row.body.strip()
        ids = [row.message_id for row in rows]
    assert len(set(ids)) == len(ids)


def test_replanning_is_idempotent(world: tuple[Database, Config]) -> None:
    db, config = world
    first = plan_once(db, config, now=NOW)
    assert first.queued
    count = draft_count(db)
    again = plan_once(db, config, now=NOW)
    assert again.queued == [] and again.superseded == 0
    later = plan_once(db, config, now=datetime(2024, 4, 1, 18, tzinfo=UTC))
    assert later.queued == [] and later.superseded == 0
    assert draft_count(db) == count


def test_newer_inbound_supersedes_the_draft(
    opened: Callable[..., tuple[Database, Config]], mail: Mailbox
) -> None:
    db, config = opened()
    plan_once(db, config, now=NOW)
    (ada,) = by_contact(db)[ADA]
    mail.inbound(ADA, "Re: Lunch at the conference", datetime(2024, 4, 2, 8, tzinfo=UTC), "a3@example.com",
                 "a2@example.org")  # fmt: skip
    assert not scan_once(db, config, now=LATER).errors
    result = plan_once(db, config, now=LATER)
    assert [(s.id, s.contact) for s in result.superseded_drafts] == [(ada.id, ADA)]
    assert ADA not in {d.contact for d in result.queued}  # she wrote last: a reply is owed
    (after,) = by_contact(db)[ADA]
    assert after.state == "superseded"
    assert plan_once(db, config, now=LATER).superseded == 0  # compare-and-set: once


def test_ignored_contacts_get_nothing(world: tuple[Database, Config]) -> None:
    db, config = world
    with db.write() as session:
        contacts_repo.set_status(session, EVE, ContactStatus.IGNORED)
    result = plan_once(db, config, now=NOW)
    assert EVE not in {d.contact for d in result.queued}
    assert EVE not in by_contact(db)


def test_ignoring_supersedes_a_live_draft(world: tuple[Database, Config]) -> None:
    db, config = world
    plan_once(db, config, now=NOW)
    with db.write() as session:
        contacts_repo.set_status(session, EVE, ContactStatus.IGNORED)
    result = plan_once(db, config, now=NOW)
    assert [s.contact for s in result.superseded_drafts] == [EVE]
    assert by_contact(db)[EVE][0].state == "superseded"


def test_dry_run_writes_nothing(world: tuple[Database, Config]) -> None:
    db, config = world
    preview = plan_once(db, config, now=NOW, dry_run=True)
    assert preview.dry_run
    assert {d.contact for d in preview.queued} == {ADA, BOB, CAROL, EVE}
    assert all(d.id is None and d.subject for d in preview.queued)
    assert draft_count(db) == 0
    real = plan_once(db, config, now=NOW)
    assert [(d.contact, d.reason, d.key) for d in real.queued] == [
        (d.contact, d.reason, d.key) for d in preview.queued
    ]


def test_review_false_approves_after_the_hold(
    opened: Callable[..., tuple[Database, Config]], mail: Mailbox
) -> None:
    db, config = opened(review=False)
    result = plan_once(db, config, now=NOW)
    assert result.queued
    for views in by_contact(db).values():
        for view in views:
            assert view.state == "approved"
            assert view.scheduled_at >= NOW + config.send.hold


def test_daily_cap(db: Database, database_url: str, tmp_path: Path, mail: Mailbox) -> None:
    path = write_config(tmp_path, database_url)
    path.write_text(path.read_text() + "\n[cadence]\nmax_new_per_day = 2\n")
    config = config_mod.load(path)
    scan_once(db, config, now=NOW)
    first = plan_once(db, config, now=NOW)
    assert len(first.queued) == 2
    # time-bound triggers first
    assert {d.reason for d in first.queued} == {"new_contact", "awaiting_reply"}
    assert plan_once(db, config, now=NOW).queued == []  # the day's budget is spent
    assert len(plan_once(db, config, now=datetime(2024, 4, 2, 9, tzinfo=UTC)).queued) == 2


def test_list_drafts_filters(world: tuple[Database, Config]) -> None:
    db, config = world
    plan_once(db, config, now=NOW)
    with db.read() as session:
        assert {v.contact for v in drafts_repo.list_drafts(session, reason="keep_in_touch")} == {BOB, EVE}
        assert [v.contact for v in drafts_repo.list_drafts(session, contact=CAROL.upper())] == [CAROL]
        assert drafts_repo.list_drafts(session, states=["approved"]) == []
        assert len(drafts_repo.list_drafts(session, states=["queued", "approved"])) == 4
