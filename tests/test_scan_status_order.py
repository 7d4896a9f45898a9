"""The order of an IMAP scan's STATUS checks (issue 3): STATUS INBOX is the session's first mailbox command,
before LIST, because Dovecot answers it several times slower once anything else has touched a mailbox; the
folders are still scanned Sent first. Unchanged folders are skipped with one STATUS each and nothing else;
new mail in either folder is found; servers without CONDSTORE / ESEARCH / SPECIAL-USE still work; on Gmail
(All Mail instead of INBOX and Sent) no STATUS INBOX is asked at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine.scan import ScanReport, scan_once
from followupd.mail import imap
from followupd.mail.imap import Connected, ImapSession
from followupd.mail.source import FolderInfo, FolderStatus, RawMessage
from followupd.store.db import Database
from followupd.store.models import Folder
from tests import mailgen
from tests.mailgen import ALIAS, BOB, CAROL, at, build_world, person
from tests.servers.dovecot import Dovecot
from tests.servers.hostile_imap import HostileImap
from tests.servers.plugin import Mailbox

NOW = at(30)
MAILBOX_COMMANDS = ("LIST", "STATUS", "SELECT", "SEARCH", "FETCH")
# What an old or minimal server offers: no CONDSTORE (no HIGHESTMODSEQ), no ESEARCH, no SPECIAL-USE.
BARE_CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR ENABLE UIDPLUS IDLE"
PASSWORD = "status-order-pw"


def make_config(db: Database, user: str, port: int) -> Config:
    main = mailgen.account_toml("main", user, port=port, aliases=[ALIAS])
    return config_mod.parse(mailgen.config_toml(str(db.url), main), env={})


def scan(db: Database, config: Config, now: datetime = NOW) -> ScanReport:
    report = scan_once(db, config, now=now, sleep=no_backoff)
    assert report.errors == {}
    return report


def no_backoff(seconds: float) -> None:
    raise AssertionError(f"unexpected retry (backoff {seconds:.1f} s) in a scan without faults")


def seed(server: Dovecot, user: str) -> None:
    world = build_world(user)
    server.write_maildir(user, "INBOX", mailgen.render_all(world.inbox))
    server.write_maildir(user, "Sent", mailgen.render_all(world.sent))


def cursors(db: Database) -> dict[str, tuple[int | None, int | None, int | None, int]]:
    with db.read() as session:
        return {
            f.name: (f.uidvalidity, f.uidnext, f.highestmodseq, f.last_uid or 0)
            for f in session.scalars(select(Folder))
        }


def server_status(server: Dovecot, user: str, folder: str, *, modseq: bool = True) -> tuple[int, ...]:
    what = ["UIDVALIDITY", "UIDNEXT"] + (["HIGHESTMODSEQ"] if modseq else [])
    with server.client(user) as client:
        data = client.folder_status(folder, what)
    return tuple(int(data[name.encode()]) for name in what)


def selected(calls: list[tuple[str, ...]]) -> list[str]:
    """The folders SELECTed, in the order first selected (the meetings pass selects a folder again)."""
    return list(dict.fromkeys(c[1] for c in calls if c[0] == "select"))


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every account here reads its password from PW; the servers' users are given that password."""
    monkeypatch.setenv("PW", PASSWORD)


@pytest.fixture
def box(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    """A fresh user on the shared Dovecot, seeded with the mailgen world."""
    seed(mailbox.dovecot, mailbox.user)
    monkeypatch.setenv("PW", mailbox.password)
    return mailbox


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Every ImapSession.status / folders / select call, in order, as (method, folder)."""
    recorded: list[tuple[str, ...]] = []

    def spy(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: ImapSession, *args: Any, **kwargs: Any) -> Any:
            recorded.append((name, *(a for a in args if isinstance(a, str))))
            return original(self, *args, **kwargs)

        return call

    for name in ("status", "folders", "select"):
        monkeypatch.setattr(ImapSession, name, spy(name, getattr(ImapSession, name)))
    return recorded


# ------------------------------------------------------------------------------------ a real Dovecot


@pytest.mark.dovecot
@pytest.mark.timeout(60)
def test_status_inbox_comes_first_and_sent_is_still_scanned_first(
    box: Mailbox, db: Database, calls: list[tuple[str, ...]]
) -> None:
    config = make_config(db, box.user, box.dovecot.port)

    first = scan(db, config)

    assert calls[:3] == [("status", "INBOX"), ("folders",), ("status", "Sent")]
    assert selected(calls) == ["Sent", "INBOX"]
    assert first.accounts[0].folders_scanned == 2
    assert first.messages_new > 0
    # The cursors are exactly what the server says now: the early STATUS is as good as a late one.
    stored = cursors(db)
    for name in ("INBOX", "Sent"):
        assert stored[name][:3] == server_status(box.dovecot, box.user, name)
        assert stored[name][3] == stored[name][1] - 1  # uidnext - 1: everything up to it was fetched

    calls.clear()
    again = scan(db, config)
    assert calls == [("status", "INBOX"), ("folders",), ("status", "Sent")]  # one STATUS each, no SELECT
    assert again.accounts[0].folders_skipped == 2
    assert again.messages_new == 0
    assert cursors(db) == stored


@pytest.mark.dovecot
@pytest.mark.timeout(60)
def test_on_the_wire_an_unchanged_account_costs_status_list_status(box: Mailbox, db: Database) -> None:
    scan(db, make_config(db, box.user, box.dovecot.port))
    with HostileImap(box.dovecot.port) as proxy:  # no fault: a recording proxy
        report = scan(db, make_config(db, box.user, proxy.port))
        commands = list(proxy.commands)
    assert report.accounts[0].folders_skipped == 2
    assert commands.index("LOGIN") < commands.index("STATUS")
    assert [c for c in commands if c in MAILBOX_COMMANDS] == ["STATUS", "LIST", "STATUS"]


@pytest.mark.dovecot
@pytest.mark.timeout(60)
@pytest.mark.parametrize("folder", ["INBOX", "Sent"])
def test_new_mail_in_either_folder_is_found_and_only_that_folder_is_scanned(
    box: Mailbox, db: Database, folder: str, calls: list[tuple[str, ...]]
) -> None:
    config = make_config(db, box.user, box.dovecot.port)
    scan(db, config)
    assert scan(db, config).accounts[0].folders_skipped == 2
    if folder == "INBOX":
        mail = person(CAROL, box.user, "Lunch next week?", at(29), "status-order-inbox")
    else:
        mail = person(box.user, BOB, "Quick question", at(29), "status-order-sent")
    box.dovecot.append(box.user, folder, mail.render(), flags=["\\Seen"])
    calls.clear()

    report = scan(db, config, now=at(31))

    stats = report.accounts[0]
    assert (stats.messages_new, stats.folders_scanned, stats.folders_skipped) == (1, 1, 1)
    assert selected(calls) == [folder]
    stored = cursors(db)
    assert stored[folder][:3] == server_status(box.dovecot, box.user, folder)
    assert scan(db, config, now=at(32)).accounts[0].folders_skipped == 2


@pytest.mark.dovecot
@pytest.mark.timeout(60)
def test_a_server_without_condstore_esearch_or_special_use_still_scans_and_skips(
    dovecot_factory: Callable[..., Dovecot], db: Database, calls: list[tuple[str, ...]]
) -> None:
    bare = dovecot_factory(extra_config=f"imap_capability = {BARE_CAPABILITIES}")
    user = "bare@example.org"
    bare.add_user(user, PASSWORD)
    seed(bare, user)
    config = make_config(db, user, bare.port)

    first = scan(db, config)

    assert first.messages_new > 0
    assert calls[:3] == [("status", "INBOX"), ("folders",), ("status", "Sent")]
    stored = cursors(db)
    for name in ("INBOX", "Sent"):
        assert stored[name][2] is None  # no HIGHESTMODSEQ asked, none stored
        assert stored[name][:2] == server_status(bare, user, name, modseq=False)
    assert scan(db, config).accounts[0].folders_skipped == 2
    bare.append(
        user,
        "INBOX",
        person(CAROL, user, "Are you around?", at(29), "status-order-bare").render(),
        flags=["\\Seen"],
    )
    report = scan(db, config, now=at(31))
    assert (report.messages_new, report.accounts[0].folders_skipped) == (1, 1)


# ------------------------------------------------------------------------- Gmail, with a scripted session


class GmailSession:
    """Just enough of ImapSession for a Gmail scan: X-GM-EXT-1, All Mail (and INBOX, which is not scanned)."""

    statuses: ClassVar[dict[str, FolderStatus]] = {}
    messages: ClassVar[list[RawMessage]] = []
    asked: ClassVar[list[str]] = []

    def __init__(self, cfg: Any, password: str, **_: Any) -> None:
        self.info = Connected(frozenset({"IMAP4REV1", "X-GM-EXT-1", "CONDSTORE"}))

    def __enter__(self) -> GmailSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def folders(self, extra: tuple[str, ...] = ()) -> list[FolderInfo]:
        self.asked.append("LIST")
        return [FolderInfo("[Gmail]/All Mail", "all")]

    def status(self, folder: str) -> FolderStatus:
        self.asked.append(f"STATUS {folder}")
        return self.statuses[folder]

    def select(self, folder: str) -> None:
        self.asked.append(f"SELECT {folder}")

    def uids_after(self, last_uid: int) -> list[int]:
        return [m.uid for m in self.messages if m.uid > last_uid]

    def fetch_headers(self, first_uid: int, last_uid: int) -> Iterator[RawMessage]:
        return iter([m for m in self.messages if first_uid <= m.uid <= last_uid])


def test_gmail_asks_no_status_inbox_and_keeps_all_mail_cursor(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap, "ImapSession", GmailSession)
    monkeypatch.setattr(GmailSession, "asked", [])
    mail = person(CAROL, "me@example.org", "Coffee?", at(20), "status-order-gmail").render()
    monkeypatch.setattr(
        GmailSession, "messages", [RawMessage(uid=7, headers=mail.split(b"\r\n\r\n")[0] + b"\r\n")]
    )
    monkeypatch.setattr(GmailSession, "statuses", {"[Gmail]/All Mail": FolderStatus(42, 8, 1, 900)})
    main = mailgen.account_toml("main", "me@example.org", port=993, aliases=[ALIAS])
    # Headers only: the meetings pass reads structures through the real client, which this session has not.
    text = "[scan]\nmeetings = false\n\n" + mailgen.config_toml(str(db.url), main)
    config = config_mod.parse(text, env={})

    first = scan(db, config)

    assert GmailSession.asked == ["LIST", "STATUS [Gmail]/All Mail", "SELECT [Gmail]/All Mail"]
    assert first.messages_new == 1
    assert cursors(db) == {"[Gmail]/All Mail": (42, 8, 900, 7)}
    GmailSession.asked.clear()
    assert scan(db, config).accounts[0].folders_skipped == 1
    assert GmailSession.asked == ["LIST", "STATUS [Gmail]/All Mail"]
    # A flag change (HIGHESTMODSEQ only) is a change, scanned without fetching anything.
    GmailSession.statuses["[Gmail]/All Mail"] = FolderStatus(42, 8, 1, 901)
    report = scan(db, config, now=at(31))
    assert (report.accounts[0].folders_scanned, report.messages_new) == (1, 0)
    assert cursors(db) == {"[Gmail]/All Mail": (42, 8, 901, 7)}
