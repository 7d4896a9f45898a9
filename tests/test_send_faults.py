"""Sending when things go wrong, against aiosmtpd servers that fail on purpose: 451 then accept, 550, a drop
before DATA, a drop after the message data (UNKNOWN, then settled by the Sent folder in a real Dovecot), a
stall past the timeout, a server without STARTTLS (no login, ever), a refused login, nothing listening, and a
SENDING draft found at start-up. Every test asserts how many messages the server received.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from followupd.cli import cli
from followupd.config import SmtpConfig
from followupd.engine.send import recover_sending, resolve_unknown, send_due
from followupd.errors import AuthenticationError, InsecureTransportError
from followupd.mail.smtp import Delivery, send_message
from followupd.store.db import Database
from tests.servers._util import free_port
from tests.servers.plugin import SMTP_CREDENTIALS, Mailbox
from tests.servers.smtp import SmtpServer
from tests.test_send import (
    NOW,
    Smtp,
    World,
    config_text,
    headers,
    make_config,
    received_ids,
    write_ca,
    write_config_file,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def world(db: Database, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("SMTP_PW", SMTP_CREDENTIALS[1])
    return World(db)


def sent_folder_ids(mailbox: Mailbox, message_id: str) -> list[int]:
    with mailbox.dovecot.client(mailbox.user) as client:
        client.select_folder("Sent", readonly=True)
        return list(client.search(["HEADER", "Message-ID", message_id]))


# ------------------------------------------------------------------------------------ temporary failures


def test_451_is_retried_with_backoff_then_accepted(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft()
    smtp_server.set_mode("tempfail_then_accept", times=1)
    send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "approved" and draft.attempts == 1 and "451" in (draft.last_error or "")
    assert draft.next_attempt_at is not None
    assert NOW + timedelta(minutes=1) <= draft.next_attempt_at < NOW + timedelta(minutes=2)
    assert len(smtp_server.data_attempts) == 1 and smtp_server.messages == []
    # Before the back-off is over nothing is tried; after it, the message goes once.
    early = send_due(world.db, config, now=NOW + timedelta(seconds=30))
    assert early.drafts[0].verdict == "backoff" and smtp_server.connections == 1
    send_due(world.db, config, now=draft.next_attempt_at)
    draft = world.get(draft_id)
    assert draft.state == "sent" and draft.attempts == 2 and draft.last_error is None
    assert len(smtp_server.messages) == 1 and received_ids(smtp_server) == [draft.message_id]


def test_temporary_failures_give_up_after_max_attempts(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port), send="max_attempts = 3\n")
    draft_id = world.draft()
    smtp_server.set_mode("tempfail_then_accept", times=10)
    moment = NOW
    for _ in range(3):
        send_due(world.db, config, now=moment)
        moment = moment + timedelta(hours=3)
    draft = world.get(draft_id)
    assert draft.state == "failed" and draft.attempts == 3
    assert "gave up after 3 attempts" in (draft.last_error or "") and "451" in (draft.last_error or "")
    assert len(smtp_server.data_attempts) == 3 and smtp_server.messages == []
    send_due(world.db, config, now=moment)
    assert len(smtp_server.data_attempts) == 3


@pytest.mark.parametrize("at", ["mail", "rcpt"])
def test_a_drop_before_data_is_retried(world: World, smtp_server: SmtpServer, at: Any) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft()
    smtp_server.set_mode("drop_before_data", at=at)
    send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "approved" and draft.attempts == 1
    assert "before the message was sent" in (draft.last_error or "")
    assert smtp_server.data_attempts == []
    smtp_server.set_mode("accept")
    send_due(world.db, config, now=NOW + timedelta(hours=1))
    assert world.get(draft_id).state == "sent" and len(smtp_server.messages) == 1


def test_nothing_listening_is_retried(world: World) -> None:
    config = make_config(world.db, smtp=Smtp(free_port()))
    draft_id = world.draft()
    send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "approved" and draft.attempts == 1 and draft.next_attempt_at is not None


# ------------------------------------------------------------------------------------ permanent failures


def test_550_fails_for_good_with_the_servers_reply(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft()
    smtp_server.set_mode("reject")
    report = send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "failed" and draft.attempts == 1
    assert "550 5.7.1 Message rejected" in (draft.last_error or "")
    assert report.drafts[0].state == "failed"
    assert len(smtp_server.data_attempts) == 1 and smtp_server.messages == []
    smtp_server.set_mode("accept")
    send_due(world.db, config, now=NOW + timedelta(days=1))
    assert len(smtp_server.data_attempts) == 1


# ------------------------------------------------------------------------------------------- unknown


@pytest.mark.dovecot
def test_a_drop_after_data_is_unknown_then_settled_by_the_sent_folder(
    world: World, smtp_server: SmtpServer, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAP_PW", mailbox.password)
    config = make_config(world.db, smtp=Smtp(smtp_server.port), imap=mailbox, email_addr=mailbox.user)
    ada = world.contact()
    draft_id = world.draft(ada)
    message_id = world.get(draft_id).message_id
    smtp_server.set_mode("drop_after_data")
    send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "unknown" and "after the message was sent" in (draft.last_error or "")
    assert len(smtp_server.messages) == 1
    assert sent_folder_ids(mailbox, message_id) == []  # no copy kept for a message not known to be sent

    # Never resent blindly: later runs leave it alone, and without a Sent copy it stays UNKNOWN.
    smtp_server.set_mode("accept")
    assert send_due(world.db, config, now=NOW + timedelta(hours=1)).drafts == []
    [still] = resolve_unknown(world.db, config, now=NOW + timedelta(hours=1))
    assert still.state == "unknown" and "not in the Sent folder" in still.reason
    assert world.get(draft_id).state == "unknown"

    # The provider filed the message it received: found by its Message-ID, the draft is SENT.
    mailbox.dovecot.append(mailbox.user, "Sent", smtp_server.messages[0].content)
    [settled] = resolve_unknown(world.db, config, now=NOW + timedelta(hours=2))
    draft = world.get(draft_id)
    assert settled.state == "sent" and draft.state == "sent" and draft.sent_at == NOW
    assert world.person(ada).last_outbound_at == NOW
    send_due(world.db, config, now=NOW + timedelta(hours=3))
    assert len(smtp_server.messages) == 1  # the server got it exactly once
    assert len(sent_folder_ids(mailbox, message_id)) == 1  # and Sent holds one copy


def test_a_stall_past_the_timeout_is_unknown_and_not_resent(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port, timeout="1s"))
    draft_id = world.draft()
    smtp_server.set_mode("stall", seconds=30)
    started = time.monotonic()
    send_due(world.db, config, now=NOW)
    assert time.monotonic() - started < 5
    draft = world.get(draft_id)
    assert draft.state == "unknown" and "after the message was sent" in (draft.last_error or "")
    assert len(smtp_server.messages) == 1
    smtp_server.set_mode("accept")
    send_due(world.db, config, now=NOW + timedelta(hours=1))
    assert len(smtp_server.messages) == 1 and world.get(draft_id).state == "unknown"


def test_a_sending_draft_found_at_start_up_becomes_unknown(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft(state="sending", updated_at=NOW - timedelta(minutes=1))
    other = world.draft(world.contact("Bob"))
    assert recover_sending(world.db) == [draft_id]
    draft = world.get(draft_id)
    assert draft.state == "unknown" and "interrupted" in (draft.last_error or "")
    # It is counted against the caps (it may have gone out) and never sent again.
    capped = make_config(world.db, smtp=Smtp(smtp_server.port), send="daily_cap = 1\n")
    assert send_due(world.db, capped, now=NOW).drafts[0].verdict == "daily_cap"
    send_due(world.db, config, now=NOW)
    assert world.get(draft_id).state == "unknown" and world.get(other).state == "sent"
    assert received_ids(smtp_server) == [world.get(other).message_id]
    assert recover_sending(world.db) == []


def test_no_imap_to_look_in_leaves_unknown_drafts_alone(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft(state="unknown")
    [result] = resolve_unknown(world.db, config, now=NOW)
    assert result.state == "unknown" and "cannot read the Sent folder" in result.reason
    assert world.get(draft_id).state == "unknown" and smtp_server.connections == 0


# ---------------------------------------------------------------------------------------- security


def test_a_server_without_starttls_gets_no_login_and_no_mail(
    world: World, smtp_factory: Any, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    # The downgrade case: the server offers AUTH in cleartext and no STARTTLS.
    server = smtp_factory(tls="none", auth=SMTP_CREDENTIALS)
    smtp = Smtp(server.port, "starttls", SMTP_CREDENTIALS[0], write_ca(tls_ca, tmp_path))
    path = write_config_file(tmp_path, config_text(str(world.db.url), smtp=smtp))
    draft_id = world.draft()
    result = CliRunner().invoke(cli, ["--config", str(path), "--now", NOW.isoformat(), "send"])
    assert result.exit_code == InsecureTransportError.exit_code, result.output
    assert "does not offer STARTTLS" in result.output
    assert server.auth_attempts == [] and server.cleartext_auth_attempts == 0
    assert server.data_attempts == [] and server.messages == []
    draft = world.get(draft_id)
    assert draft.state == "approved" and draft.attempts == 0 and "STARTTLS" in (draft.last_error or "")


def test_a_refused_login_stops_the_account_and_counts_no_attempt(
    world: World,
    smtp_tls_server: SmtpServer,
    tls_ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PW", "wrong")
    config = make_config(
        world.db, smtp=Smtp(smtp_tls_server.port, "starttls", SMTP_CREDENTIALS[0], write_ca(tls_ca, tmp_path))
    )
    first, second = world.draft(), world.draft(world.contact("Bob"))
    report = send_due(world.db, config, now=NOW)
    assert isinstance(report.errors["main"], AuthenticationError)
    assert [world.get(i).state for i in (first, second)] == ["approved", "approved"]
    assert world.get(first).attempts == 0
    assert len(smtp_tls_server.auth_attempts) == 1  # one try, not one per draft
    assert smtp_tls_server.cleartext_auth_attempts == 0 and smtp_tls_server.messages == []


def test_plain_smtp_is_refused_for_a_host_that_is_not_loopback() -> None:
    cfg = SmtpConfig(host="smtp.example.org", port=25, security="none", password_env="X")
    message = send_message(cfg, None, sender="me@example.org", recipients=["a@example.com"], raw=b"x\r\n")
    with pytest.raises(InsecureTransportError):
        asyncio.run(message)


def test_the_adapter_reports_each_phase(smtp_server: SmtpServer) -> None:
    """The adapter on its own: one outcome per server behaviour."""
    cfg = SmtpConfig(
        host="127.0.0.1",
        port=smtp_server.port,
        security="none",
        password_env="X",
        timeout=timedelta(seconds=1),
    )
    raw = b"Message-ID: <phase@example.org>\r\nSubject: x\r\n\r\nhello\r\n"

    def run() -> Delivery:
        return asyncio.run(
            send_message(cfg, None, sender="me@example.org", recipients=["a@example.com"], raw=raw)
        ).status

    expected = {
        "accept": Delivery.SENT,
        "reject": Delivery.FAILED,
        "drop_before_data": Delivery.RETRY,
        "drop_after_data": Delivery.UNKNOWN,
        "stall": Delivery.UNKNOWN,
    }
    for mode, status in expected.items():
        smtp_server.set_mode(mode, seconds=5)  # type: ignore[arg-type]
        assert run() is status, mode
    smtp_server.set_mode("tempfail_then_accept", times=1)
    assert run() is Delivery.RETRY
    assert headers(smtp_server.messages[0].content)["Message-ID"] == "<phase@example.org>"
    assert len(smtp_server.messages) == 3  # accept, drop_after_data, stall (451 and 550 are not kept)


@pytest.mark.parametrize(
    ("to_addrs", "why"),
    [
        ("jörg@example.de", "not a usable address"),
        ("not an address", "not a usable address"),
        ("", "no usable sender or recipient"),
    ],
)
def test_an_unusable_address_fails_for_good_and_reaches_no_server(
    world: World, smtp_server: SmtpServer, to_addrs: str, why: str
) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft(to_addrs=to_addrs)
    send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "failed" and why in (draft.last_error or "")
    assert smtp_server.data_attempts == []


def test_a_failed_sent_copy_keeps_the_draft_sent_and_never_resends(
    world: World, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("IMAP_PW", "whatever")
    nobody = Mailbox(dovecot=_Closed(free_port()), user="me@example.org", password="x")  # type: ignore[arg-type]
    config = make_config(world.db, smtp=Smtp(smtp_server.port), imap=nobody)
    draft_id = world.draft()
    send_due(world.db, config, now=NOW)
    send_due(world.db, config, now=NOW + timedelta(hours=1))
    assert world.get(draft_id).state == "sent" and len(smtp_server.messages) == 1
    assert "no copy was kept in Sent" in caplog.text


@dataclass(frozen=True)
class _Closed:
    """Stands in for a Dovecot in ``config_text``: an IMAP port where nothing listens."""

    port: int
