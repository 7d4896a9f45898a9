"""The test bed itself: real Dovecot, aiosmtpd and PostgreSQL on 127.0.0.1 behave as the fixtures promise.

These tests do not import followupd; they prove the servers and the fixtures that the rest of the suite
(and the benchmarks) stand on.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import ssl
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import imapclient
import pytest
import sqlalchemy as sa
import trustme

from tests.servers.dovecot import Dovecot, DovecotError
from tests.servers.plugin import (
    BACKEND_ENV,
    BACKENDS,
    SMTP_CREDENTIALS,
    DatabaseUrlFactory,
    Mailbox,
    require_software,
    selected_backends,
)
from tests.servers.smtp import SmtpServer

pytestmark = pytest.mark.timeout(60)

HEADER = (
    b"From: Ada Lovelace <ada@example.org>\r\n"
    b"To: Charles Babbage <charles@example.org>\r\n"
    b"Subject: Engines\r\n"
    b"Date: Tue, 05 Mar 2024 10:00:00 +0000\r\n"
    b"Message-ID: <engines-1@example.org>\r\n"
    b"\r\n"
)
RAW = HEADER + b"Shall we meet on Tuesday?\r\n.a line that starts with a dot\r\n"


def message(n: int) -> bytes:
    return (
        f"From: sender{n}@example.org\r\nTo: me@example.org\r\nSubject: seed {n}\r\n"
        f"Message-ID: <seed-{n}@example.org>\r\n\r\nbody {n}\r\n"
    ).encode()


def proc_uid(pid: int) -> int | None:
    """Real uid of a process, from /proc (None when it has exited meanwhile)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def fetch_one(client: Any, uid: int) -> dict[bytes, Any]:
    data: dict[int, dict[bytes, Any]] = client.fetch([uid], [b"BODY.PEEK[HEADER]", b"RFC822.SIZE"])
    assert list(data) == [uid]  # imapclient keys the response by the UID the server sent back
    return data[uid]


# ----------------------------------------------------------------------------------------------- Dovecot


@pytest.mark.dovecot
def test_dovecot_shared_variant_append_and_fetch(mailbox: Mailbox) -> None:
    dovecot, user, password = mailbox
    assert dovecot.host == "127.0.0.1"
    expected_variant = "root" if os.geteuid() == 0 else "nonroot"
    assert dovecot.variant == expected_variant
    assert dovecot.pid is not None
    assert (proc_uid(dovecot.pid) == 0) == (os.geteuid() == 0)

    uid = dovecot.append(user, "INBOX", RAW, flags=[b"\\Seen"])

    with imapclient.IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login(user, password)
        caps = set(client.capabilities())
        assert {b"UIDPLUS", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"IDLE", b"MOVE"} <= caps
        client.select_folder("INBOX", readonly=True)
        assert client.search(["ALL"]) == [uid]
        item = fetch_one(client, uid)
    assert item[b"SEQ"] == 1
    assert item[b"BODY[HEADER]"] == HEADER
    assert item[b"RFC822.SIZE"] == len(RAW)
    if dovecot.variant == "root":
        # mail processes run as nobody, never root: the Maildir they created belongs to nobody
        assert dovecot.home(user).stat().st_uid == pwd.getpwnam("nobody").pw_uid


@pytest.mark.dovecot
def test_dovecot_nonroot_variant(dovecot_nonroot: Dovecot) -> None:
    dovecot = dovecot_nonroot
    assert dovecot.variant == "nonroot"
    assert "default_internal_user" in dovecot.config_path.read_text()
    master = dovecot.pid
    assert master is not None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody").pw_uid
        assert dovecot.server_user == "nobody"
        kids = children(master)
        assert kids, "dovecot has no child processes"
        assert {proc_uid(pid) for pid in [master, *kids]} - {None} == {nobody}
    dovecot.add_user("nonroot@example.org", "pw-nonroot")
    uid = dovecot.append("nonroot@example.org", "Sent", RAW)
    with dovecot.client("nonroot@example.org") as client:
        client.select_folder("Sent", readonly=True)
        item = fetch_one(client, uid)
    assert item[b"BODY[HEADER]"] == HEADER
    assert dovecot.write_maildir("nonroot@example.org", "Drafts", [message(1), message(2)]) == 2
    with dovecot.client("nonroot@example.org") as client:
        assert client.select_folder("Drafts", readonly=True)[b"EXISTS"] == 2


@pytest.mark.dovecot
def test_write_maildir_then_fetch(mailbox: Mailbox) -> None:
    dovecot, user, _ = mailbox
    written = dovecot.write_maildir(user, "INBOX", (message(n) for n in range(500)))
    assert dovecot.write_maildir(user, "Sent", [message(1000), message(1001), message(1002)]) == 3
    assert written == 500
    with dovecot.client(user) as client:
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert b"\\Sent" in folders["Sent"]
        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 500
        uids = client.search(["ALL"])
        assert len(uids) == 500
        headers = client.fetch(uids[:1000], [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]", b"FLAGS"])
        ids = {BytesHeaderParser().parsebytes(v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])["Message-ID"]
               for v in headers.values()}  # fmt: skip
        assert ids == {f"<seed-{n}@example.org>" for n in range(500)}
        assert all(b"\\Seen" in v[b"FLAGS"] for v in headers.values())
        assert client.select_folder("Sent", readonly=True)[b"EXISTS"] == 3


@pytest.mark.dovecot
def test_recreate_folder_changes_uidvalidity(mailbox: Mailbox) -> None:
    dovecot, user, _ = mailbox
    dovecot.create_folder(user, "Archive")
    dovecot.append(user, "Archive", RAW)
    before = dovecot.uidvalidity(user, "Archive")
    after = dovecot.recreate_folder(user, "Archive")
    assert after != before
    assert dovecot.uidvalidity(user, "Archive") == after
    with dovecot.client(user) as client:
        assert client.select_folder("Archive", readonly=True)[b"EXISTS"] == 0
    uid = dovecot.append(user, "Archive", RAW)
    assert uid == 1  # UIDs start again under the new UIDVALIDITY
    dovecot.delete_folder(user, "Archive")
    with dovecot.client(user) as client:
        assert not client.folder_exists("Archive")
    with pytest.raises(ValueError, match="INBOX"):
        dovecot.recreate_folder(user, "INBOX")


@pytest.mark.dovecot
def test_restart_keeps_data_and_port(dovecot_factory: Any) -> None:
    dovecot: Dovecot = dovecot_factory()
    dovecot.add_user("keep@example.org", "pw-keep")
    uid = dovecot.append("keep@example.org", "INBOX", RAW)
    validity = dovecot.uidvalidity("keep@example.org", "INBOX")
    port, old_pid = dovecot.port, dovecot.pid
    open_client = dovecot.client("keep@example.org")
    try:
        open_client.select_folder("INBOX")
        dovecot.restart()
        # the connection that was open across the restart is gone
        with pytest.raises((imapclient.exceptions.IMAPClientAbortError, OSError)):
            open_client.noop()
    finally:
        open_client.shutdown()
    assert dovecot.port == port
    assert dovecot.pid not in (None, old_pid)
    with dovecot.client("keep@example.org") as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search(["ALL"]) == [uid]
        assert fetch_one(client, uid)[b"BODY[HEADER]"] == HEADER
    assert dovecot.uidvalidity("keep@example.org", "INBOX") == validity
    dovecot.stop()
    assert not dovecot.running
    with pytest.raises(ConnectionRefusedError):
        imapclient.IMAPClient(dovecot.host, port=port, ssl=False, timeout=2)
    dovecot.start()
    assert dovecot.port == port
    assert "Dovecot v2" in dovecot.log_path.read_text()


@pytest.mark.dovecot
def test_dovecot_tls_implicit_and_starttls(dovecot_tls: Dovecot, tls_ca: trustme.CA) -> None:
    dovecot = dovecot_tls
    assert dovecot.ca is tls_ca
    assert dovecot.imaps_port not in (0, dovecot.port)
    dovecot.add_user("tls@example.org", "pw-tls")
    uid = dovecot.append("tls@example.org", "INBOX", RAW)  # over implicit TLS
    with dovecot.client("tls@example.org", tls="starttls") as client:
        client.select_folder("INBOX", readonly=True)
        assert fetch_one(client, uid)[b"BODY[HEADER]"] == HEADER
    # a client that does not trust the test CA refuses the server
    untrusting = ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(
            dovecot.host, port=dovecot.imaps_port, ssl=True, ssl_context=untrusting, timeout=5
        )
    # Dovecot logs how each login was protected ("TLS" here; plain loopback logins say "secured")
    deadline = time.monotonic() + 5
    while "user=<tls@example.org>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1" not in (
        log := dovecot.log_path.read_text()
    ):
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    logins = [line for line in log.splitlines() if "Login: user=<tls@example.org>" in line]
    assert logins
    assert all(", TLS," in line for line in logins)


@pytest.mark.dovecot
def test_dovecot_start_failure_shows_the_log() -> None:
    dovecot = Dovecot(extra_config="not_a_setting = 1")
    try:
        with pytest.raises(DovecotError, match="not_a_setting"):
            dovecot.start()
        assert not dovecot.running
    finally:
        dovecot.close()
    assert not dovecot.directory.exists()


# -------------------------------------------------------------------------------------------------- SMTP


def send(server: SmtpServer, recipients: list[str], **kwargs: Any) -> tuple[dict[str, Any], str]:
    kwargs.setdefault("timeout", 5)

    async def once() -> tuple[dict[str, Any], str]:
        try:
            return await aiosmtplib.send(
                RAW,
                sender="ada@example.org",
                recipients=recipients,
                hostname=server.host,
                port=server.port,
                **kwargs,
            )
        finally:
            # A failed send closes its transport; let connection_lost run before asyncio.run closes the loop,
            # or the half-closed transport is garbage-collected later with a ResourceWarning (an error here).
            await asyncio.sleep(0.01)

    return asyncio.run(once())


def test_smtp_receives_byte_for_byte(smtp_server: SmtpServer) -> None:
    recipients = ["charles@example.org", "mary@example.org"]
    errors, reply = send(smtp_server, recipients, start_tls=False)
    assert errors == {}
    assert reply.startswith("2.0.0")
    [received] = smtp_server.messages
    assert received.mail_from == "ada@example.org"
    assert received.rcpt_tos == tuple(recipients)
    assert received.content == RAW  # dot-unstuffed, CRLF kept, nothing added
    assert (received.outcome, received.tls, received.authenticated_as) == ("accepted", False, None)
    assert smtp_server.connections == 1
    assert smtp_server.auth_attempts == []


def test_smtp_drop_after_data_keeps_the_message(smtp_server: SmtpServer) -> None:
    smtp_server.set_mode("drop_after_data")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        send(smtp_server, ["charles@example.org"], start_tls=False)
    [kept] = smtp_server.messages
    assert kept.outcome == "dropped"
    assert kept.content == RAW
    smtp_server.set_mode("accept")  # a naive resend now delivers a duplicate
    send(smtp_server, ["charles@example.org"], start_tls=False)
    assert [m.content for m in smtp_server.messages] == [RAW, RAW]


def test_smtp_failure_modes(smtp_server: SmtpServer) -> None:
    smtp_server.set_mode("tempfail_then_accept", times=2)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPDataError) as tempfail:
            send(smtp_server, ["a@example.org"], start_tls=False)
        assert tempfail.value.code == 451
    send(smtp_server, ["a@example.org"], start_tls=False)
    assert [m.outcome for m in smtp_server.data_attempts] == ["tempfailed", "tempfailed", "accepted"]

    smtp_server.set_mode("reject")
    with pytest.raises(aiosmtplib.SMTPDataError) as rejected:
        send(smtp_server, ["a@example.org"], start_tls=False)
    assert rejected.value.code == 550

    smtp_server.set_mode("reject_rcpt", recipients=["gone@example.org"])
    errors, _ = send(smtp_server, ["gone@example.org", "here@example.org"], start_tls=False)
    assert set(errors) == {"gone@example.org"}
    assert errors["gone@example.org"].code == 550
    assert smtp_server.messages[-1].rcpt_tos == ("here@example.org",)

    for at in ("mail", "rcpt"):
        smtp_server.set_mode("drop_before_data", at=at)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            send(smtp_server, ["a@example.org"], start_tls=False)
    assert len(smtp_server.data_attempts) == 5  # the drops happened before DATA
    assert smtp_server.mode == "drop_before_data"


def test_smtp_stall_times_out_and_does_not_hang_teardown() -> None:
    server = SmtpServer(mode="stall")
    server.start()
    try:
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            send(server, ["a@example.org"], start_tls=False, timeout=0.5)
        [stalled] = server.messages
        assert stalled.outcome == "stalled"
        # a client that leaves its stalled DATA open: stopping the server must still be quick
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220")
            for command, code in ((b"EHLO t", b"250 "), (b"MAIL FROM:<a@x.org>", b"250"),
                                  (b"RCPT TO:<b@x.org>", b"250"), (b"DATA", b"354")):  # fmt: skip
                sock.sendall(command + b"\r\n")
                line = reader.readline()
                while line[3:4] == b"-":
                    line = reader.readline()
                assert line.startswith(code), (command, line)
            sock.sendall(RAW + b".\r\n")
            server.wait_for_messages(2)
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 3
            assert reader.read() == b""  # the server hung up without answering DATA
            reader.close()
    finally:
        server.stop()


def test_smtp_starttls_required_with_auth(smtp_tls_server: SmtpServer, tls_ca: trustme.CA) -> None:
    server = smtp_tls_server
    assert server.tls == "starttls_required"
    assert server.ca is tls_ca
    user, password = SMTP_CREDENTIALS
    errors, _ = send(
        server,
        ["charles@example.org"],
        start_tls=True,
        tls_context=server.client_ssl_context(),
        username=user,
        password=password,
    )
    assert errors == {}
    [received] = server.messages
    assert (received.tls, received.authenticated_as, received.content) == (True, user, RAW)
    attempts = server.auth_attempts
    assert attempts
    assert all(a.tls for a in attempts)
    assert attempts[-1].succeeded
    assert server.cleartext_auth_attempts == 0

    # a client that will not STARTTLS never gets to authenticate: AUTH is not offered in the clear
    with pytest.raises(aiosmtplib.SMTPException, match="AUTH"):
        send(server, ["charles@example.org"], start_tls=False, username=user, password=password)
    # and without a trusted CA the handshake fails
    with pytest.raises((aiosmtplib.SMTPConnectError, ssl.SSLError)):
        send(server, ["charles@example.org"], start_tls=True, username=user, password=password)
    assert server.cleartext_auth_attempts == 0
    assert len(server.messages) == 1


def test_smtp_no_starttls_offered_counts_cleartext_auth(smtp_factory: Any) -> None:
    server: SmtpServer = smtp_factory(tls="none", auth=("u", "p"))
    # the safe client: insists on STARTTLS, so it stops before sending credentials
    with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
        send(server, ["a@example.org"], start_tls=True, username="u", password="p")
    assert server.auth_attempts == []
    # aiosmtplib's default (start_tls=None) is opportunistic and authenticates in the clear: caught
    send(server, ["a@example.org"], username="u", password="p")
    assert server.cleartext_auth_attempts == 1
    assert server.messages[0].authenticated_as == "u"
    # AUTH is required for MAIL
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        send(server, ["a@example.org"], start_tls=False)
    assert refused.value.code == 530


def test_smtp_implicit_tls(smtp_factory: Any) -> None:
    server: SmtpServer = smtp_factory(tls="implicit", auth=("u", "p"))
    context = server.client_ssl_context()
    send(server, ["a@example.org"], use_tls=True, tls_context=context, username="u", password="p")
    [received] = server.messages
    assert received.tls
    assert server.auth_attempts[0].tls
    assert server.cleartext_auth_attempts == 0


# -------------------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_postgres_database(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            version = conn.execute(sa.text("show server_version_num")).scalar_one()
            assert int(version) >= 150000
            database = conn.execute(sa.text("select current_database()")).scalar_one()
            assert postgres_url.endswith("/" + database)
            tables = conn.execute(sa.text("select count(*) from pg_tables where schemaname = 'public'"))
            assert tables.scalar_one() == 0
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------- database backends


class _Options:
    """Just enough of ``pytest.Config`` for ``selected_backends``: the value of ``--db-backend``."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def getoption(self, name: str, default: object = None) -> object:
        assert name == "--db-backend"
        return self.value


def test_db_backend_option_wins_over_the_environment_and_both_is_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def selected(option: str | None) -> tuple[str, ...]:
        return selected_backends(cast(pytest.Config, _Options(option)))

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert selected(None) == BACKENDS == ("sqlite", "postgresql")
    monkeypatch.setenv(BACKEND_ENV, "postgresql")
    assert selected(None) == ("postgresql",)
    assert selected("sqlite") == ("sqlite",)
    assert selected("both") == BACKENDS
    monkeypatch.setenv(BACKEND_ENV, " SQLite ")
    assert selected(None) == ("sqlite",)
    monkeypatch.setenv(BACKEND_ENV, "mysql")
    with pytest.raises(pytest.UsageError, match="FOLLOWUPD_TEST_DB='mysql'"):
        selected(None)


def test_each_test_gets_a_private_copy_of_the_migrated_template(
    db_backend: str,
    database_url: str,
    database_url_factory: DatabaseUrlFactory,
    request: pytest.FixtureRequest,
) -> None:
    assert request.node.name.endswith(f"[{db_backend}]")
    assert database_url.startswith(
        {"sqlite": "sqlite:///", "postgresql": "postgresql+psycopg://"}[db_backend]
    )
    other = database_url_factory("other")
    assert other != database_url
    engines = [sa.create_engine(url) for url in (database_url, other)]
    try:
        with engines[0].begin() as conn:
            head = conn.execute(sa.text("select version_num from alembic_version")).scalar_one()
            conn.execute(sa.text("create table scratch (x integer)"))
        with engines[1].connect() as conn:  # at the same revision, and without what the first one did
            assert conn.execute(sa.text("select version_num from alembic_version")).scalar_one() == head
            assert "scratch" not in sa.inspect(conn).get_table_names()
            assert "drafts" in sa.inspect(conn).get_table_names()
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.db_backend("sqlite")
def test_a_pinned_test_runs_on_its_backend_whatever_is_selected(db_backend: str, database_url: str) -> None:
    assert db_backend == "sqlite" and database_url.startswith("sqlite:///")


# ------------------------------------------------------------------------------------------ the fixtures


def test_missing_software_fails_on_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    require_software(True, "anything", "pkg")  # present: nothing happens
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install dovecot-imapd"):
        require_software(False, "Dovecot", "dovecot-imapd")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        require_software(False, "PostgreSQL", "postgresql")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_software(False, "PostgreSQL", "postgresql")


def test_mailbox_users_are_fresh(mailbox: Mailbox) -> None:
    dovecot, user, password = mailbox
    assert dovecot.users[user] == password
    with dovecot.client(user) as client:
        assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 0
