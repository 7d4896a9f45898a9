"""Issue 10's sending test with the real daemon: two ``followupd run`` workers on one PostgreSQL database
share ten accounts; 500 approved drafts appear; every draft arrives at the SMTP server exactly once, and both
workers sent some (each sends for the accounts it owns, claiming every draft with FOR UPDATE SKIP LOCKED).

(tests/test_two_workers_send.py races two processes over the same drafts with the engine's send_due; this one
runs the whole daemon: leases, shares, and the send loop.)
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from followupd.store.db import Database
from followupd.store.models import Draft
from tests.send_worker import seed
from tests.servers._util import terminate_all
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.db_backend("postgresql"), pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[1]
ACCOUNTS = [f"acct{n}" for n in range(10)]
PER_ACCOUNT = 50  # 500 drafts; per_minute is per account (at most 60), so each account's fit in a minute


def write_config(tmp_path: Path, db: Database, smtp_port: int) -> Path:
    lines = [
        f'[database]\nurl = "{db.url.render_as_string(hide_password=False)}"\n',
        '[daemon]\nlease = "2s"\npoll_interval = "1h"\nplan_interval = "1h"\n',
        '[send]\nreview = false\nhold = "0s"\nwindow = "daily 00:00-23:59"\n',
        "daily_cap = 2000\nper_minute = 60\n",
    ]
    for name in ACCOUNTS:
        maildir = tmp_path / name
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        lines.append(
            f'[[accounts]]\nname = "{name}"\nemail = "{name}@example.org"\n'
            f'[accounts.maildir]\npath = "{maildir}"\n'
            f'[accounts.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\ntimeout = "10s"\n'
            'password_env = "SMTP_PW"\n'  # the server offers no AUTH: never used
        )
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


class Daemons:
    def __init__(self, config: Path, logs: Path) -> None:
        self.config, self.logs = config, logs
        self.env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.env.update(SMTP_PW="unused", PYTHONPATH=str(REPO))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for n in range(count):
            with (self.logs / f"daemon{n}.log").open("ab") as out:
                argv = [sys.executable, "-m", "followupd", "--config", str(self.config), "run"]
                self.procs.append(
                    subprocess.Popen([*argv, "--send-interval", "0.5"], env=self.env, stdout=out, stderr=out)
                )

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        terminate_all(self.procs, timeout=30)

    def log(self, n: int) -> str:
        return (self.logs / f"daemon{n}.log").read_text(errors="replace")

    def tails(self) -> str:
        return "\n".join(f"--- daemon{n}\n{self.log(n)[-2500:]}" for n in range(len(self.procs)))


def wait_for(condition: Callable[[], Any], what: str, daemons: Daemons, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        assert daemons.alive(), f"a daemon exited while waiting for {what}\n{daemons.tails()}"
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{daemons.tails()}")


def shares(db: Database) -> list[int]:
    from followupd.store.models import Account

    with db.read() as session:
        owners = Counter(o for o in session.scalars(select(Account.owner)) if o is not None)
    return sorted(owners.values())


def sent_count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).where(Draft.state == "sent")) or 0)


def test_two_daemons_send_every_draft_exactly_once(
    db: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.set_mode("stall", seconds=0.005)  # stores each message, answers a moment later
    daemons = Daemons(write_config(tmp_path, db, smtp_server.port), tmp_path)
    daemons.start(2)
    try:
        wait_for(lambda: shares(db) == [5, 5], "the two workers to own five accounts each", daemons)
        ids = seed(db, ACCOUNTS, PER_ACCOUNT)  # approved, due an hour ago
        assert len(ids) == len(ACCOUNTS) * PER_ACCOUNT
        wait_for(lambda: sent_count(db) == len(ids), "every draft to be sent", daemons, deadline=120)
    finally:
        daemons.stop()
    received = Counter(str(email.message_from_bytes(m.content)["Message-ID"]) for m in smtp_server.messages)
    with db.read() as session:
        states = Counter(session.scalars(select(Draft.state)))
        message_ids = set(session.scalars(select(Draft.message_id)))
    assert states == {"sent": len(ids)}, states
    assert set(received) == message_ids and set(received.values()) == {1}  # each exactly once
    sent_by = [
        {int(i) for i in re.findall(r"followupd\.engine\.deliver: draft (\d+): sent \(", daemons.log(n))}
        for n in range(2)
    ]
    assert sent_by[0] and sent_by[1], ([len(s) for s in sent_by], daemons.tails())  # both did some
    assert not sent_by[0] & sent_by[1] and sent_by[0] | sent_by[1] == set(ids)  # and none twice
