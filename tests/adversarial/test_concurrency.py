"""The database shared by the daemon and the CLI: writers in parallel, nothing locked out, nothing lost.

Engine level (SQLite and PostgreSQL): a "daemon" thread delivers new mail to a Maildir and runs
``scan_once`` + ``plan_once`` over and over while "CLI" threads ignore, mute and unmute contacts and read
lists and status, each in its own transaction on its own engine. Afterwards: no thread saw an error ("database
is locked" included), every status the user set is still there (a scan never overwrites it: no lost update),
every message is stored once and every address's inbound count equals the mail it sent.

CLI level (SQLite): real ``followupd contacts ignore`` / ``status --json`` / ``contacts list`` processes run
while the daemon thread writes; every one exits 0 and none prints "locked".
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine.plan import plan_once
from followupd.engine.scan import scan_once
from followupd.store import contacts_repo
from followupd.store.db import Database
from followupd.store.models import AddressRow, ContactStatus, Message
from tests.test_plan_engine import Mailbox as Maildir
from tests.test_send import config_text

pytestmark = pytest.mark.timeout(120)

ME = "me@example.org"
PEOPLE = 12
ROUNDS = 15
PER_ROUND = 40
START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)


def person(n: int) -> str:
    return f"person{n}@example.com"


def message(sender: str, to: str, tag: str, at: datetime) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: note {tag}\r\nDate: {format_datetime(at)}\r\n"
        f"Message-ID: <{tag}@example.com>\r\n\r\nHello.\r\n"
    ).encode()


class World:
    def __init__(self, root: Path) -> None:
        self.mail = Maildir(root)
        self.inbound: dict[str, int] = {}
        self.serial = 0
        for n in range(PEOPLE):
            self.deliver(person(n))
            self.mail.add("Sent", message(ME, person(n), f"reply{n}", START + timedelta(hours=1)), START)

    def deliver(self, sender: str) -> None:
        self.serial += 1
        at = START + timedelta(minutes=self.serial)
        self.mail.add("INBOX", message(sender, ME, f"in{self.serial}", at), at)
        self.inbound[sender] = self.inbound.get(sender, 0) + 1


@pytest.fixture
def databases(database_url: str) -> Iterator[Callable[[], Database]]:
    """Engines on this test's database (each backend), one per simulated process."""
    opened: list[Database] = []

    def open_one() -> Database:
        db = Database(database_url)
        opened.append(db)
        return db

    yield open_one
    for db in opened:
        db.dispose()


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # collected and asserted on by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)
    return errors


def daemon_loop(db: Database, config: Config, world: World) -> Callable[[], None]:
    def loop() -> None:
        for round_ in range(ROUNDS):
            for k in range(PER_ROUND):
                world.deliver(person((round_ + k) % PEOPLE) if k % 4 == 0 else f"filler{k}@example.net")
            report = scan_once(db, config, now=NOW + timedelta(minutes=round_))
            assert report.errors == {}, report.errors
            plan_once(db, config, now=NOW + timedelta(minutes=round_))

    return loop


def user_loop(db: Database, mine: list[int], final: dict[str, ContactStatus]) -> Callable[[], None]:
    """Flip the status of this thread's contacts many times; remember what the user set last."""

    def loop() -> None:
        for round_ in range(ROUNDS * 2):
            for n in mine:
                status = [ContactStatus.IGNORED, ContactStatus.ACTIVE, ContactStatus.IGNORED][round_ % 3]
                with db.write() as session:
                    if round_ % 5 == 4:
                        contacts_repo.mute(session, person(n), NOW + timedelta(days=30))
                        final[person(n)] = ContactStatus.MUTED
                    else:
                        contacts_repo.set_status(session, person(n), status)
                        final[person(n)] = status
            with db.read() as session:
                contacts_repo.list_contacts(session)

    return loop


def check(db: Database, world: World, final: dict[str, ContactStatus]) -> None:
    with db.read() as session:
        stored = session.scalar(select(func.count()).select_from(Message))
        distinct = session.scalar(select(func.count(func.distinct(Message.message_id))))
        counts = {e: c for e, c in session.execute(select(AddressRow.email, AddressRow.inbound_count))}
        views = {a: v for v in contacts_repo.list_contacts(session) for a in v.addresses}
    assert stored == distinct == world.mail.count
    for sender, expected in world.inbound.items():
        assert counts[sender] == expected, sender
    for address, status in final.items():
        assert views[address].status == status.value, (address, views[address].status, status)


def test_scans_and_user_edits_in_parallel_lose_nothing(
    databases: Callable[[], Database], tmp_path: Path, database_url: str
) -> None:
    world = World(tmp_path / "Maildir")
    daemon_db = databases()
    daemon_db.upgrade()
    config = config_mod.parse(config_text(database_url, maildir=tmp_path / "Maildir", email_addr=ME), env={})
    assert scan_once(daemon_db, config, now=NOW).errors == {}
    final: dict[str, ContactStatus] = {}
    users = [list(range(k, PEOPLE, 3)) for k in range(3)]
    errors = run_threads(
        [daemon_loop(daemon_db, config, world), *(user_loop(databases(), mine, final) for mine in users)]
    )
    assert errors == [], errors
    assert scan_once(daemon_db, config, now=NOW + timedelta(hours=1)).errors == {}
    check(daemon_db, world, final)


def test_cli_commands_while_the_daemon_writes(tmp_path: Path) -> None:
    # SQLite only: real processes contending for SQLite's single writer lock ("database is locked").
    db_url = f"sqlite:///{tmp_path / 'followupd.sqlite'}"
    world = World(tmp_path / "Maildir")
    config_path = tmp_path / "config.toml"
    config_path.write_text(config_text(db_url, maildir=tmp_path / "Maildir", email_addr=ME))
    config_path.chmod(0o600)
    db = Database(db_url)
    try:
        db.upgrade()
        config = config_mod.load(config_path)
        assert scan_once(db, config, now=NOW).errors == {}
        outputs: list[tuple[int, str]] = []
        lock = threading.Lock()

        def cli(*args: str) -> None:
            argv = [sys.executable, "-m", "followupd", "--config", str(config_path), *args]
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False, env=dict(os.environ))
            with lock:
                outputs.append((done.returncode, (done.stdout + done.stderr).decode(errors="replace")))

        def hammer(numbers: list[int]) -> Callable[[], None]:
            def loop() -> None:
                cli("contacts", "ignore", *(person(n) for n in numbers))
                cli("status", "--json")
                cli("contacts", "list")

            return loop

        errors = run_threads(
            [daemon_loop(db, config, world), *(hammer(list(range(k, PEOPLE, 4))) for k in range(4))]
        )
        assert errors == [], errors
        assert len(outputs) == 4 * 3
        for code, output in outputs:
            assert code == 0 and "locked" not in output.lower(), output[-2000:]
        check(db, world, {person(n): ContactStatus.IGNORED for n in range(PEOPLE)})
    finally:
        db.dispose()
