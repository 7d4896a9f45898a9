"""Which approved drafts go out now, and why the others wait: a pure decision over plain data.

The engine reads the approved drafts (with their contact's latest exchanges) and how many sends each
sending account already made today and in the last minute, calls :func:`decide`, and then acts on the
verdicts: it claims the ``SEND`` ones, supersedes or skips the ones that must never go, and leaves the rest
waiting. ``--dry-run`` is the same call without the acting. Nothing here reads the clock: ``now`` is a
parameter.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from followupd.core.window import Window, next_open

RATE_PERIOD = timedelta(minutes=1)
RETRY_BASE = timedelta(minutes=2)
RETRY_CAP = timedelta(hours=2)
_SEARCH_DAYS = 60


class Verdict(enum.StrEnum):
    """What happens to one approved draft now."""

    SEND = "send"
    SUPERSEDE = "supersede"  # something happened with the contact after the draft was planned
    SKIP = "skip"  # the contact is ignored
    BLOCK = "block"  # it would go to the user's own address: never sent, FAILED
    NOT_SCHEDULED = "not_scheduled"
    BACKOFF = "backoff"  # a temporary failure; waiting for the next attempt
    MUTED = "muted"
    HOLIDAY = "holiday"
    OUTSIDE_WINDOW = "outside_window"
    DAILY_CAP = "daily_cap"
    RATE_LIMIT = "rate_limit"


WAITING = frozenset(
    {
        Verdict.NOT_SCHEDULED,
        Verdict.BACKOFF,
        Verdict.MUTED,
        Verdict.HOLIDAY,
        Verdict.OUTSIDE_WINDOW,
        Verdict.DAILY_CAP,
        Verdict.RATE_LIMIT,
    }
)
"""Verdicts that leave the draft APPROVED, to be looked at again later."""


@dataclass(frozen=True, slots=True)
class DueDraft:
    """An approved draft and what the last check before sending needs to know about its contact."""

    id: int
    planned_at: datetime
    scheduled_at: datetime
    next_attempt_at: datetime | None = None
    recipients: tuple[str, ...] = ()
    own_addresses: frozenset[str] = frozenset()
    contact_status: str = "active"
    muted_until: datetime | None = None
    recipient_offset: int | None = None
    """The recipient's UTC offset in minutes, learned from their Date headers (None: unknown)."""
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    last_meeting_at: datetime | None = None
    account: str = ""
    """The sending account's name: the caps are counted per account."""


@dataclass(frozen=True, slots=True)
class SendRules:
    """The ``[send]`` settings the decision needs, already parsed. The caps apply to each account."""

    window: Window
    zone: tzinfo
    recipient_timezone: bool = False
    holidays: frozenset[date] = frozenset()
    daily_cap: int = 40
    per_minute: int = 5


@dataclass(frozen=True, slots=True)
class SendCounts:
    """One account's sends already made (or possibly made: SENDING/UNKNOWN) today and in the last minute."""

    today: int = 0
    last_minute: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one draft, a human reason, and for a waiting draft the earliest moment it may go."""

    draft_id: int
    verdict: Verdict
    reason: str
    not_before: datetime | None = None


def decide(
    drafts: Iterable[DueDraft],
    rules: SendRules,
    counts: SendCounts | Mapping[str, SendCounts],
    *,
    now: datetime,
) -> list[Decision]:
    """A decision for every draft, oldest scheduled first; per account, at most the caps' remaining budget
    get ``SEND``.

    ``counts`` are the sends already made by each account (by name; an account not in the mapping has made
    none); a single :class:`SendCounts` counts for every account alike, as when there is only one. Providers
    limit each mailbox, so ``daily_cap`` and ``per_minute`` are budgets per sending account
    (``DueDraft.account``): one account reaching its cap holds none of the others back.

    A draft is superseded when its contact wrote, was written to, or met the user after it was planned; it is
    skipped for an ignored contact and blocked when a recipient is the user's own address. Otherwise it waits
    until it is scheduled, its retry back-off is over, its contact is no longer muted, and ``now`` is inside
    the send window (in the recipient's time zone when configured and known) and not on one of the user's
    holidays (dates in the user's time zone). The daily cap counts days in the user's time zone.
    """
    budgets: dict[str, _Budget] = {}
    decisions = []
    for draft in sorted(drafts, key=lambda d: (d.scheduled_at, d.id)):
        decision = _check(draft, rules, now)
        if decision is None:
            budget = budgets.get(draft.account)
            if budget is None:
                budget = budgets[draft.account] = _Budget.of(rules, _counts_of(counts, draft.account))
            decision = budget.spend(draft, rules, now)
        decisions.append(decision)
    return decisions


def _counts_of(counts: SendCounts | Mapping[str, SendCounts], account: str) -> SendCounts:
    if isinstance(counts, SendCounts):
        return counts
    return counts.get(account, SendCounts())


@dataclass(slots=True)
class _Budget:
    """What one account may still send today and this minute."""

    day_left: int
    minute_left: int

    @classmethod
    def of(cls, rules: SendRules, counts: SendCounts) -> _Budget:
        return cls(rules.daily_cap - counts.today, rules.per_minute - counts.last_minute)

    def spend(self, draft: DueDraft, rules: SendRules, now: datetime) -> Decision:
        """SEND (one taken from both budgets) or, with either spent, the cap's waiting verdict."""
        whose = f" for account {draft.account}" if draft.account else ""
        if self.day_left <= 0:
            return Decision(
                draft.id,
                Verdict.DAILY_CAP,
                f"daily cap of {rules.daily_cap} reached{whose}",
                day_start(now, rules.zone) + timedelta(days=1),
            )
        if self.minute_left <= 0:
            return Decision(
                draft.id,
                Verdict.RATE_LIMIT,
                f"rate limit of {rules.per_minute} a minute reached{whose}",
                now + RATE_PERIOD,
            )
        self.day_left -= 1
        self.minute_left -= 1
        return Decision(draft.id, Verdict.SEND, "due now")


def _check(draft: DueDraft, rules: SendRules, now: datetime) -> Decision | None:
    """Every reason not to send ``draft`` now except the caps, or None."""
    return _never(draft) or _not_yet(draft, now) or _window_check(draft, rules, now)


def _never(draft: DueDraft) -> Decision | None:
    """Reasons this draft must never go: something new happened, the contact is ignored, it is to the user."""
    news = superseded_by(draft)
    if news is not None:
        return Decision(draft.id, Verdict.SUPERSEDE, news)
    if draft.contact_status == "ignored":
        return Decision(draft.id, Verdict.SKIP, "the contact is ignored")
    own = sorted(r for r in draft.recipients if r.lower() in draft.own_addresses)
    if own:
        return Decision(draft.id, Verdict.BLOCK, f"addressed to your own address {own[0]}")
    return None


def _not_yet(draft: DueDraft, now: datetime) -> Decision | None:
    if draft.scheduled_at > now:
        return Decision(draft.id, Verdict.NOT_SCHEDULED, "not yet scheduled", draft.scheduled_at)
    if draft.next_attempt_at is not None and draft.next_attempt_at > now:
        return Decision(draft.id, Verdict.BACKOFF, "waiting to retry", draft.next_attempt_at)
    if draft.contact_status == "muted" and (draft.muted_until is None or draft.muted_until > now):
        return Decision(draft.id, Verdict.MUTED, "the contact is muted", draft.muted_until)
    return None


def superseded_by(draft: DueDraft) -> str | None:
    """What happened with the contact after the draft was planned (they wrote, you wrote, you met) or None."""
    events = (
        (draft.last_inbound_at, "they wrote"),
        (draft.last_outbound_at, "you wrote to them"),
        (draft.last_meeting_at, "you met"),
    )
    for at, what in events:
        if at is not None and at > draft.planned_at:
            return f"{what} on {at.isoformat(timespec='minutes')}, after this draft was planned"
    return None


def recipient_zone(draft: DueDraft, rules: SendRules) -> tzinfo:
    """The zone the window is read in: the recipient's (a fixed offset) when configured and known."""
    if rules.recipient_timezone and draft.recipient_offset is not None:
        return timezone(timedelta(minutes=draft.recipient_offset))
    return rules.zone


def _window_check(draft: DueDraft, rules: SendRules, now: datetime) -> Decision | None:
    zone = recipient_zone(draft, rules)
    holiday = now.astimezone(rules.zone).date() in rules.holidays
    if not holiday and rules.window.contains(now.astimezone(zone)):
        return None
    where = "the recipient's time zone" if zone is not rules.zone else "your time zone"
    not_before = next_send_moment(rules, zone, now=now)
    if holiday:
        return Decision(draft.id, Verdict.HOLIDAY, "today is one of your holidays", not_before)
    return Decision(draft.id, Verdict.OUTSIDE_WINDOW, f"outside the send window ({where})", not_before)


def next_send_moment(rules: SendRules, zone: tzinfo, *, now: datetime) -> datetime | None:
    """The earliest moment at or after ``now`` inside the window read in ``zone`` and not on a holiday.

    Holidays are dates in the user's zone (``rules.zone``), which may differ from ``zone``. None when there is
    no such moment within about two months.
    """
    moment = now
    for _ in range(_SEARCH_DAYS):
        found = next_open(rules.window, zone, now=moment, horizon_days=_SEARCH_DAYS)
        if found is None:
            return None
        user_day = found.astimezone(rules.zone).date()
        if user_day not in rules.holidays:
            return found.astimezone(now.tzinfo)
        moment = datetime.combine(user_day + timedelta(days=1), time(0), rules.zone)
    return None


def day_start(now: datetime, zone: tzinfo) -> datetime:
    """Midnight of ``now``'s day in ``zone``, in ``now``'s time zone: where the daily cap's day begins."""
    local = now.astimezone(zone)
    return datetime.combine(local.date(), time(0), zone).astimezone(now.tzinfo)


def retry_delay(attempts: int, *, jitter: float) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt: exponential from 2 min, capped at 2 h.

    ``jitter`` in [0, 1) (the caller's random number) spreads the delay over its upper half, so drafts that
    failed together do not retry together.
    """
    exponent = max(0, min(attempts - 1, 16))
    delay = min(RETRY_BASE * (1 << exponent), RETRY_CAP)
    return delay * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))
