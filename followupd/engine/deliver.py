"""One draft's trip: claim it, turn it into bytes, hand them to a transport, record what happened.

Every state change is a compare-and-set on (id, state, version) in its own short write transaction, and
none is held across network I/O. :mod:`followupd.engine.send` decides which drafts make the trip, and when.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from email.errors import HeaderParseError
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Any, TypeVar

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from followupd import secrets
from followupd.config import AccountConfig, SendConfig
from followupd.core.compose import build_message, sanitize_header
from followupd.core.sending import DueDraft, retry_delay, superseded_by
from followupd.core.types import Address
from followupd.errors import MailError
from followupd.mail import outbox
from followupd.mail.imap import ImapSession
from followupd.mail.smtp import Delivery, Login, SmtpResult, canonical, send_message
from followupd.store.db import Database
from followupd.store.models import Account, Contact, Draft, DraftState

log = logging.getLogger(__name__)

# Providers that put a copy of every message sent through their SMTP server into Sent themselves.
SELF_FILING_HOSTS = ("office365.com", "outlook.com", "me.com", "icloud.com")
TAKEN = "taken by another worker or changed meanwhile; not sent"
"""Why :func:`claim` passed over a draft: another worker holds or took it, or it changed since it was read."""
_STATE = {
    Delivery.SENT: DraftState.SENT,
    Delivery.FAILED: DraftState.FAILED,
    Delivery.UNKNOWN: DraftState.UNKNOWN,
    Delivery.RETRY: DraftState.APPROVED,
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed draft, ready to go: the envelope and the exact message bytes."""

    draft_id: int
    version: int
    account: str
    contact_id: int
    attempts: int
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    """Without angle brackets."""
    raw: bytes


def bare_id(message_id: str) -> str:
    """A Message-ID without surrounding whitespace and angle brackets (drafts may store either form)."""
    return message_id.strip().strip("<>").strip()


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def only_accounts(query: _Query, accounts: Collection[str] | None) -> _Query:
    """``query`` (which has :class:`Account` joined) limited to the named accounts; unchanged for None."""
    return query if accounts is None else query.where(Account.name.in_(list(accounts)))


def due_draft(draft: Draft, contact: Contact, own: frozenset[str], *, account: str = "") -> DueDraft:
    """The core's view of an approved draft (sent from ``account``, by name) and its contact."""
    return DueDraft(
        id=draft.id,
        planned_at=draft.planned_at,
        scheduled_at=draft.scheduled_at,
        next_attempt_at=draft.next_attempt_at,
        recipients=tuple(email for _name, email in getaddresses([draft.to_addrs]) if email),
        own_addresses=own,
        contact_status=contact.status,
        muted_until=contact.muted_until,
        recipient_offset=contact.tz_offset,
        last_inbound_at=contact.last_inbound_at,
        last_outbound_at=contact.last_outbound_at,
        last_meeting_at=contact.last_meeting_at,
        account=account,
    )


def outgoing(draft: Draft, account: str, *, now: datetime, zone: tzinfo) -> Outgoing:
    """The message for ``draft``, dated ``now`` in the user's zone. ValueError when it cannot be built."""
    sender = parseaddr(draft.from_addr)
    to = [(name, email) for name, email in getaddresses([draft.to_addrs]) if email]
    if not sender[1] or not to:
        raise ValueError(f"draft {draft.id} has no usable sender or recipient")
    message = build_message(
        from_addr=Address(sender[1], sender[0]),
        to=Address(to[0][1], to[0][0]),
        subject=draft.subject,
        body=draft.body,
        message_id=f"<{bare_id(draft.message_id)}>",
        date=now.astimezone(zone),
        in_reply_to=draft.in_reply_to,
        references=[draft.references] if draft.references else (),
    )
    return Outgoing(
        draft_id=draft.id,
        version=draft.version,
        account=account,
        contact_id=draft.contact_id,
        attempts=draft.attempts,
        sender=sender[1],
        recipients=tuple(email for _name, email in to),
        message_id=bare_id(draft.message_id),
        raw=_wire_bytes(message, to),
    )


def _wire_bytes(message: EmailMessage, to: list[tuple[str, str]]) -> bytes:
    """The message as it goes out: every recipient in To, 7-bit clean, CRLF line ends."""
    if len(to) > 1:  # build_message takes one recipient
        try:
            recipients = tuple(
                HeaderAddress(sanitize_header(n, max_chars=100), addr_spec=sanitize_header(e, max_chars=320))
                for n, e in to
            )
        except (HeaderParseError, IndexError, ValueError) as exc:  # IndexError: "x@" on Python 3.11
            raise ValueError(f"not a usable address in {to!r}") from exc
        del message["To"]
        message["To"] = recipients
    if not message.get_content().isascii():
        # 7-bit clean, so that neither a server without 8BITMIME nor a Sent folder can mangle it.
        message.set_content(message.get_content(), charset="utf-8", cte="quoted-printable")
    return canonical(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))


# ---------------------------------------------------------------------------------------- transports


def smtp_login(account: AccountConfig) -> Login | None:
    """The SMTP credentials (password or OAuth2 token) from the account's secret source, fetched now."""
    smtp = account.smtp
    if smtp is None or not smtp.sources():
        return None
    what = f"accounts[{account.name}].smtp " + ("token" if smtp.oauth2_token_command else "password")
    secret = secrets.resolve(smtp, what=what)
    return Login(smtp.username or account.email, secret, oauth2=bool(smtp.oauth2_token_command))


async def deliver(
    item: Outgoing, account: AccountConfig, send: SendConfig, login: Login | None
) -> SmtpResult:
    """Hand ``item`` to the configured transport. Raises only for account-level problems (see mail.smtp)."""
    if send.transport == "outbox":
        return write_outbox(item, send)
    if account.smtp is None:
        raise MailError(
            f"account {account.name} has no [accounts.smtp]",
            hint='Configure its SMTP server, or set [send] transport = "outbox".',
        )
    return await send_message(
        account.smtp,
        login,
        sender=item.sender,
        recipients=item.recipients,
        raw=item.raw,
        local_hostname=item.sender.rpartition("@")[2] or "localhost",
    )


def write_outbox(item: Outgoing, send: SendConfig) -> SmtpResult:
    """Write the message to the outbox; an existing file for the draft counts as sent (never a second one)."""
    if send.outbox_dir is None:
        raise MailError("[send] outbox_dir is not set")
    try:
        path, created = outbox.write_once(send.outbox_dir, item.draft_id, item.message_id, item.raw)
    except MailError as exc:
        return SmtpResult(Delivery.RETRY, str(exc))
    return SmtpResult(Delivery.SENT, f"written to {path}" if created else f"already in {path}")


def provider_files_sent(account: AccountConfig) -> bool:
    """Whether the SMTP host is one that files Sent copies itself (Microsoft 365, Outlook.com, iCloud)."""
    host = (account.smtp.host if account.smtp else "").lower().rstrip(".")
    return any(host == h or host.endswith("." + h) for h in SELF_FILING_HOSTS)


class SentFolders:
    """Each account's Sent folder over IMAP, connected on first use and kept for one run.

    The calls block; the async engine runs them in a thread.
    """

    def __init__(self) -> None:
        self._open: dict[str, tuple[ImapSession, str | None]] = {}

    def _session(self, account: AccountConfig) -> tuple[ImapSession, str | None]:
        if account.name in self._open:
            return self._open[account.name]
        if account.imap is None:
            raise MailError(f"account {account.name} has no IMAP server to look in")
        password = secrets.resolve(account.imap, what=f"accounts[{account.name}].imap password")
        session = ImapSession(account.imap, password)
        try:
            session.connect()
            roles = {f.role: f.name for f in session.folders()}
        except BaseException:
            session.close()
            raise
        # Gmail lists All Mail instead of Sent; a sent message is found there as well.
        folder = roles.get("sent") or roles.get("all")
        self._open[account.name] = (session, folder)
        return session, folder

    def contains(self, account: AccountConfig, message_id: str) -> bool:
        """Whether Sent holds a message with this (bare) Message-ID; MailError when that cannot be told."""
        session, folder = self._session(account)
        if folder is None:
            raise MailError(f"account {account.name} has no Sent folder")
        return bool(session.search_message_id(folder, message_id))

    def file_copy(self, account: AccountConfig, message_id: str, raw: bytes) -> str:
        """Put a copy into Sent unless the provider does that itself or it is already there; says which."""
        if provider_files_sent(account):
            return "the provider files sent mail itself"
        session, folder = self._session(account)
        if session.info.is_gmail:
            return "Gmail files sent mail itself"
        if folder is None:
            return "no Sent folder found; no copy kept"
        if session.search_message_id(folder, message_id):
            return f"already in {folder}"
        session.append(folder, raw)
        return f"copy appended to {folder}"

    def close(self) -> None:
        """Log out of every session (never raises)."""
        for session, _folder in self._open.values():
            session.close()
        self._open.clear()


# ---------------------------------------------------------------------------------------- transitions


def cas(session: Session, draft_id: int, version: int, states: Sequence[DraftState], **values: Any) -> bool:
    """Change the draft only if it is still at ``version`` and in one of ``states``; bumps the version."""
    result = session.execute(
        update(Draft)
        .where(Draft.id == draft_id, Draft.version == version, Draft.state.in_([s.value for s in states]))
        .values(version=version + 1, **values)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def claim(
    db: Database, draft_id: int, *, version: int, account: str, now: datetime, zone: tzinfo
) -> Outgoing | tuple[DraftState, str]:
    """The last check and the move to SENDING, committed before anything goes out.

    The draft's row is taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, only while still APPROVED at
    ``version``: on PostgreSQL a row another worker is claiming (locked) or has claimed (changed) is skipped
    at once, never waited on, so no draft is sent by two workers. (SQLite renders no lock clause: its
    ``BEGIN IMMEDIATE`` write transactions and the single-instance lock serialize claims there.)

    Returns the draft ready to go, or the state it is in instead and why: changed meanwhile or taken by
    another worker, SUPERSEDED (something happened with the contact since it was planned), FAILED (no
    message can be built from it).
    """
    approved = [DraftState.APPROVED]
    with db.write() as session:
        draft = session.scalars(
            select(Draft)
            .where(Draft.id == draft_id, Draft.state == DraftState.APPROVED.value, Draft.version == version)
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if draft is None:
            # Locked or changed by someone else; a plain read never waits, and sees the last committed state.
            state = session.scalar(select(Draft.state).where(Draft.id == draft_id))
            log.debug("draft %d: taken by another worker or changed meanwhile (%s); skipped", draft_id, state)
            return DraftState(state or "skipped"), TAKEN
        contact = session.get(Contact, draft.contact_id)
        if contact is None:
            return DraftState.APPROVED, "its contact is gone; not sent"
        news = superseded_by(due_draft(draft, contact, frozenset()))
        if news is not None:
            cas(session, draft_id, version, approved, state="superseded", last_error=news, updated_at=now)
            return DraftState.SUPERSEDED, news
        try:
            item = outgoing(draft, account, now=now, zone=zone)
        except ValueError as exc:
            cas(session, draft_id, version, approved, state="failed", last_error=str(exc), updated_at=now)
            return DraftState.FAILED, str(exc)
        cas(session, draft_id, version, approved, state="sending", updated_at=now)
    return replace(item, version=version + 1)


def record(
    db: Database, item: Outgoing, result: SmtpResult, *, now: datetime, max_attempts: int, jitter: float
) -> DraftState:
    """Store a delivery's outcome (retries back off; FAILED after ``max_attempts``); SENT touches the contact.

    The claim holder knows best, so an UNKNOWN set meanwhile by another process's start-up recovery is
    overwritten; any other change (the version moved on) is left alone.
    """
    attempts = item.attempts + 1
    state = _STATE[result.status]
    values: dict[str, Any] = {"attempts": attempts, "updated_at": now, "last_error": describe(result) or None}
    if state is DraftState.SENT:
        values.update(
            sent_at=now, next_attempt_at=None, last_error=describe(result) if result.refused else None
        )
    elif state is DraftState.APPROVED and attempts >= max_attempts:
        state = DraftState.FAILED
        values["last_error"] = f"gave up after {attempts} attempts: {result.detail}"
    elif state is DraftState.APPROVED:
        values["next_attempt_at"] = now + retry_delay(attempts, jitter=jitter)
    in_flight = [DraftState.SENDING, DraftState.UNKNOWN]
    with db.write() as session:
        if not cas(session, item.draft_id, item.version, in_flight, state=state.value, **values):
            log.warning("draft %d changed while being sent; outcome %s not recorded", item.draft_id, state)
            return state
        if state is DraftState.SENT:
            touch(session, item.contact_id, now)
    log.info("draft %d: %s (%s)", item.draft_id, state.value, result.detail)
    return state


def release(db: Database, item: Outgoing, error: str, *, now: datetime) -> None:
    """Back to APPROVED after an account-level failure before any data went out; no attempt is counted."""
    with db.write() as session:
        cas(
            session,
            item.draft_id,
            item.version,
            [DraftState.SENDING, DraftState.UNKNOWN],
            state=DraftState.APPROVED.value,
            last_error=error,
            updated_at=now,
        )


def close(
    db: Database, draft_id: int, version: int, state: DraftState, *, reason: str, now: datetime
) -> bool:
    """An approved draft that must never go: SUPERSEDED, SKIPPED or FAILED, with the reason."""
    with db.write() as session:
        return cas(
            session,
            draft_id,
            version,
            [DraftState.APPROVED],
            state=state.value,
            last_error=reason,
            updated_at=now,
        )


def touch(session: Session, contact_id: int, at: datetime) -> None:
    """A sent follow-up is a touch: the contact's last outbound and last touch move to ``at`` (never back)."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        return
    for column in ("last_outbound_at", "last_touch_at"):
        current = getattr(contact, column)
        if current is None or current < at:
            setattr(contact, column, at)


def describe(result: SmtpResult) -> str:
    """The outcome for ``last_error`` and the report: the server's reply, or a warning naming refusals."""
    if result.refused and result.status is Delivery.SENT:
        refused = "; ".join(f"{r}: {why}" for r, why in result.refused.items())
        return f"warning: sent, but refused for {refused}"
    return result.detail
