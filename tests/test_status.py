"""``followupd status`` and the repository behind it: the heartbeat row (running / stale / stopped / never),
each account's last scan and error, drafts by state, and today's sends counted from the user's midnight."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from followupd.cli import cli
from followupd.store import status_repo
from followupd.store.db import Database
from followupd.store.models import Account, Worker
from tests.test_send import World

NOW = datetime(2024, 4, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
def config_path(tmp_path: Path, database_url: str) -> Path:
    maildir = tmp_path / "Maildir"
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n'
        '[send]\ntimezone = "America/New_York"\ndaily_cap = 12\n'
        f'[[accounts]]\nname = "main"\nemail = "me@example.org"\n[accounts.maildir]\npath = "{maildir}"\n'
        f'[[accounts]]\nname = "spare"\nemail = "me2@example.org"\n[accounts.maildir]\npath = "{maildir}"\n'
    )
    path.chmod(0o600)
    return path


def status(config_path: Path, *args: str, now: datetime = NOW) -> Result:
    result = CliRunner().invoke(
        cli, ["--config", str(config_path), "--now", now.isoformat(), "status", *args]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def status_json(config_path: Path, now: datetime = NOW) -> Any:
    return json.loads(status(config_path, "--json", now=now).stdout)


def beat(db: Database, worker_id: str, at: datetime, text: str = "accounts: 1 idle") -> None:
    with db.write() as session:
        status_repo.heartbeat(session, worker_id, now=at, status=text)


# -------------------------------------------------------------------------------------------- repository


def test_never_ran(db: Database) -> None:
    with db.read() as session:
        view = status_repo.read_status(session, now=NOW, day_start=NOW)
    assert (view.daemon, view.worker, view.heartbeat_age, view.sent_today) == ("never", None, None, 0)
    assert view.drafts["queued"] == 0
    assert set(view.drafts) >= {"queued", "approved", "sending", "sent", "unknown", "failed"}


def test_running_then_stale_then_stopped(db: Database) -> None:
    with db.write() as session:
        assert status_repo.register_worker(session, "w1", pid=11, host="h", now=NOW) == 0
    beat(db, "w1", NOW + timedelta(seconds=30))
    with db.read() as session:
        view = status_repo.read_status(session, now=NOW + timedelta(seconds=40), day_start=NOW)
        assert view.daemon == "running"
        assert view.heartbeat_age == timedelta(seconds=10)
        assert view.worker is not None and view.worker.status == "accounts: 1 idle"
        stale = status_repo.read_status(session, now=NOW + timedelta(minutes=5), day_start=NOW)
        assert stale.daemon == "stale"
    with db.write() as session:
        status_repo.stop_worker(session, "w1", now=NOW + timedelta(minutes=1), status="followupd stopped")
    with db.read() as session:
        view = status_repo.read_status(session, now=NOW + timedelta(minutes=5), day_start=NOW)
    assert view.daemon == "stopped"
    assert view.worker is not None and view.worker.status == "followupd stopped"


def test_a_crashed_run_is_closed_by_the_next_start_and_old_runs_are_pruned(db: Database) -> None:
    with db.write() as session:
        status_repo.register_worker(session, "ancient", pid=1, host="h", now=NOW - timedelta(days=90))
        status_repo.stop_worker(session, "ancient", now=NOW - timedelta(days=90), status="done")
        status_repo.register_worker(session, "crashed", pid=2, host="h", now=NOW - timedelta(hours=2))
    beat(db, "crashed", NOW - timedelta(hours=1))
    with db.write() as session:
        assert status_repo.register_worker(session, "new", pid=3, host="h", now=NOW) == 1
    with db.read() as session:
        rows = {w.id: (w.stopped_at, w.status) for w in session.scalars(select(Worker))}
        latest = status_repo.latest_worker(session)
    assert set(rows) == {"crashed", "new"}
    assert rows["crashed"][0] == NOW - timedelta(hours=1)  # its last sign of life
    assert "crash" in rows["crashed"][1]
    assert latest is not None and latest.id == "new"


def test_account_errors_and_recovery(db: Database) -> None:
    World(db)  # account "main"
    with db.write() as session:
        status_repo.record_scan(session, "main", now=NOW, error="IMAP refused the login")
    with db.read() as session:
        (health,) = status_repo.account_health(session)
    assert health.failing and health.last_error == "IMAP refused the login"
    with db.write() as session:
        status_repo.record_scan(session, "main", now=NOW + timedelta(minutes=1))
    with db.read() as session:
        (health,) = status_repo.account_health(session)
    assert not health.failing  # the error is kept, but it is older than the last good scan
    assert health.last_error == "IMAP refused the login"


def test_drafts_by_state_and_sends_since_midnight(db: Database) -> None:
    world = World(db)
    contact = world.contact()
    world.draft(contact)  # approved
    world.draft(contact, state="queued")
    world.draft(contact, state="sent", sent_at=NOW - timedelta(hours=1))
    world.draft(contact, state="sent", sent_at=NOW - timedelta(days=1))
    with db.read() as session:
        view = status_repo.read_status(session, now=NOW, day_start=NOW - timedelta(hours=10))
        assert status_repo.folder_uidnext(session, "main", "INBOX") is None
    assert view.drafts["approved"] == 1 and view.drafts["queued"] == 1 and view.drafts["sent"] == 2
    assert view.sent_today == 1


# ------------------------------------------------------------------------------------------------- CLI


def test_status_cli_before_the_daemon_ever_ran(config_path: Path, db: Database) -> None:
    out = status(config_path).stdout
    assert "daemon:     never ran on this database" in out
    assert "main   last scan never  ok" in out and "spare  last scan never  ok" in out
    assert "drafts:     none" in out
    assert "sent today: 0 (daily cap 12)" in out
    data = status_json(config_path)
    assert data["daemon"] == {"state": "never", "heartbeat_age_seconds": None, "worker": None}
    assert [a["name"] for a in data["accounts"]] == ["main", "spare"]


def test_status_cli_with_a_running_daemon(config_path: Path, db: Database) -> None:
    world = World(db)
    contact = world.contact()
    world.draft(contact, state="queued")
    # 05:00 UTC on April 3rd is 01:00 in New York: sent "today" there; 03:00 UTC is still April 2nd.
    world.draft(contact, state="sent", sent_at=datetime(2024, 4, 3, 5, 0, tzinfo=UTC))
    world.draft(contact, state="sent", sent_at=datetime(2024, 4, 3, 3, 0, tzinfo=UTC))
    with db.write() as session:
        status_repo.register_worker(session, "host:42:x", pid=42, host="host", now=NOW - timedelta(hours=2))
        status_repo.record_scan(session, "main", now=NOW - timedelta(minutes=1))
        session.add(Account(name="spare", email="me2@example.org"))
        session.flush()
        status_repo.record_scan(session, "spare", now=NOW - timedelta(minutes=3), error="IMAP down\nmore")
    beat(db, "host:42:x", NOW - timedelta(seconds=12), "accounts: 1 idle, 1 backoff")

    out = status(config_path).stdout
    assert "daemon:     running, pid 42 on host, up 2 h, heartbeat 12 s ago" in out
    assert "accounts: 1 idle, 1 backoff" in out
    assert "main   last scan 2024-04-03 09:59:00 UTC (60 s ago)  ok" in out
    assert "spare  last scan never  FAILING since 2024-04-03 09:57:00 UTC (3 min ago): IMAP down" in out
    assert "drafts:     queued 1, sent 2" in out
    assert "sent today: 1 (daily cap 12)" in out

    data = status_json(config_path)
    assert data["daemon"]["state"] == "running"
    assert data["daemon"]["heartbeat_age_seconds"] == 12.0
    assert data["daemon"]["worker"]["pid"] == 42
    assert data["sent_today"] == 1 and data["daily_cap"] == 12
    spare = next(a for a in data["accounts"] if a["name"] == "spare")
    assert spare["failing"] is True and spare["last_error"] == "IMAP down\nmore"

    later = status_json(config_path, now=NOW + timedelta(minutes=10))
    assert later["daemon"]["state"] == "stale"
    assert "STALE: pid 42 on host" in status(config_path, now=NOW + timedelta(minutes=10)).stdout
