"""SIGKILL ``followupd run`` at random moments across scan, plan and send, restart it, and check that
nothing is lost or doubled.

The real program (``python -m followupd --config ... --now T run``) runs against a real Dovecot (a mailbox
of ``PEOPLE`` correspondents the user answered, plus ``FILLERS`` messages so the scan has many batches) and
an aiosmtpd server that stores each message and answers a moment later, so kills land before, during and
after DATA. Drafts are approved automatically (``review = false``, ``hold = "0s"``), the send window is
always open. Each run is killed after a random delay or, now and then, left to finish one cycle
(``run --once``). Afterwards a clean ``run --once`` (twice if anything is left), and the invariants:

* every message on the server is stored exactly once (Message-ID unique, the set equals the mailbox's,
  including the Sent copies the daemon filed itself);
* no contact lost: every contact of a clean in-process scan of the same mailbox is there;
* no draft sent twice: no Message-ID arrives twice at the SMTP server;
* none stuck: no draft in SENDING or APPROVED; a SENT draft arrived exactly once; an UNKNOWN draft only if
  the server never got it or Sent lacks it.

Bounded: ``FOLLOWUPD_CRASH_RUNS`` runs (default 40) and ``FOLLOWUPD_CRASH_BUDGET_S`` seconds (default 40).
``CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import email
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from followupd import config as config_mod
from followupd.engine.scan import scan_once
from followupd.store import contacts_repo
from followupd.store.db import Database
from followupd.store.models import Draft
from tests import mailgen
from tests.mailgen import at, server_uids, stored
from tests.servers.plugin import DatabaseUrlFactory, Mailbox
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.dovecot, pytest.mark.slow, pytest.mark.timeout(300)]

RUNS = int(os.environ.get("FOLLOWUPD_CRASH_RUNS", "40"))
BUDGET_S = float(os.environ.get("FOLLOWUPD_CRASH_BUDGET_S", "40"))
PEOPLE = 30
FILLERS = 1500
KILL_AFTER_S = (0.3, 1.6)  # start-up takes ~0.9 s: kills land in start-up, scan, plan and send
FINISH_EVERY = 8  # about one run in six is a `run --once` left to finish
REPLY_PAUSE_S = 0.05
NOW = at(10)
REPO = Path(__file__).resolve().parents[2]
SETTINGS = """
[daemon]
poll_interval = "1s"
plan_interval = "1s"
lease = "1h"  # PostgreSQL: a killed run's accounts are freed because its process is gone, not by expiry

[cadence]
max_new_per_day = 1000
max_new_per_week = 5000
jitter = "0s"

[send]
review = false
hold = "0s"
window = "daily 00:00-23:59"
daily_cap = 2000
per_minute = 60
"""


@dataclass
class Figures:
    runs: int = 0
    kills: int = 0
    finished: int = 0
    seconds: float = 0.0


def seed(mailbox: Mailbox) -> None:
    me = mailbox.user
    inbox, sent = [], []
    for n in range(PEOPLE):
        them = f"person{n}@example.com"
        first = mailgen.person(mailgen.named(them, f"Person {n}"), me, f"Hello {n}", at(0, n), f"p{n}")
        inbox.append(first)
        sent.append(mailgen.reply(first, me, at(1, n), f"me-p{n}"))
    inbox += mailgen.filler("frank@example.net", me, FILLERS, start=at(2), prefix="fill")
    mailbox.dovecot.write_maildir(me, "INBOX", mailgen.render_all(inbox))
    mailbox.dovecot.write_maildir(me, "Sent", mailgen.render_all(sent))


class Program:
    """Runs of the real program. Each run's clock starts where the wall clock is now (``NOW`` plus the time
    since the first run), as a real clock would: a fixed ``--now`` would send every restart back to ``NOW``,
    and a draft planned 0.5 s into one run would look "not yet scheduled" to the next."""

    def __init__(self, config_path: Path, env: dict[str, str], log: Path) -> None:
        self.config_path, self.env, self.log = config_path, env, log
        self.origin = time.monotonic()

    def run(self, *args: str, kill_after: float | None = None, timeout: float = 60) -> int | None:
        argv = [
            sys.executable,
            "-m",
            "followupd",
            "--config",
            str(self.config_path),
            "--now",
            (NOW + timedelta(seconds=time.monotonic() - self.origin)).isoformat(),
        ]
        with self.log.open("ab") as out:
            proc = subprocess.Popen([*argv, "run", *args], env=self.env, stdout=out, stderr=out)
            try:
                return proc.wait(timeout=kill_after if kill_after is not None else timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if kill_after is None:
                    raise
                return None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def contact_emails(db: Database) -> set[str]:
    with db.read() as session:
        return {a for view in contacts_repo.list_contacts(session) for a in view.addresses}


@pytest.fixture
def reference_url(database_url_factory: DatabaseUrlFactory) -> str:
    """A second database on the test's backend, for a clean scan to compare with."""
    return database_url_factory("reference")


def reference_contacts(mailbox: Mailbox, url: str, text: str) -> set[str]:
    """The contacts of a clean scan of the same mailbox, into the new database at ``url``."""
    reference = Database(url)
    try:
        reference.upgrade()
        config = config_mod.parse(text.replace(text.split('"', 2)[1], url, 1), env={"PW": mailbox.password})
        assert scan_once(reference, config, now=NOW).errors == {}
        return contact_emails(reference)
    finally:
        reference.dispose()


def message_ids(contents: list[bytes]) -> Counter[str]:
    return Counter(str(email.message_from_bytes(c)["Message-ID"]) for c in contents)


def test_sigkill_of_run_at_random_moments_loses_and_doubles_nothing(
    mailbox: Mailbox,
    smtp_server: SmtpServer,
    db: Database,
    tmp_path: Path,
    *,
    reference_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(mailbox)
    account = mailgen.account_toml("main", mailbox.user, port=mailbox.dovecot.port, batch_size=100)
    account += f'[accounts.smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
    account += 'password_env = "SMTP_PW"\ntimeout = "5s"\n'
    text = mailgen.config_toml(str(db.url), account) + SETTINGS
    config_path = tmp_path / "config.toml"
    config_path.write_text(text)
    config_path.chmod(0o600)
    monkeypatch.setenv("PW", mailbox.password)
    expected_contacts = reference_contacts(mailbox, reference_url, text)
    assert len(expected_contacts) >= PEOPLE
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(PW=mailbox.password, SMTP_PW="unused", PYTHONPATH=str(REPO))
    smtp_server.set_mode("stall", seconds=REPLY_PAUSE_S)
    program = Program(config_path, env, tmp_path / "runs.log")
    seed_value = int(os.environ.get("CRASH_SEED", str(time.time_ns() % 2**32)))
    rng = random.Random(seed_value)

    figures = Figures()
    started = time.monotonic()
    while figures.runs < RUNS and time.monotonic() - started < BUDGET_S:
        figures.runs += 1
        if rng.randrange(FINISH_EVERY) == 0:
            code = program.run("--once")
            figures.finished += 1
            assert code in (0, 4), f"run --once exited {code}:\n{program.tail()}"
        else:
            code = program.run(kill_after=rng.uniform(*KILL_AFTER_S))
            figures.kills += code is None
            assert code is None or code == 0, f"run exited {code}:\n{program.tail()}"
    figures.seconds = time.monotonic() - started

    for _ in range(3):  # finish the queue; a second pass scans the Sent copies the first one filed
        assert program.run("--once") == 0, program.tail()
        with db.read() as session:
            left = session.scalars(select(Draft.state).where(Draft.state.in_(("approved", "queued")))).all()
        if not left:
            break
    assert program.run("--once") == 0, program.tail()

    context = f"seed {seed_value}, {figures}"
    # Messages: exactly the mailbox, once each.
    rows = stored(db)  # asserts one row per Message-ID
    with mailbox.dovecot.client(mailbox.user) as client:
        on_server = set(server_uids(client, "INBOX")) | set(server_uids(client, "Sent"))
        sent_folder = Counter(server_uids(client, "Sent"))
    assert set(rows) == on_server, context
    # Contacts: none lost.
    assert expected_contacts <= contact_emails(db), context
    # Drafts: none twice at the server, none stuck.
    received = message_ids([m.content for m in smtp_server.messages])
    assert all(count == 1 for count in received.values()), f"a draft arrived twice: {context}"
    with db.read() as session:
        drafts = {
            mid.strip("<>"): state for mid, state in session.execute(select(Draft.message_id, Draft.state))
        }
    states = Counter(drafts.values())
    assert states["sending"] == 0 and states["approved"] == 0 and states["queued"] == 0, (states, context)
    by_bare = {mid.strip("<>"): n for mid, n in received.items()}
    for message_id, state in drafts.items():
        if state == "sent":
            assert by_bare.get(message_id) == 1, (message_id, context)
        elif state == "unknown":
            assert by_bare.get(message_id, 0) == 0 or message_id not in sent_folder, (message_id, context)
    assert len(drafts) >= PEOPLE, (states, context)
    print(  # the figures for docs/reliability.md; shown with -s
        f"\nrun crash test (seed {seed_value}): {figures.runs} runs in {figures.seconds:.1f} s, "
        f"{figures.kills} killed, {figures.finished} left to finish; {len(rows)} messages stored once each; "
        f"{len(contact_emails(db))} contacts (none lost); {len(drafts)} drafts {dict(states)}; "
        f"server received {sum(received.values())} messages, none twice"
    )
