"""``followupd scan`` on a database shared by workers (PostgreSQL): it scans the accounts no worker owns,
claimed and fenced for the scan, skips the others with a line naming their owner, gives its claims back."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from followupd.cli import cli
from followupd.errors import AlreadyRunningError
from followupd.store import leases
from followupd.store.db import Database
from followupd.store.models import Account, Message
from tests import mailgen

pytestmark = pytest.mark.db_backend("postgresql")

LIVE = f"{socket.gethostname()}:{os.getpid()}:20240403T100000Z"  # a worker whose process exists: this one


def write_config(tmp_path: Path, db: Database) -> Path:
    tables = []
    for name in ("busy", "free"):
        maildir = tmp_path / name
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        raw = mailgen.person(
            f"friend@{name}.example", f"me@{name}.example", "hello", mailgen.at(), name
        ).render()
        (maildir / "cur" / f"1.{name}:2,S").write_bytes(raw)
        account = f'[[accounts]]\nname = "{name}"\nemail = "me@{name}.example"\n'
        tables.append(account + f'[accounts.maildir]\npath = "{maildir}"\n')
    path = tmp_path / "config.toml"
    path.write_text(mailgen.config_toml(db.url.render_as_string(hide_password=False), *tables))
    path.chmod(0o600)
    return path


def scan(path: Path, *names: str) -> Result:
    args = ["--config", str(path), "scan", *(("--account", names[0]) if names else ())]
    return CliRunner().invoke(cli, args, env={"FOLLOWUPD_CONFIG": ""})


def held_by_a_live_worker(db: Database, *names: str) -> None:
    with db.write() as session:
        leases.ensure_accounts(session, [(n, f"me@{n}.example") for n in ("busy", "free")])
        claimed = leases.claim(session, LIVE, list(names), lease=timedelta(hours=1))
    assert sorted(c.name for c in claimed) == sorted(names)


def owners(db: Database) -> dict[str, str | None]:
    with db.read() as session:
        return {name: owner for name, owner in session.execute(select(Account.name, Account.owner))}


def stored(db: Database) -> list[str]:
    with db.read() as session:
        return sorted(session.scalars(select(Message.message_id)))


def test_scans_only_what_no_worker_owns(db: Database, tmp_path: Path) -> None:
    path = write_config(tmp_path, db)
    held_by_a_live_worker(db, "busy")
    result = scan(path)
    assert result.exit_code == 0, result.output
    assert f"busy: skipped: owned by worker {LIVE}" in result.stderr
    assert "free:" in result.stdout and "busy:" not in result.stdout
    assert stored(db) == [mailgen.mid("free")]  # the owned account was not touched
    assert owners(db) == {"busy": LIVE, "free": None}  # its own claim given back


def test_everything_owned_is_exit_8(db: Database, tmp_path: Path) -> None:
    path = write_config(tmp_path, db)
    held_by_a_live_worker(db, "busy", "free")
    for result, owned in ((scan(path), "own every account"), (scan(path, "busy"), "own busy")):
        assert isinstance(result.exception, AlreadyRunningError)  # the entry point exits with its code, 8
        assert result.exception.exit_code == 8 and owned in str(result.exception)
    assert stored(db) == []


def test_without_workers_it_scans_everything(db: Database, tmp_path: Path) -> None:
    path = write_config(tmp_path, db)
    result = scan(path)
    assert result.exit_code == 0, result.output
    assert stored(db) == sorted([mailgen.mid("busy"), mailgen.mid("free")])
    assert owners(db) == {"busy": None, "free": None}
