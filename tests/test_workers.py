"""Several real ``followupd run`` workers on one PostgreSQL database, against a real Dovecot.

* Two workers share six accounts: they end up owning disjoint sets that together cover every account, three
  each, and ``followupd status --json`` shows it; a clean stop gives the accounts back.
* A worker SIGKILLed while it scans a large mailbox (thousands of messages, small batches): with
  ``[daemon] lease = "2s"`` the other worker takes the account over and finishes the scan; afterwards every
  message on the server is stored exactly once and no contact of a clean reference scan is missing.

Waiting is polling the database (or ``status --json``) until a condition holds, with a deadline that only
bounds a failing test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from followupd import config as config_mod
from followupd.engine.scan import scan_once
from followupd.store import contacts_repo
from followupd.store.db import Database
from followupd.store.models import Account, Message
from tests import mailgen
from tests.mailgen import at, server_uids, stored
from tests.servers._util import terminate_all
from tests.servers.dovecot import Dovecot

pytestmark = [pytest.mark.db_backend("postgresql"), pytest.mark.dovecot, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[1]
SETTINGS = """
[daemon]
lease = "2s"
poll_interval = "1s"
plan_interval = "1h"

[scan]
meetings = false
"""
PEOPLE = 12
FILLERS = 5000


class Workers:
    """Real ``followupd run`` processes on one config; each logs to its own file."""

    def __init__(self, config_path: Path, env: dict[str, str], logs: Path) -> None:
        self.config_path, self.env, self.logs = config_path, env, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "followupd", "--config", str(self.config_path), *args]

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker{len(self.procs)}.log").open("ab")
        proc = subprocess.Popen(self.argv("run"), env=self.env, stdout=log, stderr=log)
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        self.killed.add(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def exited(self) -> list[int]:
        """Pids of workers that ended without being killed by the test."""
        return [p.pid for p in self.procs if p.poll() is not None and p.pid not in self.killed]

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            self.argv("status", "--json"), env=self.env, capture_output=True, check=True, timeout=30
        )
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def stop(self) -> None:
        terminate_all(self.procs, timeout=20)

    def text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log"))
        )


def wait_for(condition: Callable[[], Any], what: str, workers: Workers, *, deadline: float = 40.0) -> Any:
    """Poll ``condition`` until it returns something truthy; fail, with the logs, after ``deadline``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if workers.exited():
            break
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}\n{workers.tail()}")


@pytest.fixture
def pg(db: Database) -> Database:
    """The test's database, on PostgreSQL (the module's ``db_backend`` mark)."""
    return db


def setup(
    dovecot: Dovecot,
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mailboxes: dict[str, int],
    *,
    batch_size: int = 50,
) -> tuple[Workers, str, dict[str, str]]:
    """One Dovecot user per account (``name -> filler messages``), each with PEOPLE answered correspondents.
    Returns the workers, the config text and name -> user."""
    accounts, env, users = [], {}, {}
    for index, (name, fillers) in enumerate(mailboxes.items()):
        user = f"{name}-{os.getpid()}-{time.monotonic_ns()}@example.org"
        password = f"pw-{index}-secret"
        dovecot.add_user(user, password)
        inbox, sent = [], []
        for n in range(PEOPLE):
            them = mailgen.named(f"{name}.person{n}@example.com", f"Person {n}")
            first = mailgen.person(them, user, f"Hello {n}", at(0, n), f"{name}-p{n}")
            inbox.append(first)
            sent.append(mailgen.reply(first, user, at(1, n), f"{name}-me{n}"))
        inbox += mailgen.filler("frank@example.net", user, fillers, start=at(2), prefix=f"{name}-fill")
        dovecot.write_maildir(user, "INBOX", mailgen.render_all(inbox))
        dovecot.write_maildir(user, "Sent", mailgen.render_all(sent))
        accounts.append(
            mailgen.account_toml(
                name, user, port=dovecot.port, password_env=f"PW_{index}", batch_size=batch_size
            )
        )
        env[f"PW_{index}"] = password
        users[name] = user
    text = mailgen.config_toml(str(db.url.render_as_string(hide_password=False)), *accounts) + SETTINGS
    config_path = tmp_path / "config.toml"
    config_path.write_text(text)
    config_path.chmod(0o600)
    full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    full_env.update(env, PYTHONPATH=str(REPO))
    for key, value in env.items():  # for the in-process reference scan
        monkeypatch.setenv(key, value)
    logs = tmp_path / "logs"
    logs.mkdir()
    return Workers(config_path, full_env, logs), text, users


def owners(db: Database) -> dict[str, str | None]:
    with db.read() as session:
        return {name: owner for name, owner in session.execute(select(Account.name, Account.owner))}


def test_two_workers_share_six_accounts_disjointly(
    dovecot: Dovecot, pg: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"acct{n}" for n in range(6)]
    workers, _text, _users = setup(dovecot, pg, tmp_path, monkeypatch, dict.fromkeys(names, 0))
    try:
        workers.start()
        workers.start()

        def balanced() -> dict[str, Any] | None:
            status = workers.status()
            shares = sorted(len(w["accounts"]) for w in status["workers"])
            return status if shares == [3, 3] else None

        status = wait_for(balanced, "two live workers owning three accounts each", workers)
        first, second = ({*w["accounts"]} for w in status["workers"])
        assert first.isdisjoint(second) and first | second == set(names)
        assert status["unowned"] == []
        by_owner = {o["name"]: o["owner"] for o in status["owners"]}
        assert {by_owner[n] for n in first} == {status["workers"][0]["id"]}
        assert {by_owner[n] for n in second} == {status["workers"][1]["id"]}
        assert set(owners(pg).values()) == {w["id"] for w in status["workers"]}
        pids = {w["pid"] for w in status["workers"]}
        assert pids == {p.pid for p in workers.procs}
        assert status["daemon"]["state"] == "running"
        text = subprocess.run(
            workers.argv("status"), env=workers.env, capture_output=True, text=True, timeout=30, check=True
        )
        assert "daemon:     running: 2 workers sharing the accounts" in text.stdout, text.stdout
    finally:
        workers.stop()
    assert [p.returncode for p in workers.procs] == [0, 0], workers.tail()
    assert set(owners(pg).values()) == {None}  # a clean stop gives every account back
    assert workers.status()["workers"] == []


def test_a_worker_killed_mid_scan_is_taken_over_and_nothing_is_lost_or_doubled(
    dovecot: Dovecot, pg: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers, text, users = setup(
        dovecot, pg, tmp_path, monkeypatch, {"big": FILLERS, "small": 0}, batch_size=50
    )
    big_total = FILLERS + 2 * PEOPLE
    try:
        workers.start()
        workers.start()

        def big_mid_scan() -> tuple[str, int] | None:
            with pg.read() as session:
                owner = session.scalar(select(Account.owner).where(Account.name == "big"))
                count = session.scalar(
                    select(func.count())
                    .select_from(Message)
                    .join(Account, Account.id == Message.account_id)
                    .where(Account.name == "big")
                )
            return (owner, int(count or 0)) if owner and (count or 0) >= 200 else None

        owner, count_at_kill = wait_for(big_mid_scan, "the scan of the big mailbox under way", workers)
        victim = next(p for p in workers.procs if f":{p.pid}:" in owner)
        workers.kill(victim)
        with pg.read() as session:
            count_at_kill = session.scalar(select(func.count()).select_from(Message)) or 0
        assert count_at_kill < big_total + 2 * PEOPLE, "the scan finished before the kill: raise FILLERS"

        survivor = next(p for p in workers.procs if p is not victim)
        wait_for(
            lambda: f":{survivor.pid}:" in (owners(pg)["big"] or ""),
            "the survivor owning the big account",
            workers,
        )
        on_server: set[str] = set()
        for user in users.values():
            with dovecot.client(user) as client:
                on_server |= set(server_uids(client, "INBOX")) | set(server_uids(client, "Sent"))
        assert len(on_server) == big_total + 2 * PEOPLE

        def big_done() -> bool:
            with pg.read() as session:
                count = session.scalar(
                    select(func.count())
                    .select_from(Message)
                    .join(Account, Account.id == Message.account_id)
                    .where(Account.name == "big")
                )
            return count == big_total

        wait_for(big_done, "the survivor finishing the scan", workers, deadline=60)
        assert survivor.poll() is None, workers.tail()
        assert f"big: claimed (taken over from {owner}" in workers.text(), workers.tail()
        status = workers.status()
        assert [w["pid"] for w in status["workers"]] == [survivor.pid]
        assert sorted(status["workers"][0]["accounts"]) == ["big", "small"]
    finally:
        workers.stop()

    rows = stored(pg)  # asserts one row per Message-ID (the two mailboxes share none)
    assert set(rows) == on_server
    reference = reference_contacts(text, tmp_path)
    with pg.read() as session:
        found = {a for view in contacts_repo.list_contacts(session) for a in view.addresses}
    assert reference and reference <= found


def reference_contacts(text: str, tmp_path: Path) -> set[str]:
    """The contacts of a clean in-process scan of the same mailboxes into SQLite."""
    reference = Database(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    try:
        reference.upgrade()
        url = text.split('"', 2)[1]
        config = config_mod.parse(text.replace(url, str(reference.url), 1), env=dict(os.environ))
        assert scan_once(reference, config, now=at(10)).errors == {}
        with reference.read() as session:
            return {a for view in contacts_repo.list_contacts(session) for a in view.addresses}
    finally:
        reference.dispose()
