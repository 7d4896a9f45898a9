"""Hostile IMAP servers: a fault-injecting proxy in front of a real Dovecot (``tests/servers/hostile_imap``)
disconnects, says BYE, stalls, answers garbage, announces a 1 GiB literal, or pushes unsolicited
EXPUNGE/EXISTS — at each command of a scan in turn.

Each case: ``scan_once`` through the proxy must return (never raise): either a clean result, or a MailError
(MailTimeoutError for stalls) for the account, with the database consistent (one row per Message-ID, a
folder cursor that covers only stored rows). Then a scan straight against the real server must leave
exactly what a clean scan of the same mailbox leaves in a second database. Faults that hit only the first
connection must be recovered by the scan's own retry, with the exact result in one call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine.scan import ScanReport, scan_once
from followupd.errors import MailError, MailTimeoutError
from followupd.store.db import Database
from followupd.store.models import Folder, Message
from tests import mailgen
from tests.mailgen import ALIAS, at, build_world, snapshot, stored
from tests.servers.hostile_imap import COMMANDS, Action, Fault, HostileImap
from tests.servers.plugin import DatabaseUrlFactory, Mailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(60)]

NOW = at(30)
FILLERS = 60  # 70 messages in INBOX: two fetch batches of 50, so a fault at the second FETCH is mid-scan
STALL_TIMEOUT_S = 1  # the socket timeout where a stall is injected; 5 s elsewhere (loaded CI machines)


@pytest.fixture
def dbs(db: Database, database_url_factory: DatabaseUrlFactory) -> Iterator[tuple[Database, Database]]:
    """The scanned database and a reference for a clean scan, on the same backend."""
    reference = Database(database_url_factory("reference"))
    reference.upgrade()
    yield db, reference
    reference.dispose()


@pytest.fixture
def seeded(mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    world = build_world(mailbox.user, fillers=FILLERS)
    mailbox.dovecot.write_maildir(mailbox.user, "INBOX", mailgen.render_all(world.inbox))
    mailbox.dovecot.write_maildir(mailbox.user, "Sent", mailgen.render_all(world.sent))
    monkeypatch.setenv("PW", mailbox.password)
    return mailbox


def make_config(db: Database, user: str, port: int, timeout_s: int = 5) -> Config:
    account = mailgen.account_toml("main", user, port=port, aliases=[ALIAS])
    account = account.replace('timeout = "10s"', f'timeout = "{timeout_s}s"')
    return config_mod.parse(mailgen.config_toml(str(db.url), account), env={})


def consistent(db: Database) -> int:
    """Assert what must hold after any fault; return how many messages are stored."""
    rows = stored(db)  # asserts one row per Message-ID
    with db.read() as session:
        for folder in session.scalars(select(Folder)):
            uids = session.scalars(select(Message.uid).where(Message.folder_id == folder.id)).all()
            assert all(uid is not None and uid <= (folder.last_uid or 0) for uid in uids), folder.name
    return len(rows)


def run_fault(
    seeded: Mailbox, dbs: tuple[Database, Database], fault: Fault
) -> tuple[ScanReport, HostileImap]:
    db, reference = dbs
    with HostileImap(seeded.dovecot.port, fault) as proxy:
        delays: list[float] = []
        started = time.monotonic()
        timeout_s = STALL_TIMEOUT_S if fault.action in ("stall", "huge_literal") else 5
        config = make_config(db, seeded.user, proxy.port, timeout_s)
        report = scan_once(db, config, now=NOW, sleep=delays.append)
        elapsed = time.monotonic() - started
    assert elapsed < 30, f"{fault}: {elapsed:.1f} s"
    assert proxy.faults_injected >= 1, f"{fault} never fired; commands seen: {proxy.commands}"
    consistent(db)
    # Recovery: a scan against the good server gives exactly the clean result.
    clean = scan_once(reference, make_config(reference, seeded.user, seeded.dovecot.port), now=NOW)
    assert clean.errors == {}
    again = scan_once(db, make_config(db, seeded.user, seeded.dovecot.port), now=NOW)
    assert again.errors == {}
    assert snapshot(db) == snapshot(reference), fault
    return report, proxy


ALWAYS: list[tuple[str, Action]] = [
    (command, action) for command in COMMANDS for action in ("disconnect", "stall", "garbage")
]


@pytest.mark.parametrize(("command", "action"), ALWAYS)
def test_a_fault_at_every_command_on_every_connection_is_reported_then_recovered(
    seeded: Mailbox, dbs: tuple[Database, Database], command: str, action: Action
) -> None:
    report, _ = run_fault(seeded, dbs, Fault(command, action))
    errors = report.errors
    if action == "garbage" and command in ("GREETING", "CAPABILITY", "LIST", "STATUS", "SELECT"):
        # Junk untagged data plus an OK may be survivable; what matters is no crash and the recovery above.
        assert set(errors) <= {"main"}
    else:
        assert set(errors) == {"main"}, f"{command}/{action}: {errors}"
    for error in errors.values():
        assert isinstance(error, MailError), repr(error)
        if action == "stall":
            assert isinstance(error, MailTimeoutError), repr(error)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("action", ["disconnect", "bye"])
def test_a_fault_on_the_first_connection_only_is_retried_to_the_exact_result(
    seeded: Mailbox, dbs: tuple[Database, Database], command: str, action: Action
) -> None:
    report, proxy = run_fault(seeded, dbs, Fault(command, action, times=1))
    assert report.errors == {}, report.errors
    assert proxy.connections >= 2


def test_a_fault_mid_scan_keeps_the_first_batch(seeded: Mailbox, dbs: tuple[Database, Database]) -> None:
    report, _ = run_fault(seeded, dbs, Fault("FETCH", "disconnect", nth=2))
    assert set(report.errors) == {"main"}


def test_a_huge_literal_times_out_without_reading_it(seeded: Mailbox, dbs: tuple[Database, Database]) -> None:
    report, _ = run_fault(seeded, dbs, Fault("FETCH", "huge_literal"))
    [error] = report.errors.values()
    assert isinstance(error, MailError)


@pytest.mark.parametrize("command", ["SELECT", "SEARCH", "FETCH", "STATUS"])
def test_unsolicited_expunge_and_exists_mid_scan(
    seeded: Mailbox, dbs: tuple[Database, Database], command: str
) -> None:
    report, _ = run_fault(seeded, dbs, Fault(command, "unsolicited"))
    for error in report.errors.values():
        assert isinstance(error, MailError)
