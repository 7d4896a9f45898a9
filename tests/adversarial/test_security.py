"""Security end to end: header injection through every inbound field that reaches an outbound message,
secrets kept out of logs, errors, ``status`` and the database, private file modes, refusal of cleartext
credentials, and a template directory that tries to leave its sandbox.

Hostile inbound mail is scanned from a Maildir, planned, approved, and sent to an aiosmtpd server on
127.0.0.1; the assertions are made on the bytes the server received.
"""

from __future__ import annotations

import email
import email.header
import email.utils
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
import trustme
from sqlalchemy import select, update

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine.plan import plan_once
from followupd.engine.scan import scan_once
from followupd.engine.send import send_due
from followupd.errors import ConfigError
from followupd.store.db import Database
from followupd.store.models import Draft
from tests.servers.plugin import Mailbox
from tests.servers.smtp import SmtpServer
from tests.test_plan_engine import Mailbox as Maildir
from tests.test_send import Smtp, config_text, write_ca

pytestmark = pytest.mark.timeout(90)

ME = "me@example.org"
NOW = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
WROTE = datetime(2024, 3, 20, 10, tzinfo=UTC)
ANSWERED = datetime(2024, 3, 21, 10, tzinfo=UTC)
INJECTED = ("bcc", "evil", "x-injected")

# Each hostile correspondent: (address, From header bytes, Subject header bytes, Message-ID header bytes).
HOSTILE: list[tuple[str, bytes, bytes, bytes]] = [
    ("clean@example.com", b"Clean Person <clean@example.com>", b"Hello", b"<clean-1@example.com>"),
    (
        "qname@example.com",
        b"=?UTF-8?Q?Ann=0D=0ABcc:_x@evil.example?= <qname@example.com>",
        b"=?UTF-8?Q?Hi=0D=0ABcc:_x@evil.example?=",
        b"<qname-1@example.com>",
    ),
    (
        "bname@example.com",
        b"=?UTF-8?B?" + __import__("base64").b64encode(b"Bo\r\nX-Injected: 1\r\nBcc: x@evil.example") + b"?= "
        b"<bname@example.com>",
        b"=?UTF-8?B?" + __import__("base64").b64encode(b"Subj\nBcc: x@evil.example\n\nbody") + b"?=",
        b"<bname-1@example.com>",
    ),
    (
        "raw@example.com",
        b'"Ra\xff\x00w\x0bName\x1b[31m" <raw@example.com>',
        b"Raw \xc3\x28 \x00 bytes\x0d Bcc: x@evil.example",
        b"<raw-1@example.com>",
    ),
    (
        "ls@example.com",
        "Line\u2028Bcc: x@evil.example <ls@example.com>".encode(),
        "Sep\u2029X-Injected: 1\u0085Bcc: x@evil.example".encode(),
        b"<ls-1@example.com>",
    ),
    (
        "mid@example.com",
        b"Mid Person <mid@example.com>",
        b"Threads",
        b"<mid-1@example.com=0D=0ABcc:x@evil.example>",
    ),
]


def hostile_message(sender: bytes, subject: bytes, message_id: bytes) -> bytes:
    return (
        b"From: " + sender + b"\r\nTo: " + ME.encode() + b"\r\nSubject: " + subject + b"\r\n"
        b"Date: " + format_datetime(WROTE).encode() + b"\r\nMessage-ID: " + message_id + b"\r\n"
        b"References: <root-"
        + message_id.strip(b"<>")[:8]
        + b">\r\n =?UTF-8?Q?=0D=0ABcc:_x@evil.example?= <r2\r\n"
        b"\r\nHello.\r\n"
    )


def reply_message(address: str, subject: bytes, n: int, parent: bytes) -> bytes:
    return (
        b"From: Me Person <" + ME.encode() + b">\r\nTo: " + address.encode() + b"\r\nSubject: Re: " + subject
        + b"\r\nDate: " + format_datetime(ANSWERED).encode() + b"\r\nMessage-ID: <reply-"
        + str(n).encode() + b"@example.org>\r\nIn-Reply-To: " + parent + b"\r\nReferences: " + parent
        + b"\r\n\r\nThanks.\r\n"
    )  # fmt: skip


def hostile_maildir(root: Path) -> Maildir:
    mail = Maildir(root)
    for n, (address, sender, subject, message_id) in enumerate(HOSTILE):
        mail.add("INBOX", hostile_message(sender, subject, message_id), WROTE)
        mail.add("Sent", reply_message(address, subject, n, message_id), ANSWERED)
    return mail


def open_db(url: str) -> Database:
    db = Database(url)
    db.upgrade()
    return db


def approve_all(db: Database) -> int:
    with db.write() as session:
        result = session.execute(update(Draft).where(Draft.state == "queued").values(state="approved"))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


def test_header_injection_through_every_inbound_field_never_reaches_the_wire(
    tmp_path: Path, database_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PW", "unused")
    hostile_maildir(tmp_path / "Maildir")
    db = open_db(database_url)
    text = config_text(
        str(db.url), smtp=Smtp(smtp_server.port), maildir=tmp_path / "Maildir",
        window="daily 00:00-23:59", email_addr=ME, send="daily_cap = 100\nper_minute = 60\n",
    )  # fmt: skip
    config = config_mod.parse(text, env={})
    try:
        assert scan_once(db, config, now=NOW).errors == {}
        plan_once(db, config, now=NOW)
        approved = approve_all(db)
        assert approved >= len(HOSTILE) - 1, "nearly every correspondent should get a draft"
        send_due(db, config, now=NOW)
        with db.read() as session:
            states = session.scalars(select(Draft.state)).all()
    finally:
        db.dispose()
    assert set(states) == {"sent"}, states
    received = smtp_server.messages
    assert len(received) == approved
    names_of_clean: list[str] | None = None
    by_rcpt = {m.rcpt_tos: m for m in received}
    assert all(len(rcpts) == 1 for rcpts in by_rcpt), list(by_rcpt)  # the intended recipient, nobody else
    for address, *_ in HOSTILE:
        if (address,) not in by_rcpt:
            continue
        message = by_rcpt[(address,)]
        lines = header_lines(message.content)
        for line in lines:
            assert line[:1] in (b" ", b"\t") or b":" in line, line
            assert not any(c < 0x20 and c != 0x09 for c in line), line
        names = sorted(
            line.split(b":", 1)[0].decode().lower() for line in lines if line[:1] not in (b" ", b"\t")
        )
        parsed = email.message_from_bytes(message.content)
        decoded = " ".join(
            str(email.header.make_header(email.header.decode_header(v))) for v in parsed.values()
        )
        assert (
            "\u2028" not in decoded
            and "\u2029" not in decoded
            and "\r" not in decoded
            and "\n" not in decoded
        )
        assert "bcc" not in names and "x-injected" not in names, names
        if address == "clean@example.com":
            names_of_clean = names
        else:
            # Exactly the clean message's headers; an unusable inbound Message-ID may only drop threading.
            assert names_of_clean is not None
            optional = {"in-reply-to", "references"}
            assert set(names) - optional == set(names_of_clean) - optional, (address, names)
            assert set(names) <= set(names_of_clean) and len(names) == len(set(names)), (address, names)
        assert [a for _, a in email.utils.getaddresses([str(parsed["To"])])] == [address]
        assert not parsed.get_all("Cc") and not parsed.get_all("Bcc")
        for value in (parsed["Message-ID"], parsed.get("In-Reply-To", ""), parsed.get("References", "")):
            assert "evil" not in str(value).lower(), (address, value)


# ------------------------------------------------------------------------------------------------ secrets

SECRET = "Zq9-distinctive-pa55word-7Kx"


@pytest.mark.dovecot
# SQLite only: it reads the database's files (and their modes) on disk for the secret.
def test_secrets_never_reach_logs_errors_status_or_the_database(
    mailbox: Mailbox, smtp_factory: Callable[..., SmtpServer], tls_ca: trustme.CA, tmp_path: Path
) -> None:
    user = f"secret-{mailbox.user}"
    mailbox.dovecot.add_user(user, SECRET)
    smtp: SmtpServer = smtp_factory(tls="starttls_required", auth=("sender@example.org", SECRET))
    for n, (address, sender, subject, message_id) in enumerate(HOSTILE[:2]):
        mailbox.dovecot.append(user, "INBOX", hostile_message(sender, subject, message_id), msg_time=WROTE)
        mailbox.dovecot.append(
            user, "Sent", reply_message(address, subject, n, message_id), msg_time=ANSWERED
        )
    db_path = tmp_path / "data" / "followupd.sqlite"
    db_path.parent.mkdir(mode=0o700)
    imap = Mailbox(mailbox.dovecot, user, SECRET)
    ca_file = write_ca(tls_ca, tmp_path)
    text = config_text(
        f"sqlite:///{db_path}", imap=imap, email_addr=ME, window="daily 00:00-23:59",
        smtp=Smtp(smtp.port, security="starttls", username="sender@example.org", ca_file=ca_file),
    )  # fmt: skip
    config_path = tmp_path / "config.toml"
    config_path.write_text(text)
    config_path.chmod(0o600)
    env = {**os.environ, "IMAP_PW": SECRET, "SMTP_PW": SECRET}

    def cli(*args: str, ok: bool = True) -> str:
        argv = [
            sys.executable,
            "-m",
            "followupd",
            "--config",
            str(config_path),
            "-vv",
            "--now",
            NOW.isoformat(),
        ]
        done = subprocess.run([*argv, *args], env=env, capture_output=True, timeout=60, check=False)
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if ok:
            assert done.returncode == 0, output[-3000:]
        return output

    outputs = [cli("scan"), cli("plan")]
    db = Database(f"sqlite:///{db_path}")
    try:
        assert approve_all(db) >= 1
    finally:
        db.dispose()
    outputs += [cli("send"), cli("status", "--json"), cli("drafts", "list")]
    # An error path: a wrong password and a server that is gone, both with the secret in the environment.
    env["IMAP_PW"] = SECRET + "-wrong"
    outputs.append(cli("scan", ok=False))
    env["IMAP_PW"] = SECRET
    assert len(smtp.messages) >= 1 and smtp.cleartext_auth_attempts == 0
    smtp.stop()
    outputs.append(cli("send", ok=False))
    for output in outputs:
        assert SECRET not in output
    for path in db_path.parent.iterdir():  # the database and its -wal/-shm files
        assert SECRET.encode() not in path.read_bytes(), path
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_cleartext_imap_to_a_remote_host_is_refused_by_the_config() -> None:
    text = config_text("sqlite:///x.sqlite").replace(
        '[accounts.maildir]\npath = "/nonexistent/Maildir"\n',
        '[accounts.imap]\nhost = "imap.example.com"\nsecurity = "none"\nusername = "u"\npassword_env = "P"\n',
    )
    with pytest.raises(ConfigError) as info:
        config_mod.parse(text, env={"P": SECRET})
    assert "security" in str(info.value) and SECRET not in str(info.value)


# ----------------------------------------------------------------------------------------- the sandbox

ESCAPES = {
    "mro": "Subject: hi\n\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n",
    "include": "Subject: hi\n\n{% include '/etc/passwd' %}\n",
    "relative": "Subject: hi\n\n{% include '../../../../etc/passwd' %}\n",
    "globals": "Subject: hi\n\n{{ self.__init__.__globals__ }}\n",
}


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_template_that_tries_to_escape_is_skipped_with_a_clear_message(
    tmp_path: Path, database_url: str, escape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail = Maildir(tmp_path / "Maildir")
    address, sender, subject, message_id = HOSTILE[0]
    mail.add("INBOX", hostile_message(sender, subject, message_id), WROTE)
    mail.add("Sent", reply_message(address, subject, 0, message_id), ANSWERED)
    templates = tmp_path / "templates"
    templates.mkdir()
    for name in ("new_contact", "keep_in_touch", "awaiting_reply", "after_meeting", "meeting_request"):
        (templates / f"{name}.j2").write_text(ESCAPES[escape])
    db = open_db(database_url)
    text = config_text(str(db.url), maildir=tmp_path / "Maildir", email_addr=ME)
    config: Config = config_mod.parse(text + f'\n[templates]\ndir = "{templates}"\n', env={})
    try:
        assert scan_once(db, config, now=NOW).errors == {}
        result = plan_once(db, config, now=NOW)
        with db.read() as session:
            drafts = session.scalars(select(Draft)).all()
            bodies = [d.body for d in drafts]
    finally:
        db.dispose()
    skipped = " ".join(result.skipped)
    assert address in skipped and "template" in skipped.lower(), result.skipped
    for body in bodies:
        assert "root:" not in body and "subclasses" not in body and "__builtins__" not in body
    assert "root:x:0" not in skipped and "<class" not in skipped
