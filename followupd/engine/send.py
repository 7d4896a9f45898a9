"""``send_due``: approved drafts out, exactly once; ``recover_sending`` and ``resolve_unknown`` after a crash.

Decide, then act. The pure :func:`followupd.core.sending.decide` says which approved drafts go now and why
the others wait; each one that goes then makes the trip in :mod:`followupd.engine.deliver`:

1. *claimed*: one short write transaction locks its row with ``SELECT ... FOR UPDATE SKIP LOCKED`` (on
   PostgreSQL; a row another worker holds or has already taken is skipped, never waited on), re-checks it
   (still APPROVED, same version, nothing new with the contact since it was planned), builds its message and
   moves it to SENDING, committed before any I/O;
2. *delivered* by the transport (SMTP or the outbox), outside any transaction;
3. *recorded* in a second short transaction: SENT (the contact touched), back to APPROVED with a back-off
   for temporary failures (FAILED after ``max_attempts``), FAILED for a permanent refusal, or UNKNOWN when
   the connection was lost after the message data went out.

A SENDING draft found at start-up may or may not have gone out: :func:`recover_sending` makes it UNKNOWN,
and :func:`resolve_unknown` looks for its Message-ID in the account's Sent folder, never resending (both live
in :mod:`followupd.engine.recover` and are re-exported here).

Several workers may share one PostgreSQL database: each unit takes ``accounts`` (account names; None means
every configured account) and touches only those accounts' drafts, and the claim makes sure that no draft is
sent by two workers even when their accounts overlap. ``[send] daily_cap`` and ``per_minute`` are counted
per sending account (providers limit each mailbox), from what the database holds when a run starts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
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
from followupd.engine.recover import (
    INTERRUPTED,
    Resolution,
    recover_sending,
    resolve_unknown,
    resolve_unknown_async,
)
from followupd.errors import FollowupdError
from followupd.mail.smtp import Login
from followupd.store.db import Database
from followupd.store.models import Account, Contact, Draft, DraftState

log = logging.getLogger(__name__)

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
    db: Database,
    config: Config,
    *,
    now: datetime,
    dry_run: bool = False,
    rng: random.Random | None = None,
    accounts: Collection[str] | None = None,
) -> SendReport:
    """Send every approved draft that is due at ``now`` (see the module docstring); blocking."""
    return asyncio.run(send_due_async(db, config, now=now, dry_run=dry_run, rng=rng, accounts=accounts))


async def send_due_async(
    db: Database,
    config: Config,
    *,
    now: datetime,
    dry_run: bool = False,
    rng: random.Random | None = None,
    accounts: Collection[str] | None = None,
) -> SendReport:
    """The async form of :func:`send_due`, for the daemon's loop. Drafts go one at a time, oldest first.

    ``rng`` draws the retry jitter. With ``dry_run`` nothing is changed: the report says what would go and
    why the others wait. ``accounts`` (names) limits the run to those accounts' drafts; None: every account.
    A draft another worker claimed first is reported in the state it was found in and not sent.
    """
    rules = send_rules(config.send)
    with db.read() as session:
        candidates, rows = _candidates(session, config, accounts)
        counts = _counts(session, rules, now, accounts)
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


def _candidates(
    session: Session, config: Config, accounts: Collection[str] | None
) -> tuple[list[DueDraft], dict[int, _Row]]:
    query = (
        select(Draft, Contact, Account.name)
        .join(Contact, Draft.contact_id == Contact.id)
        .join(Account, Draft.account_id == Account.id)
        .where(Draft.state == DraftState.APPROVED.value)
    )
    own = {a.name: a.addresses for a in config.accounts}
    drafts, rows = [], {}
    for draft, contact, account in session.execute(trip.only_accounts(query, accounts)):
        drafts.append(trip.due_draft(draft, contact, own.get(account, frozenset()), account=account))
        rows[draft.id] = _Row(draft.version, account, draft.to_addrs)
    return drafts, rows


def _counts(
    session: Session, rules: SendRules, now: datetime, accounts: Collection[str] | None
) -> dict[str, SendCounts]:
    """Each account's sends today and in the last minute; SENDING and UNKNOWN drafts count too (they may have
    gone out)."""
    since = day_start(now, rules.zone)
    sent = (
        select(Account.name, Draft.sent_at)
        .join(Account, Draft.account_id == Account.id)
        .where(Draft.state == DraftState.SENT.value, Draft.sent_at >= since)
    )
    maybe = (
        select(Account.name, Draft.updated_at)
        .join(Account, Draft.account_id == Account.id)
        .where(
            Draft.state.in_([DraftState.SENDING.value, DraftState.UNKNOWN.value]), Draft.updated_at >= since
        )
    )
    today: dict[str, int] = {}
    recent: dict[str, int] = {}
    for query in (sent, maybe):
        for name, at in session.execute(trip.only_accounts(query, accounts)):
            today[name] = today.get(name, 0) + 1
            if at is not None and at > now - RATE_PERIOD:
                recent[name] = recent.get(name, 0) + 1
    return {name: SendCounts(today=n, last_minute=recent.get(name, 0)) for name, n in today.items()}


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


__all__ = [
    "INTERRUPTED",
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
