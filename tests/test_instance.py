"""One daemon per SQLite database: flock beside the file, and a second ``followupd run`` refused with exit
code 8. PostgreSQL has no database-wide lock: workers lease accounts instead (tests/test_leases.py)."""

from __future__ import annotations

import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from followupd import instance
from followupd.errors import AlreadyRunningError
from followupd.store.db import Database
from tests.test_daemon import Spawn, spawn  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(30)


# SQLite only (the flock on a lock file next to the database); PostgreSQL takes no such lock (below).
@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'data' / 'followupd.db'}")
    yield db
    db.dispose()


def test_sqlite_lock_refuses_a_second_holder_until_released(sqlite_db: Database) -> None:
    path = instance.lock_path(sqlite_db.url)
    assert path is not None
    assert path.name == "followupd.db.lock"
    with instance.acquire(sqlite_db) as lock:
        assert str(path) in lock.description
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip().isdigit()  # the holder's pid, for the message
        with pytest.raises(
            AlreadyRunningError, match=r"another followupd daemon \(pid \d+\) is already running"
        ):
            instance.acquire(sqlite_db)  # a second open file description: flock refuses, even in-process
    with instance.acquire(sqlite_db):  # released: free again
        pass
    assert path.exists()  # never deleted (that would race with the next opener)


def test_release_is_idempotent(sqlite_db: Database) -> None:
    lock = instance.acquire(sqlite_db)
    lock.release()
    lock.release()


def test_in_memory_sqlite_needs_no_lock() -> None:
    assert instance.lock_path(make_url("sqlite://")) is None
    db = Database("sqlite://")
    try:
        with instance.acquire(db) as lock:
            assert "nothing to lock" in lock.description
    finally:
        db.dispose()


def test_already_running_exits_with_code_8() -> None:
    assert AlreadyRunningError.exit_code == 8


@pytest.mark.postgres
def test_a_shared_database_has_no_database_wide_lock(postgres_url: str) -> None:
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        with (
            instance.acquire(first) as lock,
            instance.acquire(second),
        ):  # workers share it: accounts are leased
            assert "no database-wide lock" in lock.description
    finally:
        first.dispose()
        second.dispose()


def test_a_second_daemon_is_refused(tmp_path: Path, spawn: Spawn) -> None:  # noqa: F811
    # SQLite only: one daemon per SQLite database (flock); on PostgreSQL several workers share the database.
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "f.db"}"\n'
        f'[[accounts]]\nname = "local"\nemail = "me@example.org"\n[accounts.maildir]\npath = "{maildir}"\n'
    )
    config.chmod(0o600)
    first = spawn(config)
    first.wait_for_output(r"followupd .* running: 1 account\(s\)")
    second = spawn(config)
    assert second.proc.wait(15) == 8
    assert f"another followupd daemon (pid {first.proc.pid}) is already running" in second.output
    once = spawn(config, "--once")  # a one-shot cycle would race the daemon's sends: refused as well
    assert once.proc.wait(15) == 8
    assert first.proc.poll() is None
    first.signal(signal.SIGINT)  # Ctrl-C stops as cleanly as SIGTERM
    assert first.proc.wait(15) == 0
    assert "followupd stopped (SIGINT)" in first.output
