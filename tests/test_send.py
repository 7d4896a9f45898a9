"""Sending approved drafts: the pure decision (window, holidays, caps, supersession) as tables, and
``send_due`` against a real aiosmtpd server on 127.0.0.1 (plain, STARTTLS, implicit TLS), the Sent copy in a
real Dovecot, the outbox transport, and the ``followupd send`` command.

Rows are inserted directly (:class:`World`); nothing here depends on the planner. Failure modes (4xx, 5xx,
drops, stalls, missing STARTTLS) are in ``test_send_faults.py``; the SIGKILL test in ``test_send_crash.py``.
"""

from __future__ import annotations

import email
import json
import stat
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from itertools import count
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
from click.testing import CliRunner

from followupd import config as config_mod
from followupd.cli import cli
from followupd.config import Config
from followupd.core.sending import (
    Decision,
    DueDraft,
    SendCounts,
    SendRules,
    Verdict,
    day_start,
    decide,
    next_send_moment,
    retry_delay,
)
from followupd.core.window import parse_window
from followupd.engine.deliver import smtp_login
from followupd.engine.send import SendReport, resolve_unknown, send_due
from followupd.errors import AlreadyRunningError, AuthenticationError, MailError
from followupd.mail import outbox
from followupd.store.db import Database
from followupd.store.models import Account, Contact, Draft, DraftState
from tests.servers.plugin import SMTP_CREDENTIALS, Mailbox
from tests.servers.smtp import SmtpServer

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2024, 4, 3, 10, 0, tzinfo=UTC)  # a Wednesday, inside "Mon-Fri 09:00-17:00" UTC
USER = "me@example.org"
ADA = "ada@example.com"
_serial = count(1)


# ------------------------------------------------------------------------------------------ the harness


class World:
    """An account plus contacts and drafts inserted straight into the database."""

    def __init__(self, db: Database, *, account: str = "main", email_addr: str = USER) -> None:
        self.db = db
        with db.write() as session:
            row = Account(name=account, email=email_addr)
            session.add(row)
            session.flush()
            self.account_id = row.id

    def contact(self, name: str = "Ada Lovelace", **fields: Any) -> int:
        with self.db.write() as session:
            row = Contact(account_id=self.account_id, name=name, status="active", tags="", notes="", **fields)
            session.add(row)
            session.flush()
            return row.id

    def draft(self, contact_id: int | None = None, **fields: Any) -> int:
        """An APPROVED draft to Ada, planned a day ago, due an hour ago, unless ``fields`` say otherwise."""
        contact_id = contact_id if contact_id is not None else self.contact()
        n = next(_serial)
        values: dict[str, Any] = {
            "account_id": self.account_id,
            "contact_id": contact_id,
            "key": f"{contact_id}:keep_in_touch:{n}",
            "reason": "keep_in_touch",
            "template": "keep_in_touch",
            "state": "approved",
            "from_addr": f"Me Myself <{USER}>",
            "to_addrs": f"Ada Lovelace <{ADA}>",
            "subject": "Re: the analytical engine",
            "body": f"Hi Ada,\n\nI found the paper you were after: here it is. ({n})\n\nBest,\nMe\n",
            "message_id": f"<draft{n}.nonce@example.org>",
            "in_reply_to": "<parent@example.com>",
            "references": "<root@example.com> <parent@example.com>",
            "planned_at": NOW - timedelta(days=1),
            "scheduled_at": NOW - timedelta(hours=1),
            "updated_at": NOW - timedelta(days=1),
        }
        values.update(fields)
        with self.db.write() as session:
            row = Draft(**values)
            session.add(row)
            session.flush()
            return row.id

    def get(self, draft_id: int) -> Draft:
        with self.db.read() as session:
            row = session.get(Draft, draft_id)
            assert row is not None
            session.expunge(row)  # a read ends in a rollback, which would expire it
            return row

    def person(self, contact_id: int) -> Contact:
        with self.db.read() as session:
            row = session.get(Contact, contact_id)
            assert row is not None
            session.expunge(row)
            return row

    def update(self, draft_id: int, **fields: Any) -> None:
        with self.db.write() as session:
            row = session.get(Draft, draft_id)
            assert row is not None
            for key, value in fields.items():
                setattr(row, key, value)

    def touch_contact(self, contact_id: int, **fields: Any) -> None:
        with self.db.write() as session:
            row = session.get(Contact, contact_id)
            assert row is not None
            for key, value in fields.items():
                setattr(row, key, value)


@dataclass(frozen=True)
class Smtp:
    """Where and how followupd reaches the test SMTP server."""

    port: int
    security: str = "none"
    username: str = ""
    ca_file: Path | None = None
    timeout: str = "5s"


def config_text(
    db_url: str,
    *,
    smtp: Smtp | None = None,
    imap: Mailbox | None = None,
    maildir: Path | None = None,
    send: str = "",
    window: str = "Mon-Fri 09:00-17:00",
    email_addr: str = USER,
) -> str:
    """A whole config: [database], [send] (``window`` in UTC plus ``send``), one account "main"."""
    lines = [f'[database]\nurl = "{db_url}"\n', f'[send]\nwindow = "{window}"\n{send}\n']
    lines.append(f'[[accounts]]\nname = "main"\nemail = "{email_addr}"\n')
    if imap is not None:
        lines.append(
            f'[accounts.imap]\nhost = "127.0.0.1"\nport = {imap.dovecot.port}\nsecurity = "none"\n'
            f'username = "{imap.user}"\npassword_env = "IMAP_PW"\ntimeout = "10s"\n'
        )
    else:
        lines.append(f'[accounts.maildir]\npath = "{maildir or "/nonexistent/Maildir"}"\n')
    if smtp is not None:
        lines.append(
            f'[accounts.smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "{smtp.security}"\n'
            f'password_env = "SMTP_PW"\ntimeout = "{smtp.timeout}"\n'
            + (f'username = "{smtp.username}"\n' if smtp.username else "")
            + (f'ca_file = "{smtp.ca_file}"\n' if smtp.ca_file else "")
        )
    return "\n".join(lines)


def make_config(db: Database, **kwargs: Any) -> Config:
    return config_mod.parse(config_text(str(db.url), **kwargs), env={})


def headers(raw: bytes) -> Message:
    return email.message_from_bytes(raw)


def received_ids(server: SmtpServer) -> list[str]:
    return [headers(m.content)["Message-ID"] for m in server.messages]


def write_ca(ca: trustme.CA, directory: Path) -> Path:
    path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def states(report: SendReport) -> dict[int, str]:
    return {d.draft_id: d.state for d in report.drafts}


@pytest.fixture
def world(db: Database, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("SMTP_PW", SMTP_CREDENTIALS[1])
    return World(db)


# ------------------------------------------------------------------------------- the decision (pure)

UTC_RULES = SendRules(window=parse_window("Mon-Fri 09:00-17:00"), zone=UTC, daily_cap=3, per_minute=2)


def due(draft_id: int = 1, **fields: Any) -> DueDraft:
    values: dict[str, Any] = {
        "planned_at": NOW - timedelta(days=1),
        "scheduled_at": NOW - timedelta(hours=1),
        "recipients": (ADA,),
        "own_addresses": frozenset({USER}),
    }
    values.update(fields)
    return DueDraft(id=draft_id, **values)


def one(draft: DueDraft, rules: SendRules = UTC_RULES, *, now: datetime = NOW) -> Decision:
    [decision] = decide([draft], rules, SendCounts(), now=now)
    return decision


@pytest.mark.parametrize(
    ("fields", "verdict", "not_before"),
    [
        ({}, Verdict.SEND, None),
        ({"scheduled_at": NOW + timedelta(hours=2)}, Verdict.NOT_SCHEDULED, NOW + timedelta(hours=2)),
        ({"next_attempt_at": NOW + timedelta(minutes=4)}, Verdict.BACKOFF, NOW + timedelta(minutes=4)),
        ({"next_attempt_at": NOW - timedelta(minutes=1)}, Verdict.SEND, None),
        ({"last_inbound_at": NOW - timedelta(hours=2)}, Verdict.SUPERSEDE, None),
        ({"last_outbound_at": NOW - timedelta(hours=2)}, Verdict.SUPERSEDE, None),
        ({"last_meeting_at": NOW - timedelta(hours=2)}, Verdict.SUPERSEDE, None),
        ({"last_inbound_at": NOW - timedelta(days=2)}, Verdict.SEND, None),  # before it was planned
        ({"contact_status": "ignored"}, Verdict.SKIP, None),
        ({"contact_status": "muted"}, Verdict.MUTED, None),
        ({"contact_status": "muted", "muted_until": NOW - timedelta(days=1)}, Verdict.SEND, None),
        ({"recipients": (ADA, "ME@example.org")}, Verdict.BLOCK, None),
    ],
)
def test_decide_one_draft(fields: dict[str, Any], verdict: Verdict, not_before: datetime | None) -> None:
    decision = one(due(**fields))
    assert decision.verdict is verdict, decision.reason
    assert decision.not_before == not_before


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2024, 4, 3, 8, 59, tzinfo=UTC), datetime(2024, 4, 3, 9, 0, tzinfo=UTC)),  # Wed, early
        (datetime(2024, 4, 3, 17, 0, tzinfo=UTC), datetime(2024, 4, 4, 9, 0, tzinfo=UTC)),  # Wed, after 17
        (datetime(2024, 4, 6, 12, 0, tzinfo=UTC), datetime(2024, 4, 8, 9, 0, tzinfo=UTC)),  # Saturday
    ],
)
def test_outside_the_window_waits_for_the_next_opening(now: datetime, expected: datetime) -> None:
    decision = one(due(scheduled_at=now - timedelta(hours=1)), now=now)
    assert decision.verdict is Verdict.OUTSIDE_WINDOW
    assert decision.not_before == expected


def test_a_holiday_waits_for_the_next_working_day_and_counts_in_the_users_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rules = SendRules(
        window=parse_window("Mon-Fri 09:00-17:00"), zone=berlin, holidays=frozenset({date(2024, 4, 3)})
    )
    decision = one(due(), rules)
    assert decision.verdict is Verdict.HOLIDAY
    assert decision.not_before == datetime(2024, 4, 4, 9, 0, tzinfo=berlin)
    # 23:30 UTC on the 2nd is already the 3rd (a holiday) in Berlin; in UTC the window is closed anyway.
    assert next_send_moment(rules, berlin, now=datetime(2024, 4, 2, 23, 30, tzinfo=UTC)) == datetime(
        2024, 4, 4, 7, 0, tzinfo=UTC
    )


def test_recipient_time_zone_is_used_when_configured_and_known() -> None:
    rules = SendRules(window=parse_window("Mon-Fri 09:00-17:00"), zone=UTC, recipient_timezone=True)
    tokyo = due(recipient_offset=9 * 60)  # 10:00 UTC is 19:00 in Tokyo: closed
    new_york = due(2, recipient_offset=-4 * 60)  # 06:00 in New York: closed until 13:00 UTC
    unknown = due(3)  # falls back to the user's zone: open
    by_id = {d.draft_id: d for d in decide([tokyo, new_york, unknown], rules, SendCounts(), now=NOW)}
    assert by_id[1].verdict is Verdict.OUTSIDE_WINDOW
    assert by_id[1].not_before == datetime(2024, 4, 4, 0, 0, tzinfo=UTC)  # Thu 09:00 in Tokyo
    assert by_id[2].not_before == datetime(2024, 4, 3, 13, 0, tzinfo=UTC)
    assert "recipient" in by_id[2].reason
    assert by_id[3].verdict is Verdict.SEND
    plain = SendRules(window=rules.window, zone=UTC)
    assert one(tokyo, plain).verdict is Verdict.SEND  # without the option, only the user's window counts


def test_caps_let_the_oldest_go_first_and_say_why_the_rest_wait() -> None:
    drafts = [due(i, scheduled_at=NOW - timedelta(minutes=10 * i)) for i in range(1, 6)]
    decisions = decide(drafts, UTC_RULES, SendCounts(today=1, last_minute=0), now=NOW)
    assert [d.draft_id for d in decisions] == [5, 4, 3, 2, 1]
    assert [d.verdict for d in decisions] == [
        Verdict.SEND,
        Verdict.SEND,  # daily cap 3, one already sent today: two more today; per minute 2
        Verdict.DAILY_CAP,
        Verdict.DAILY_CAP,
        Verdict.DAILY_CAP,
    ]
    assert decisions[2].not_before == datetime(2024, 4, 4, 0, 0, tzinfo=UTC)
    minute = decide(drafts[:3], UTC_RULES, SendCounts(today=0, last_minute=1), now=NOW)
    assert [d.verdict for d in minute] == [Verdict.SEND, Verdict.RATE_LIMIT, Verdict.RATE_LIMIT]
    assert minute[1].not_before == NOW + timedelta(minutes=1)


def test_superseded_and_waiting_drafts_use_no_budget() -> None:
    drafts = [
        due(1, last_inbound_at=NOW - timedelta(minutes=5)),
        due(2, scheduled_at=NOW + timedelta(days=1)),
        due(3),
        due(4),
    ]
    decisions = decide(drafts, UTC_RULES, SendCounts(), now=NOW)
    assert {d.draft_id: d.verdict for d in decisions} == {
        1: Verdict.SUPERSEDE,
        2: Verdict.NOT_SCHEDULED,
        3: Verdict.SEND,
        4: Verdict.SEND,
    }


def test_day_start_and_retry_delay() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert day_start(datetime(2024, 4, 2, 23, 30, tzinfo=UTC), berlin) == datetime(
        2024, 4, 2, 22, 0, tzinfo=UTC
    )
    assert retry_delay(1, jitter=0.0) == timedelta(minutes=1)
    assert retry_delay(1, jitter=0.999) < timedelta(minutes=2)
    assert retry_delay(3, jitter=0.0) == timedelta(minutes=4)
    assert retry_delay(40, jitter=0.999) <= timedelta(hours=2)


# ------------------------------------------------------------------------------------ over real SMTP


def test_an_approved_draft_goes_out_once_with_its_threading_headers(
    world: World, smtp_server: SmtpServer
) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    ada = world.contact(last_outbound_at=NOW - timedelta(days=40), last_touch_at=NOW - timedelta(days=40))
    draft_id = world.draft(ada)
    report = send_due(world.db, config, now=NOW)
    assert states(report) == {draft_id: "sent"}
    assert len(smtp_server.messages) == 1
    [message] = smtp_server.messages
    assert message.mail_from == USER and message.rcpt_tos == (ADA,)
    sent = headers(message.content)
    draft = world.get(draft_id)
    assert sent["Message-ID"] == draft.message_id
    assert sent["In-Reply-To"] == "<parent@example.com>"
    assert sent["References"] == "<root@example.com> <parent@example.com>"
    assert sent["From"] == f"Me Myself <{USER}>" and sent["To"] == f"Ada Lovelace <{ADA}>"
    assert email.utils.parsedate_to_datetime(sent["Date"]) == NOW
    assert draft.state == "sent" and draft.sent_at == NOW and draft.attempts == 1 and draft.last_error is None
    contact = world.person(ada)
    assert contact.last_outbound_at == NOW and contact.last_touch_at == NOW  # a sent follow-up is a touch
    # A second run finds nothing to do; the server still has one message.
    again = send_due(world.db, config, now=NOW + timedelta(minutes=5))
    assert again.drafts == [] and len(smtp_server.messages) == 1


def test_message_id_stored_without_angle_brackets_goes_out_with_them(
    world: World, smtp_server: SmtpServer
) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    world.draft(message_id="bare.123@example.org", to_addrs=ADA, from_addr=USER)
    send_due(world.db, config, now=NOW)
    assert received_ids(smtp_server) == ["<bare.123@example.org>"]


def test_non_ascii_body_is_sent_seven_bit_clean(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    world.draft(body="Grüße, Ada — here is the paper.\n.a line starting with a dot\n")
    send_due(world.db, config, now=NOW)
    [message] = smtp_server.messages
    assert message.content.isascii()
    parsed = email.message_from_bytes(message.content, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    assert (
        parsed.get_content().replace("\r\n", "\n")
        == "Grüße, Ada — here is the paper.\n.a line starting with a dot\n"
    )


def test_a_refused_recipient_is_named_and_the_others_still_get_it(
    world: World, smtp_server: SmtpServer
) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft(to_addrs=f"Ada <{ADA}>, Bob <bob@example.net>")
    smtp_server.set_mode("reject_rcpt", recipients=["bob@example.net"])
    report = send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "sent"
    assert (
        draft.last_error is not None and "bob@example.net" in draft.last_error and "550" in draft.last_error
    )
    assert "warning" in report.drafts[0].reason
    [message] = smtp_server.messages
    assert message.rcpt_tos == (ADA,)
    assert headers(message.content)["To"] == f"Ada <{ADA}>, Bob <bob@example.net>"


def test_every_recipient_refused_is_a_permanent_failure(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    draft_id = world.draft()
    smtp_server.set_mode("reject_rcpt", recipients=[ADA])
    send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    assert draft.state == "failed" and draft.last_error is not None and ADA in draft.last_error
    assert smtp_server.data_attempts == []


def test_a_reply_between_approval_and_send_time_supersedes_the_draft(
    world: World, smtp_server: SmtpServer
) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    ada = world.contact()
    draft_id = world.draft(ada, planned_at=NOW - timedelta(days=2), scheduled_at=NOW + timedelta(hours=3))
    # Approved yesterday; Ada writes this morning; at send time the draft must not go.
    world.touch_contact(ada, last_inbound_at=NOW - timedelta(hours=1))
    report = send_due(world.db, config, now=NOW + timedelta(hours=4))
    draft = world.get(draft_id)
    assert draft.state == "superseded" and draft.last_error is not None and "they wrote" in draft.last_error
    assert report.drafts[0].verdict == "supersede"
    assert smtp_server.connections == 0 and smtp_server.messages == []


def test_a_sent_draft_supersedes_the_other_approved_drafts_for_the_same_contact(
    world: World, smtp_server: SmtpServer
) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port))
    ada = world.contact()
    first = world.draft(ada, scheduled_at=NOW - timedelta(hours=2))
    second = world.draft(ada, scheduled_at=NOW - timedelta(hours=1))
    send_due(world.db, config, now=NOW)
    assert (world.get(first).state, world.get(second).state) == ("sent", "superseded")
    assert len(smtp_server.messages) == 1


def test_the_last_check_happens_inside_the_claim(world: World) -> None:
    """A reply stored after the decision was read but before the claim still stops the send."""
    from followupd.engine import deliver

    ada = world.contact()
    draft_id = world.draft(ada)
    world.touch_contact(ada, last_meeting_at=NOW - timedelta(minutes=1))
    outcome = deliver.claim(world.db, draft_id, version=1, account="main", now=NOW, zone=UTC)
    assert outcome == (DraftState.SUPERSEDED, world.get(draft_id).last_error)
    assert world.get(draft_id).state == "superseded"


def test_caps_hold_across_runs(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port), send="daily_cap = 2\nper_minute = 5\n")
    ids = [world.draft(scheduled_at=NOW - timedelta(minutes=10 - i)) for i in range(3)]
    first = send_due(world.db, config, now=NOW)
    assert [states(first)[i] for i in ids] == ["sent", "sent", "approved"]
    assert first.drafts[2].verdict == "daily_cap"
    later = send_due(world.db, config, now=NOW + timedelta(hours=3))
    assert states(later) == {ids[2]: "approved"} and len(smtp_server.messages) == 2
    tomorrow = send_due(world.db, config, now=NOW + timedelta(days=1))
    assert states(tomorrow) == {ids[2]: "sent"} and len(smtp_server.messages) == 3


def test_per_minute_rate_holds_across_runs(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port), send="per_minute = 1\n")
    ids = [world.draft(scheduled_at=NOW - timedelta(minutes=10 - i)) for i in range(2)]
    send_due(world.db, config, now=NOW)
    assert send_due(world.db, config, now=NOW + timedelta(seconds=30)).drafts[0].verdict == "rate_limit"
    send_due(world.db, config, now=NOW + timedelta(seconds=61))
    assert [world.get(i).state for i in ids] == ["sent", "sent"]


def test_nothing_is_sent_outside_the_window(world: World, smtp_server: SmtpServer) -> None:
    config = make_config(world.db, smtp=Smtp(smtp_server.port), send='holidays = ["2024-04-04"]\n')
    draft_id = world.draft()
    evening = datetime(2024, 4, 3, 18, 0, tzinfo=UTC)
    report = send_due(world.db, config, now=evening)
    assert report.drafts[0].verdict == "outside_window"
    assert report.drafts[0].not_before == datetime(2024, 4, 5, 9, 0, tzinfo=UTC)  # Thursday is a holiday
    assert smtp_server.connections == 0 and world.get(draft_id).state == "approved"


def test_starttls_with_login_over_tls_only(
    world: World, smtp_tls_server: SmtpServer, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    smtp = Smtp(smtp_tls_server.port, "starttls", SMTP_CREDENTIALS[0], write_ca(tls_ca, tmp_path))
    config = make_config(world.db, smtp=smtp)
    draft_id = world.draft()
    send_due(world.db, config, now=NOW)
    assert world.get(draft_id).state == "sent"
    [message] = smtp_tls_server.messages
    assert message.tls and message.authenticated_as == SMTP_CREDENTIALS[0]
    assert smtp_tls_server.cleartext_auth_attempts == 0
    assert [a.succeeded for a in smtp_tls_server.auth_attempts] == [True]


def test_implicit_tls(world: World, smtp_factory: Any, tls_ca: trustme.CA, tmp_path: Path) -> None:
    server = smtp_factory(tls="implicit", auth=SMTP_CREDENTIALS)
    config = make_config(
        world.db, smtp=Smtp(server.port, "tls", SMTP_CREDENTIALS[0], write_ca(tls_ca, tmp_path))
    )
    draft_id = world.draft()
    send_due(world.db, config, now=NOW)
    assert world.get(draft_id).state == "sent"
    assert [m.tls for m in server.messages] == [True] and server.cleartext_auth_attempts == 0


@pytest.mark.parametrize(("tls", "security"), [("starttls_required", "starttls"), ("implicit", "tls")])
def test_an_untrusted_certificate_stops_the_account_before_any_login(
    world: World, smtp_factory: Any, tls: str, security: str
) -> None:
    server = smtp_factory(tls=tls, auth=SMTP_CREDENTIALS)  # its CA is not given to followupd
    config = make_config(world.db, smtp=Smtp(server.port, security, SMTP_CREDENTIALS[0]))
    draft_id = world.draft()
    report = send_due(world.db, config, now=NOW)
    assert isinstance(report.errors["main"], MailError) and "certificate" in str(report.errors["main"])
    draft = world.get(draft_id)
    assert draft.state == "approved" and draft.attempts == 0 and "certificate" in (draft.last_error or "")
    assert server.auth_attempts == [] and server.messages == []


def test_oauth2_token_comes_from_its_command_and_is_used_with_xoauth2(
    world: World, smtp_factory: Any, tls_ca: trustme.CA, tmp_path: Path
) -> None:
    text = config_text(
        str(world.db.url), smtp=Smtp(1, "tls", "me@example.org", write_ca(tls_ca, tmp_path))
    ).replace('password_env = "SMTP_PW"', 'oauth2_token_command = ["echo", "ya29.token"]')
    config = config_mod.parse(text, env={})
    login = smtp_login(config.accounts[0])
    assert login is not None and login.oauth2 and login.secret == "ya29.token"
    # The test server offers PLAIN/LOGIN only: XOAUTH2 is refused, which stops the account, sends nothing.
    server = smtp_factory(tls="implicit", auth=SMTP_CREDENTIALS)
    config = config_mod.parse(text.replace("port = 1\n", f"port = {server.port}\n"), env={})
    draft_id = world.draft()
    report = send_due(world.db, config, now=NOW)
    assert isinstance(report.errors["main"], AuthenticationError)
    assert world.get(draft_id).state == "approved" and server.messages == []


# ---------------------------------------------------------------------------------- the Sent folder


@pytest.mark.dovecot
def test_a_copy_goes_into_sent_once(
    world: World, smtp_server: SmtpServer, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAP_PW", mailbox.password)
    config = make_config(world.db, smtp=Smtp(smtp_server.port), imap=mailbox, email_addr=mailbox.user)
    first, second = world.draft(), world.draft(world.contact("Bob"))
    # The second one is already in Sent (say the server filed it): it must not be appended again.
    already = world.get(second)
    mailbox.dovecot.append(mailbox.user, "Sent", f"Message-ID: {already.message_id}\r\n\r\nx\r\n".encode())
    send_due(world.db, config, now=NOW)
    assert len(smtp_server.messages) == 2
    with mailbox.dovecot.client(mailbox.user) as client:
        client.select_folder("Sent", readonly=True)
        found = {
            mid: client.search(["HEADER", "Message-ID", mid])
            for mid in (world.get(first).message_id, already.message_id)
        }
    assert all(len(uids) == 1 for uids in found.values()), found


def test_microsoft_and_icloud_file_their_own_copies() -> None:
    from followupd.engine.deliver import provider_files_sent

    base = config_mod.parse(config_text("sqlite://", smtp=Smtp(587, "starttls")), env={}).accounts[0]
    assert base.smtp is not None
    for host, expected in [
        ("smtp.office365.com", True),
        ("smtp-mail.outlook.com", True),
        ("smtp.mail.me.com", True),
        ("smtp.icloud.com", True),
        ("mail.example.org", False),
        ("notoutlook.com", False),
    ]:
        account = replace(base, smtp=replace(base.smtp, host=host))
        assert provider_files_sent(account) is expected, host


# -------------------------------------------------------------------------------------------- outbox


def test_outbox_writes_each_draft_once_privately(world: World, tmp_path: Path) -> None:
    directory = tmp_path / "out" / "box"
    config = make_config(world.db, send=f'transport = "outbox"\noutbox_dir = "{directory}"\n')
    draft_id = world.draft()
    send_due(world.db, config, now=NOW)
    draft = world.get(draft_id)
    [path] = directory.iterdir()
    assert path.name == outbox.file_name(draft_id, draft.message_id) and path.name.startswith(f"{draft_id}-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert headers(path.read_bytes())["Message-ID"] == draft.message_id and b"\r\n" in path.read_bytes()
    assert draft.state == "sent"
    # Sent again (say the database was restored from before the send): the existing file means "sent".
    world.update(draft_id, state="approved", version=draft.version + 1, planned_at=NOW + timedelta(seconds=1))
    send_due(world.db, config, now=NOW + timedelta(minutes=1))
    assert [p.name for p in directory.iterdir()] == [path.name] and world.get(draft_id).state == "sent"


def test_outbox_unknown_drafts_are_settled_by_the_file(world: World, tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    config = make_config(world.db, send=f'transport = "outbox"\noutbox_dir = "{directory}"\n')
    written, lost = world.draft(state="unknown"), world.draft(world.contact("Bob"), state="unknown")
    outbox.write_once(directory, written, world.get(written).message_id, b"Message-ID: <x@y>\r\n\r\nx\r\n")
    results = {r.draft_id: r.state for r in resolve_unknown(world.db, config, now=NOW)}
    assert results == {written: "sent", lost: "approved"}
    assert world.get(written).sent_at is not None


# ----------------------------------------------------------------------------------------------- CLI


def write_config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_cli_dry_run_says_what_would_go_and_why_the_others_wait(
    world: World, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    path = write_config_file(
        tmp_path, config_text(str(world.db.url), smtp=Smtp(smtp_server.port), send="daily_cap = 1\n")
    )
    go = world.draft(scheduled_at=NOW - timedelta(hours=3))
    capped = world.draft(world.contact("Bob"), scheduled_at=NOW - timedelta(hours=2))
    later = world.draft(world.contact("Cy"), scheduled_at=NOW + timedelta(days=2))
    runner = CliRunner()
    args = ["--config", str(path), "--now", NOW.isoformat(), "send", "--dry-run"]
    result = runner.invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    verdicts = {d["draft_id"]: (d["verdict"], d["state"]) for d in data["drafts"]}
    assert verdicts == {
        go: ("send", "approved"),
        capped: ("daily_cap", "approved"),
        later: ("not_scheduled", "approved"),
    }
    assert data["dry_run"] is True and data["errors"] == {}
    text = runner.invoke(cli, args, catch_exceptions=False).stdout
    assert "would send" in text and "daily cap of 1 reached" in text and "not yet scheduled" in text
    evening = runner.invoke(cli, [*args[:3], "2024-04-03T20:00:00+00:00", "send", "--dry-run"]).stdout
    assert "outside the send window" in evening
    assert smtp_server.connections == 0 and world.get(go).state == "approved"


def test_cli_send_sends_and_reports_json(world: World, smtp_server: SmtpServer, tmp_path: Path) -> None:
    path = write_config_file(tmp_path, config_text(str(world.db.url), smtp=Smtp(smtp_server.port)))
    draft_id = world.draft()
    result = CliRunner().invoke(
        cli, ["--config", str(path), "--now", NOW.isoformat(), "send", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(d["draft_id"], d["state"]) for d in data["drafts"]] == [(draft_id, "sent")]
    assert data["recovered"] == [] and data["unknown"] == []
    assert len(smtp_server.messages) == 1


# SQLite only: one daemon per SQLite database holds the lock; on PostgreSQL workers share the database and
# `send` defers to the workers that own the accounts instead.
@pytest.mark.db_backend("sqlite")
def test_cli_send_refuses_while_the_daemon_holds_the_lock(
    world: World, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    from followupd import instance

    path = write_config_file(tmp_path, config_text(str(world.db.url), smtp=Smtp(smtp_server.port)))
    draft_id = world.draft(state="sending")  # the daemon's, in flight: must not be called UNKNOWN
    world.draft(world.contact("Bob"))
    args = ["--config", str(path), "--now", NOW.isoformat(), "send"]
    with instance.acquire(world.db):
        result = CliRunner().invoke(cli, args)
        dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    # CliRunner calls the click group, not followupd.cli.main, which turns the error into exit code 8.
    assert isinstance(result.exception, AlreadyRunningError) and result.exception.exit_code == 8
    assert "sends due drafts itself" in str(result.exception)
    assert dry.exit_code == 0 and "would send" in dry.output
    assert world.get(draft_id).state == "sending" and smtp_server.connections == 0


def test_send_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["send", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "followupd send --dry-run" in result.output
