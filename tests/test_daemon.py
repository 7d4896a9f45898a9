"""The daemon, run as the real program (``python -m followupd ... run``) against a real Dovecot and aiosmtpd.

- new mail is noticed through IDLE (the poll interval is an hour, so nothing else could notice it);
- the IMAP server is restarted under the daemon: it reconnects, catches up what arrived meanwhile, and IDLEs
  again, with nothing lost and nothing stored twice;
- one account whose login is refused never stops another;
- SIGTERM during a send: the send finishes and the draft is SENT, the next due draft is not started (past
  the grace period the draft stays SENDING and the next start makes it UNKNOWN) -- nothing reaches the
  server twice;
- SIGHUP with a broken config keeps the running one; with a good one, a new account is picked up;
- ``run --once`` does one cycle and exits (4 when an account failed).

In-process tests cover :mod:`followupd.mail.idle`: IDLE events, BYE, the wake pipe, and the watchdog against a
scripted server that never answers ``DONE``. Every subprocess is killed in teardown, whatever happened.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from followupd.errors import MailError, MailTimeoutError
from followupd.mail.idle import IdleEvent, Idler, Waker
from followupd.store import contacts_repo
from followupd.store.db import Database
from followupd.store.models import Draft, Meeting, Message
from tests import mailgen
from tests.servers.dovecot import Dovecot
from tests.servers.plugin import Mailbox
from tests.servers.smtp import SmtpServer

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
NOTICE_S = 15.0  # IDLE notices in ~0.5 s (benchmarks/latency.py measures it); this only bounds a hang
DAEMON_SETTINGS = '\n[daemon]\npoll_interval = "1h"\nplan_interval = "1h"\n'
ADMIT_SENDERS = "\n[scan.admission]\nwrote_directly = true\n"
NO_IDLE_CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR ENABLE UIDPLUS SPECIAL-USE CONDSTORE ESEARCH"


# ----------------------------------------------------------------------------------------- the harness


class DaemonProcess:
    """``python -m followupd --config CONFIG [pre-args] run [args]`` with its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for_output(self, pattern: str, timeout: float = 15.0, count: int = 1) -> str:
        """Wait until ``pattern`` (a regex) occurs ``count`` times in the output; return the output."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.output
            if len(re.findall(pattern, text)) >= count:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before {pattern!r}:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout} s:\n{text}")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; the exit code."""
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


Spawn = Callable[..., DaemonProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start daemons; every one still running at the end of the test is killed."""
    started: list[DaemonProcess] = []

    def start(
        config: Path, *args: str, env: dict[str, str] | None = None, pre: tuple[str, ...] = ()
    ) -> DaemonProcess:
        clean = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        clean.update(env or {})
        clean["PYTHONPATH"] = str(REPO)
        argv = [sys.executable, "-m", "followupd", "--config", str(config), *pre, "run", *args]
        daemon = DaemonProcess(argv, clean, tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The daemon's database (each backend), for the test to look into."""
    db = Database(database_url)
    yield db
    db.dispose()


def write_config(directory: Path, database: Database, *accounts: str, extra: str = "") -> Path:
    path = directory / "config.toml"
    url = database.url.render_as_string(hide_password=False)
    path.write_text(mailgen.config_toml(url, *accounts) + DAEMON_SETTINGS + ADMIT_SENDERS + extra)
    path.chmod(0o600)
    return path


def contact_emails(db: Database) -> set[str]:
    with db.read() as session:
        return {c.email for c in contacts_repo.list_contacts(session)}


def wait_for_contact(db: Database, email: str, timeout: float = NOTICE_S) -> float:
    """Seconds until ``email`` is a contact (AssertionError after ``timeout``)."""
    start = time.monotonic()
    while email not in contact_emails(db):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{email} not a contact after {timeout} s; have {contact_emails(db)}")
        time.sleep(0.02)
    return time.monotonic() - start


def inbound(sender: str, user: str, tag: str) -> bytes:
    return mailgen.person(sender, user, f"Hello from {sender}", mailgen.at(), tag).render()


def message_ids(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(Message.message_id)))


# ------------------------------------------------------------------------------------------------ IDLE


@pytest.mark.dovecot
def test_new_mail_is_noticed_via_idle(
    tmp_path: Path, mailbox: Mailbox, spawn: Spawn, database: Database
) -> None:
    dovecot, user, password = mailbox
    config = write_config(tmp_path, database, mailgen.account_toml("main", user, port=dovecot.port))
    daemon = spawn(config, env={"PW": password})
    daemon.wait_for_output(r"main: watching INBOX with IDLE")
    for n in range(3):
        sender = f"person{n}@example.net"
        dovecot.append(user, "INBOX", inbound(sender, user, f"idle-{n}"))
        wait_for_contact(database, sender)
    assert daemon.stop() == 0
    output = daemon.output
    assert re.search(r"followupd stopped \(SIGTERM\) after \d+s: \d+ scan\(s\), 3 new message\(s\)", output)
    assert "Traceback" not in output


@pytest.mark.dovecot
def test_imap_restart_reconnects_and_catches_up(
    tmp_path: Path, dovecot_factory: Callable[..., Dovecot], spawn: Spawn, database: Database
) -> None:
    dovecot = dovecot_factory()
    user = "restart@example.org"
    dovecot.add_user(user, "secret-pw")
    dovecot.write_maildir(user, "INBOX", [inbound("before@example.net", user, "before")])
    config = write_config(tmp_path, database, mailgen.account_toml("main", user, port=dovecot.port))
    daemon = spawn(config, env={"PW": "secret-pw"})
    daemon.wait_for_output(r"main: watching INBOX with IDLE")
    assert "before@example.net" in contact_emails(database)

    dovecot.stop()
    daemon.wait_for_output(r"main: .*(shutting down|closed|EOF)")
    dovecot.write_maildir(user, "INBOX", [inbound("meanwhile@example.net", user, "meanwhile")])
    dovecot.start()
    wait_for_contact(database, "meanwhile@example.net", timeout=15)  # the catch-up after reconnecting
    daemon.wait_for_output(r"main: watching INBOX with IDLE", count=2)
    dovecot.append(user, "INBOX", inbound("after@example.net", user, "after"))
    wait_for_contact(database, "after@example.net")  # IDLE again

    assert daemon.stop() == 0
    ids = message_ids(database)
    assert sorted(ids) == sorted(mailgen.mid(t) for t in ("before", "meanwhile", "after"))


@pytest.mark.dovecot
def test_a_refused_login_never_stops_another_account(
    tmp_path: Path, dovecot_factory: Callable[..., Dovecot], spawn: Spawn, database: Database
) -> None:
    # A private server: Dovecot delays every login from an address that just failed one (auth penalty).
    dovecot = dovecot_factory()
    user, password = "good@example.org", "good-pw"
    dovecot.add_user(user, password)
    good = mailgen.account_toml("good", user, port=dovecot.port)
    bad = mailgen.account_toml("bad", "nobody@example.org", port=dovecot.port, password_env="BAD_PW")
    config = write_config(tmp_path, database, bad, good)
    daemon = spawn(config, env={"PW": password, "BAD_PW": "wrong"})
    daemon.wait_for_output(r"good: watching INBOX with IDLE")
    daemon.wait_for_output(r"bad: not retrying for 60 minutes")
    # Not APPEND: after a refused login Dovecot delays every login from 127.0.0.1 (its auth penalty).
    dovecot.write_maildir(user, "INBOX", [inbound("fine@example.net", user, "fine")])
    wait_for_contact(database, "fine@example.net")
    status = subprocess.run(
        [sys.executable, "-m", "followupd", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    assert re.search(r"bad\s+last scan never\s+FAILING since .*refused the login", status), status
    assert re.search(r"good\s+last scan .* ok", status), status
    assert "daemon:     running, pid" in status
    assert daemon.stop() == 0


@pytest.mark.dovecot
def test_other_folders_and_servers_without_idle_are_polled(
    tmp_path: Path,
    dovecot_factory: Callable[..., Dovecot],
    mailbox: Mailbox,
    spawn: Spawn,
    database: Database,
) -> None:
    no_idle = dovecot_factory(extra_config=f"imap_capability = {NO_IDLE_CAPABILITIES}")
    plain = "plain@example.org"
    no_idle.add_user(plain, "plain-pw")
    dovecot, user, password = mailbox
    accounts = (
        mailgen.account_toml("idle", user, port=dovecot.port),
        mailgen.account_toml("plain", plain, port=no_idle.port, password_env="PW2"),
    )
    config = write_config(tmp_path, database, *accounts)
    config.write_text(config.read_text().replace('poll_interval = "1h"', 'poll_interval = "1s"'))
    daemon = spawn(config, env={"PW": password, "PW2": "plain-pw"})
    daemon.wait_for_output(r"idle: watching INBOX with IDLE")
    # Sent is not watched by IDLE: the user's own mail there is found by the poll (the IDLE is renewed).
    mine = mailgen.person(user, "friend@example.net", "Lunch?", mailgen.at(), "sent-1").render()
    dovecot.append(user, "Sent", mine, flags=["\\Seen"])
    wait_for_contact(database, "friend@example.net", timeout=NOTICE_S)
    # A server without IDLE is polled: connect, catch up, disconnect, every poll_interval.
    no_idle.append(plain, "INBOX", inbound("polled@example.net", plain, "polled"))
    wait_for_contact(database, "polled@example.net", timeout=NOTICE_S)
    assert "plain: watching" not in daemon.output
    assert daemon.stop() == 0


# ------------------------------------------------------------------------------------------------ SIGHUP


@pytest.mark.dovecot
def test_sighup_keeps_the_running_config_when_the_new_one_is_broken_and_applies_a_good_one(
    tmp_path: Path, mailbox: Mailbox, spawn: Spawn, database: Database
) -> None:
    dovecot, user, password = mailbox
    second = f"second-{user}"
    dovecot.add_user(second, "second-pw")
    first = mailgen.account_toml("first", user, port=dovecot.port)
    config = write_config(tmp_path, database, first)
    daemon = spawn(config, env={"PW": password, "PW2": "second-pw"})
    daemon.wait_for_output(r"first: watching INBOX with IDLE")

    good_text = config.read_text()
    config.write_text(good_text + "\n[send]\nwindow = 'whenever'\nunknown = [\n")  # broken TOML
    daemon.signal(signal.SIGHUP)
    output = daemon.wait_for_output(r"config reload failed; keeping the running config")
    assert "is not valid TOML" in output
    dovecot.append(user, "INBOX", inbound("still@example.net", user, "still"))
    wait_for_contact(database, "still@example.net")  # the old config still runs

    config.write_text(
        good_text + "\n" + mailgen.account_toml("second", second, port=dovecot.port, password_env="PW2")
    )
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_output(r"config reloaded from .* \(2 account\(s\)\)")
    daemon.wait_for_output(r"second: watching INBOX with IDLE")
    dovecot.append(second, "INBOX", inbound("new-account@example.net", second, "second-1"))
    wait_for_contact(database, "new-account@example.net")
    # The unchanged account's watcher was not restarted: it connected once.
    assert daemon.output.count("first: watching INBOX with IDLE") == 1
    assert daemon.stop() == 0


# ----------------------------------------------------------------------------------- SIGTERM and sends


def _send_setup(
    tmp_path: Path, url: str, smtp: SmtpServer, drafts: int = 1
) -> tuple[Path, list[int], Database]:
    from tests.test_send import NOW, Smtp, World, config_text

    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(url, smtp=Smtp(smtp.port, timeout="30s"), maildir=maildir) + DAEMON_SETTINGS
    )
    config.chmod(0o600)
    db = Database(url)
    db.upgrade()
    world = World(db)
    ids = [world.draft(world.contact(f"Person {n}")) for n in range(drafts)]
    assert NOW.weekday() == 2  # inside the default Mon-Fri 09:00-17:00 window, with --now
    return config, ids, db


def _draft_state(db: Database, draft_id: int) -> str:
    with db.read() as session:
        state = session.scalar(select(Draft.state).where(Draft.id == draft_id))
    assert state is not None
    return state


@pytest.mark.timeout(40)
def test_sigterm_during_a_send_lets_it_finish(
    tmp_path: Path, database_url: str, smtp_server: SmtpServer, spawn: Spawn
) -> None:
    from tests.test_send import NOW

    smtp_server.set_mode("stall", seconds=1.5)  # the server answers DATA 1.5 s after receiving it
    config, (first, second), db = _send_setup(tmp_path, database_url, smtp_server, drafts=2)
    try:
        daemon = spawn(config, env={"SMTP_PW": "unused"}, pre=("--now", NOW.isoformat()))
        smtp_server.wait_for_messages(1, timeout=15)  # the message data is in: the send is in flight
        assert daemon.stop() == 0
        assert _draft_state(db, first) == "sent"
        assert _draft_state(db, second) == "approved"  # due too, but no new send starts after SIGTERM
        assert len(smtp_server.data_attempts) == 1
        assert re.search(r"followupd stopped \(SIGTERM\) after .* 1 sent", daemon.output), daemon.output
    finally:
        db.dispose()


@pytest.mark.timeout(40)
def test_a_send_past_the_grace_period_is_abandoned_and_never_resent(
    tmp_path: Path, database_url: str, smtp_server: SmtpServer, spawn: Spawn
) -> None:
    from tests.test_send import NOW

    smtp_server.set_mode("stall", seconds=60)
    config, (draft_id,), db = _send_setup(tmp_path, database_url, smtp_server)
    try:
        pre = ("--now", NOW.isoformat())
        daemon = spawn(config, "--send-grace", "0.5", env={"SMTP_PW": "unused"}, pre=pre)
        smtp_server.wait_for_messages(1, timeout=15)
        started = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - started < 10
        assert "abandoning it" in daemon.output
        assert _draft_state(db, draft_id) == "sending"

        smtp_server.set_mode("accept")
        again = spawn(config, "--once", env={"SMTP_PW": "unused"}, pre=pre)
        assert again.proc.wait(30) == 0, again.output
        assert _draft_state(db, draft_id) == "unknown"  # resolved, not resent
        assert len(smtp_server.data_attempts) == 1
    finally:
        db.dispose()


# ------------------------------------------------------------------------------------------------ --once


@pytest.mark.dovecot
def test_run_once_does_one_cycle_and_reports_failed_accounts(
    tmp_path: Path, dovecot_factory: Callable[..., Dovecot], spawn: Spawn, database: Database
) -> None:
    dovecot = dovecot_factory()  # private: the refused login below would slow other tests' logins
    user, password = "once@example.org", "once-pw"
    dovecot.add_user(user, password)
    dovecot.write_maildir(user, "INBOX", [inbound("once@example.net", user, "once")])
    good = mailgen.account_toml("main", user, port=dovecot.port)
    config = write_config(tmp_path, database, good)
    daemon = spawn(config, "--once", env={"PW": password})
    assert daemon.proc.wait(30) == 0, daemon.output
    assert "followupd: one cycle done: 1 account(s) scanned, 1 new message(s)" in daemon.output
    assert "once@example.net" in contact_emails(database)

    refused = mailgen.account_toml("refused", "nobody@example.org", port=dovecot.port, password_env="WRONG")
    config = write_config(tmp_path, database, good, refused)
    daemon = spawn(config, "--once", env={"PW": password, "WRONG": "nope"})
    assert daemon.proc.wait(30) == 5, daemon.output  # AuthenticationError's exit code
    assert "refused: FAILED: IMAP 127.0.0.1" in daemon.output
    assert "followupd: one cycle done: 1 account(s) scanned" in daemon.output


# ------------------------------------------------------------------------------------ mail/idle.py itself


@pytest.mark.dovecot
def test_idler_reports_new_mail_wakes_and_notices_a_server_going_away(
    dovecot_factory: Callable[..., Dovecot],
) -> None:
    dovecot = dovecot_factory()
    user = "idler@example.org"
    dovecot.add_user(user, "pw")
    dovecot.write_maildir(user, "INBOX", [])
    waker = Waker()
    client = dovecot.client(user)
    try:
        idler = Idler(client, bound=5)
        assert idler.start("INBOX") == 1
        assert idler.wait(0.2, waker) is IdleEvent.TIMEOUT
        dovecot.append(user, "INBOX", inbound("a@example.net", user, "idler-1"))
        assert idler.wait(NOTICE_S, waker) is IdleEvent.NEW_MAIL
        threading.Timer(0.1, waker.wake).start()
        started = time.monotonic()
        assert idler.wait(NOTICE_S, waker) is IdleEvent.WOKEN
        assert time.monotonic() - started < 2
        idler.done()
        assert idler.start("INBOX") == 2
        dovecot.stop()
        with pytest.raises(MailError, match=r"ended the IDLE connection|closed"):
            idler.wait(NOTICE_S, waker)
    finally:
        waker.close()
        client.shutdown()


class HangingImapServer:
    """Speaks just enough IMAP to log in, EXAMINE and IDLE -- and never answers DONE."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.conn = conn
        with conn.makefile("rb") as lines:
            conn.sendall(b"* OK ready\r\n")
            for line in lines:
                tag, _, rest = line.strip().partition(b" ")
                command = rest.split(b" ")[0].upper()
                if command == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
                elif command == b"LOGIN":
                    conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n")
                elif command == b"EXAMINE":
                    conn.sendall(b"* 0 EXISTS\r\n* OK [UIDNEXT 7] next\r\n" + tag + b" OK [READ-ONLY] ok\r\n")
                elif command == b"IDLE":
                    conn.sendall(b"+ idling\r\n")
                # DONE (and anything after it): no answer, ever

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
        self.thread.join(5)


def test_the_watchdog_drops_a_connection_whose_idle_done_hangs() -> None:
    server = HangingImapServer()
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=30)
    try:
        client.login("user", "password")
        idler = Idler(client, bound=1.0)
        assert idler.start("INBOX") == 7
        started = time.monotonic()
        with pytest.raises(MailTimeoutError, match="IDLE DONE: no answer in 1 s"):
            idler.done()
        assert time.monotonic() - started < 5  # not the 30 s socket timeout
    finally:
        client.shutdown()  # returns at once now that the socket is down
        server.close()


def test_the_waker_is_level_triggered() -> None:
    waker = Waker()
    try:
        assert waker.wait(0) is False
        waker.wake()
        waker.wake()
        assert waker.wait(1) is True
        assert waker.wait(0) is False
    finally:
        waker.close()


@pytest.mark.dovecot
def test_an_invite_noticed_via_idle_becomes_a_meeting(
    tmp_path: Path, mailbox: Mailbox, spawn: Spawn, database: Database
) -> None:
    """The daemon runs the meetings pass after each scan, as `followupd scan` does."""
    from tests import meetingmail as mm

    dovecot, user, password = mailbox
    account = mailgen.account_toml("main", user, port=dovecot.port, aliases=[mm.SAM])
    config = write_config(tmp_path, database, account, extra="\n[scan]\nmeetings = true\n")
    daemon = spawn(config, env={"PW": password})
    daemon.wait_for_output(r"main: watching INBOX with IDLE")
    dovecot.append(user, "INBOX", mm.eml("gmail_invite.eml"))
    deadline = time.monotonic() + NOTICE_S
    found: list[str] = []
    while not found and time.monotonic() < deadline:
        with database.read() as session:
            found = list(session.scalars(select(Meeting.uid)))
        time.sleep(0.05)
    assert found == [mm.GOOGLE_UID]
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.output
