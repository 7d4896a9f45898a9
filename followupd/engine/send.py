"""``send_due``: approved drafts out, exactly once; ``recover_sending`` and ``resolve_unknown`` after a crash.

Decide, then act. The pure :func:`followupd.core.sending.decide` says which approved drafts go now and why
the others wait; each one that goes then makes the trip in :mod:`followupd.engine.deliver`:

1. *claimed*: one short write transaction re-checks it (still APPROVED, same version, nothing new with the
   contact since it was planned), builds its message and moves it to SENDING, committed before any I/O;
2. *delivered* by the transport (SMTP or the outbox), outside any transaction;
3. *recorded* in a second short transaction: SENT (the contact touched), back to APPROVED with a back-off
   for temporary failures (FAILED after ``max_attempts``), FAILED for a permanent refusal, or UNKNOWN when
   the connection was lost after the message data went out.

A SENDING draft found at start-up may or may not have gone out: :func:`recover_sending` makes it UNKNOWN,
and :func:`resolve_unknown` looks for its Message-ID in the account's Sent folder: found -> SENT, otherwise
it stays UNKNOWN for the user to decide. Nothing is ever resent blindly. (With the outbox transport the file
is the proof: found -> SENT, absent -> APPROVED, since it is written atomically.)
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from followupd.config import AccountConfig, Config, SendConfig
from followupd.core.sending import (
    RATE_PERIOD,
    WAITING,
    Decision,
    DueDraft,
    SendCounts,
    SendRules,
    Verdict,
    day_start,
    decide,
)
from followupd.core.window import parse_window
from followupd.engine import deliver as trip
from followupd.errors import FollowupdError
from followupd.mail import outbox
from followupd.mail.smtp import Login
from followupd.store.db import Database
from followupd.store.models import Account, Contact, Draft, DraftState

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted while sending; it will be looked for in the Sent folder, never simply resent"
_CLOSING = {
    Verdict.SUPERSEDE: DraftState.SUPERSEDED,
    Verdict.SKIP: DraftState.SKIPPED,
    Verdict.BLOCK: DraftState.FAILED,
}


@dataclass(frozen=True, slots=True)
class DraftOutcome:
    """One approved draft in a run: the decision (``verdict``), its state afterwards, and why."""

    draft_id: int
    to: str
    verdict: str
    state: str
    reason: str
    not_before: datetime | None = None


@dataclass
class SendReport:
    """What a run did (or, with ``dry_run``, would do) with every approved draft, and failed accounts."""

    dry_run: bool = False
    drafts: list[DraftOutcome] = field(default_factory=list)
    errors: dict[str, FollowupdError] = field(default_factory=dict)

    def count(self, state: str) -> int:
        """How many drafts ended the run in ``state``."""
        return sum(1 for d in self.drafts if d.state == state)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What :func:`resolve_unknown` concluded about one UNKNOWN draft."""

    draft_id: int
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Row:
    version: int
    account: str
    to: str


def send_rules(send: SendConfig) -> SendRules:
    """The ``[send]`` section in the form :func:`followupd.core.sending.decide` takes."""
    return SendRules(
        window=parse_window(send.window),
        zone=ZoneInfo(send.timezone),
        recipient_timezone=send.recipient_timezone,
        holidays=frozenset(date.fromisoformat(d) for d in send.holidays),
        daily_cap=send.daily_cap,
        per_minute=send.per_minute,
    )


def send_due(
    db: Database, config: Config, *, now: datetime, dry_run: bool = False, rng: random.Random | None = None
) -> SendReport:
    """Send every approved draft that is due at ``now`` (see the module docstring); blocking."""
    return asyncio.run(send_due_async(db, config, now=now, dry_run=dry_run, rng=rng))


async def send_due_async(
    db: Database, config: Config, *, now: datetime, dry_run: bool = False, rng: random.Random | None = None
) -> SendReport:
    """The async form of :func:`send_due`, for the daemon's loop. Drafts go one at a time, oldest first.

    ``rng`` draws the retry jitter. With ``dry_run`` nothing is changed: the report says what would go and
    why the others wait.
    """
    rules = send_rules(config.send)
    with db.read() as session:
        candidates, rows = _candidates(session, config)
        counts = _counts(session, rules, now)
    decisions = decide(candidates, rules, counts, now=now)
    report = SendReport(dry_run=dry_run)
    if dry_run:
        report.drafts = [_outcome(d, rows[d.draft_id], DraftState.APPROVED) for d in decisions]
        return report
    run = _Run(db, config, now, rng or random.Random(), report)  # noqa: S311 (jitter, not secrecy)
    try:
        for decision in decisions:
            await run.apply(decision, rows[decision.draft_id])
    finally:
        await asyncio.to_thread(run.folders.close)
    return report


def _candidates(session: Session, config: Config) -> tuple[list[DueDraft], dict[int, _Row]]:
    query = (
        select(Draft, Contact, Account.name)
        .join(Contact, Draft.contact_id == Contact.id)
        .join(Account, Draft.account_id == Account.id)
        .where(Draft.state == DraftState.APPROVED.value)
    )
    own = {a.name: a.addresses for a in config.accounts}
    drafts, rows = [], {}
    for draft, contact, account in session.execute(query):
        drafts.append(trip.due_draft(draft, contact, own.get(account, frozenset())))
        rows[draft.id] = _Row(draft.version, account, draft.to_addrs)
    return drafts, rows


def _counts(session: Session, rules: SendRules, now: datetime) -> SendCounts:
    """Sends today and in the last minute; SENDING and UNKNOWN drafts count too (they may have gone out)."""
    since = day_start(now, rules.zone)
    sent = select(Draft.sent_at).where(Draft.state == DraftState.SENT.value, Draft.sent_at >= since)
    maybe = select(Draft.updated_at).where(
        Draft.state.in_([DraftState.SENDING.value, DraftState.UNKNOWN.value]), Draft.updated_at >= since
    )
    moments = [*session.scalars(sent), *session.scalars(maybe)]
    recent = sum(1 for at in moments if at is not None and at > now - RATE_PERIOD)
    return SendCounts(today=len(moments), last_minute=recent)


def _outcome(decision: Decision, row: _Row, state: DraftState, reason: str = "") -> DraftOutcome:
    waiting = state is DraftState.APPROVED
    return DraftOutcome(
        decision.draft_id,
        row.to,
        decision.verdict.value,
        state.value,
        reason or decision.reason,
        decision.not_before if waiting else None,
    )


class _Run:
    """One pass over the decisions: per-account credentials and failures, and the IMAP Sent folders."""

    def __init__(
        self, db: Database, config: Config, now: datetime, rng: random.Random, report: SendReport
    ) -> None:
        self.db, self.config, self.now, self.rng, self.report = db, config, now, rng, report
        self.logins: dict[str, Login | None] = {}
        self.folders = trip.SentFolders()

    async def apply(self, decision: Decision, row: _Row) -> None:
        if decision.verdict in WAITING:
            self._add(decision, row, DraftState.APPROVED)
        elif decision.verdict in _CLOSING:
            state = _CLOSING[decision.verdict]
            if trip.close(
                self.db, decision.draft_id, row.version, state, reason=decision.reason, now=self.now
            ):
                self._add(decision, row, state)
            else:
                self._add(decision, row, DraftState.APPROVED, "changed meanwhile; left as it is")
        else:
            await self._send(decision, row)

    def _add(self, decision: Decision, row: _Row, state: DraftState, reason: str = "") -> None:
        self.report.drafts.append(_outcome(decision, row, state, reason))

    def _fail_account(self, name: str, exc: FollowupdError) -> None:
        log.error("%s: cannot send: %s", name, exc)
        self.report.errors[name] = exc

    async def _send(self, decision: Decision, row: _Row) -> None:
        if row.account in self.report.errors:
            self._add(decision, row, DraftState.APPROVED, f"account {row.account} failed in this run")
            return
        try:
            account = self.config.account(row.account)
            login = await self._login(account)
        except FollowupdError as exc:
            self._fail_account(row.account, exc)
            self._add(decision, row, DraftState.APPROVED, str(exc))
            return
        zone = ZoneInfo(self.config.send.timezone)
        claimed = trip.claim(
            self.db, decision.draft_id, version=row.version, account=row.account, now=self.now, zone=zone
        )
        if not isinstance(claimed, trip.Outgoing):
            self._add(decision, row, *claimed)
            return
        try:
            result = await trip.deliver(claimed, account, self.config.send, login)
        except FollowupdError as exc:  # account-level (login refused, no TLS...): nothing went out
            self._fail_account(row.account, exc)
            trip.release(self.db, claimed, str(exc), now=self.now)
            self._add(decision, row, DraftState.APPROVED, str(exc))
            return
        state = trip.record(
            self.db,
            claimed,
            result,
            now=self.now,
            max_attempts=self.config.send.max_attempts,
            jitter=self.rng.random(),
        )
        self._add(decision, row, state, trip.describe(result))
        if state is DraftState.SENT and self.config.send.transport == "smtp":
            await self._file_copy(account, claimed)

    async def _login(self, account: AccountConfig) -> Login | None:
        if self.config.send.transport == "outbox":
            return None
        if account.name not in self.logins:
            self.logins[account.name] = await asyncio.to_thread(trip.smtp_login, account)
        return self.logins[account.name]

    async def _file_copy(self, account: AccountConfig, item: trip.Outgoing) -> None:
        """Keep a copy in Sent; failing here is logged and never causes a resend (the draft stays SENT)."""
        try:
            done = await asyncio.to_thread(self.folders.file_copy, account, item.message_id, item.raw)
        except FollowupdError as exc:
            log.warning("draft %d was sent, but no copy was kept in Sent: %s", item.draft_id, exc)
            return
        log.info("draft %d: %s", item.draft_id, done)


# ------------------------------------------------------------------------------------------ after a crash


def recover_sending(db: Database) -> list[int]:
    """At start-up: every SENDING draft (its sender died mid-send) becomes UNKNOWN. Returns their ids.

    The version is left alone, so that a sender which is in fact still running can record its outcome.
    """
    with db.write() as session:
        ids = list(session.scalars(select(Draft.id).where(Draft.state == DraftState.SENDING.value)))
        if ids:
            session.execute(
                update(Draft)
                .where(Draft.id.in_(ids), Draft.state == DraftState.SENDING.value)
                .values(state=DraftState.UNKNOWN.value, last_error=INTERRUPTED)
            )
    for draft_id in ids:
        log.warning(
            "draft %d was being sent when followupd stopped; whether it went out is unknown", draft_id
        )
    return ids


def resolve_unknown(db: Database, config: Config, *, now: datetime) -> list[Resolution]:
    """Settle UNKNOWN drafts without resending; see :func:`resolve_unknown_async`. Blocking."""
    return asyncio.run(resolve_unknown_async(db, config, now=now))


async def resolve_unknown_async(db: Database, config: Config, *, now: datetime) -> list[Resolution]:
    """Look for each UNKNOWN draft's Message-ID in its account's Sent folder over IMAP.

    Found -> SENT (sent at the attempt's time; the contact is touched). Not found, or the folder cannot be
    read -> it stays UNKNOWN, for the user. With the outbox transport: its file -> SENT, none -> APPROVED.
    ``now`` is unused today (the sent time is the attempt's); it keeps the daemon's units alike.
    """
    query = (
        select(Draft.id, Draft.version, Draft.message_id, Draft.updated_at, Draft.contact_id, Account.name)
        .join(Account, Draft.account_id == Account.id)
        .where(Draft.state == DraftState.UNKNOWN.value)
        .order_by(Draft.id)
    )
    with db.read() as session:
        rows = session.execute(query).all()
    lookup = _Lookup(config)
    results = []
    try:
        for draft_id, version, message_id, attempted_at, contact_id, name in rows:
            found = await lookup.went_out(draft_id, trip.bare_id(message_id), name)
            if isinstance(found, str):
                results.append(Resolution(draft_id, DraftState.UNKNOWN.value, found))
                continue
            results.append(
                _settle(
                    db,
                    config.send,
                    found=found,
                    draft_id=draft_id,
                    version=version,
                    contact_id=contact_id,
                    at=attempted_at,
                )
            )
    finally:
        await asyncio.to_thread(lookup.folders.close)
    return results


class _Lookup:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.folders = trip.SentFolders()
        self.failed: set[str] = set()

    async def went_out(self, draft_id: int, message_id: str, account: str) -> bool | str:
        """Whether the draft went out, or why that cannot be told now."""
        send = self.config.send
        if send.transport == "outbox":
            return send.outbox_dir is not None and outbox.find(send.outbox_dir, draft_id) is not None
        if account in self.failed:
            return f"cannot read account {account}'s Sent folder now"
        try:
            return await asyncio.to_thread(self.folders.contains, self.config.account(account), message_id)
        except FollowupdError as exc:
            self.failed.add(account)
            log.warning("cannot look for unknown drafts in %s's Sent folder: %s", account, exc)
            return f"cannot read the Sent folder: {exc}"


def _settle(
    db: Database, send: SendConfig, *, found: bool, draft_id: int, version: int, contact_id: int, at: datetime
) -> Resolution:
    if not found and send.transport == "smtp":
        why = "not in the Sent folder: check with the recipient, then mark it sent or approve it again"
        return Resolution(draft_id, DraftState.UNKNOWN.value, why)
    if found:
        state, why = (
            DraftState.SENT,
            f"found in the {'Sent folder' if send.transport == 'smtp' else 'outbox'}",
        )
        values: dict[str, Any] = {"sent_at": at, "next_attempt_at": None}
    else:
        state, why, values = DraftState.APPROVED, "never written to the outbox; it will go again", {}
    with db.write() as session:
        if not trip.cas(
            session, draft_id, version, [DraftState.UNKNOWN], state=state.value, last_error=None, **values
        ):
            return Resolution(draft_id, DraftState.UNKNOWN.value, "changed meanwhile; left as it is")
        if found:
            trip.touch(session, contact_id, at)
    log.info("unknown draft %d: %s", draft_id, why)
    return Resolution(draft_id, state.value, why)


__all__ = [
    "DraftOutcome",
    "Resolution",
    "SendReport",
    "recover_sending",
    "resolve_unknown",
    "resolve_unknown_async",
    "send_due",
    "send_due_async",
    "send_rules",
]
