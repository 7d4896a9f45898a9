"""Cadence: when is a follow-up due for one contact, and why.

Everything here is a pure function of a contact's state, the configured rules and ``now``. The planner calls
:func:`next_due` once per contact, so the work per call is a handful of comparisons (no parsing, no string
formatting until a draft is actually chosen).

The triggers, in the order they are tried (the first that applies decides; a later one never "falls through"
when the first one's draft was already made, skipped or superseded — that is what keeps a skipped nudge from
turning into a different draft a minute later):

1. ``after_meeting`` — the latest exchange with the contact is a meeting that ended: thank-you-and-give
   ``delay`` after the end.
2. ``awaiting_reply`` — the user wrote last, in a thread that asked something, and nothing came back: one
   gentle nudge ``delay`` after the user's latest message, at most ``max_nudges`` times.
3. ``new_contact`` — the contact appeared recently (within ``expires_after`` of ``first_seen_at``) and the
   conversation stopped: follow up ``delay`` after the latest exchange. One per contact, ever. A contact with
   no exchange at all (imported from an address book) had no conversation: only keep_in_touch applies, an
   interval after ``first_seen_at``.
4. ``keep_in_touch`` — the latest exchange is older than the contact's interval (tier or override).

Nothing is due for the user's own addresses, automated senders, ignored or (still) muted contacts, and nothing
is due while a reply is owed (the contact wrote last): the contact is shown as "reply owed" instead.
Any exchange — inbound, outbound or a meeting — moves the clock, because every trigger is measured from the
latest exchange.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # The contact state is the planner's input type; cadence only reads its fields.
    from followupd.core.planner import ContactState

DEFAULT_TIER = "default"


class Reason(enum.StrEnum):
    """Why a follow-up is drafted; also the name of the template that writes it."""

    NEW_CONTACT = "new_contact"
    AFTER_MEETING = "after_meeting"
    AWAITING_REPLY = "awaiting_reply"
    KEEP_IN_TOUCH = "keep_in_touch"


class ContactStatus(enum.StrEnum):
    """What the user decided about a contact: drafted for, paused, or never."""

    ACTIVE = "active"
    MUTED = "muted"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Tier:
    """A named cadence: how often someone in this tier should hear from the user."""

    name: str
    interval: timedelta


@dataclass(frozen=True, slots=True)
class TierRule:
    """Assigns ``tier`` to contacts matching every given criterion (a rule with no criterion matches nobody).

    ``address`` is compared case-insensitively; ``domain`` matches the address's domain or any subdomain of
    it (``example.com`` matches ``a@mail.example.com``); ``tag`` must be one of the contact's tags.
    """

    tier: str
    address: str | None = None
    domain: str | None = None
    tag: str | None = None
    _address: str | None = field(init=False, repr=False, compare=False, default=None)
    _at_domain: str | None = field(init=False, repr=False, compare=False, default=None)
    _dot_domain: str | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        # Normalised once here, because matching runs for every contact of every plan. Empty strings mean
        # "no criterion", like None: that is how an absent TOML key may arrive.
        if self.address:
            object.__setattr__(self, "_address", self.address.strip().lower())
        if self.domain:
            domain = self.domain.strip().lower().lstrip("@.")
            object.__setattr__(self, "_at_domain", "@" + domain)
            object.__setattr__(self, "_dot_domain", "." + domain)

    def matches(self, email: str, tags: frozenset[str]) -> bool:
        """True when this rule applies to a contact with (lower-case) ``email`` and ``tags``."""
        if self.tag and self.tag not in tags:
            return False
        if self._address is not None and email != self._address:
            return False
        if self._at_domain is not None and self._dot_domain is not None:
            return email.endswith(self._at_domain) or email.endswith(self._dot_domain)
        return bool(self.tag) or self._address is not None


@dataclass(frozen=True, slots=True)
class Trigger:
    """One trigger's switch and timing.

    ``delay`` is measured from the triggering event (see the module docstring). ``expires_after`` bounds how
    long after its event a trigger still applies, so a first scan of an old mailbox does not thank people
    for meetings from three years ago; None means the trigger's default (new_contact 30 days after first
    seen, after_meeting 7 days after the end, awaiting_reply 30 days after the message; keep_in_touch never
    expires). ``max_nudges`` only matters for awaiting_reply.
    """

    enabled: bool = True
    delay: timedelta = timedelta(0)
    max_nudges: int = 1
    expires_after: timedelta | None = None


def _default_tiers() -> Mapping[str, Tier]:
    return MappingProxyType(
        {
            "close": Tier("close", timedelta(days=30)),
            "regular": Tier("regular", timedelta(days=90)),
            "distant": Tier("distant", timedelta(days=180)),
        }
    )


@dataclass(frozen=True, slots=True)
class CadenceRules:
    """The ``[cadence]`` configuration. Defaults: every real person every 90 days; tiers close 30d,
    regular 90d, distant 180d; new_contact 3 days after the conversation stops (for 30 days after first
    seen); after_meeting 1 day after the end (for 7 days); awaiting_reply 5 days, at most one nudge (for 30
    days); at most 5 new drafts a day and 20 a week; jitter up to 2 days.
    """

    default_interval: timedelta = timedelta(days=90)
    tiers: Mapping[str, Tier] = field(default_factory=_default_tiers)
    rules: tuple[TierRule, ...] = ()
    new_contact: Trigger = Trigger(delay=timedelta(days=3))
    after_meeting: Trigger = Trigger(delay=timedelta(days=1))
    awaiting_reply: Trigger = Trigger(delay=timedelta(days=5), max_nudges=1)
    keep_in_touch: Trigger = Trigger()
    max_new_per_day: int = 5
    max_new_per_week: int = 20
    jitter: timedelta = timedelta(days=2)
    # The rules as plain tuples (tier, tag, address, "@domain", ".domain"): tier_for runs for every contact
    # of every plan, and a tuple loop costs a fraction of a method call per rule.
    _matchers: tuple[tuple[str, str | None, str | None, str | None, str | None], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        matchers = tuple(
            (rule.tier, rule.tag or None, rule._address, rule._at_domain, rule._dot_domain)
            for rule in self.rules
            if rule.tag or rule._address or rule._at_domain
        )
        object.__setattr__(self, "_matchers", matchers)


@dataclass(frozen=True, slots=True)
class Due:
    """The one follow-up a contact is due for (``due_at`` may still be in the future).

    ``anchor_at`` is the latest exchange known when the decision was made (a later one supersedes the
    draft); ``overdue_from`` is when the contact first became due, used to serve the longest-overdue first;
    ``event_at`` and ``ref`` name the triggering event (first seen, meeting end and id, the unanswered
    message's id) and ``count`` the nudge number or keep-in-touch cycle; ``span`` is the delay or interval
    the rule applied. The text properties are built on demand, because the planner asks for them only for
    the few drafts it queues.
    """

    reason: Reason
    due_at: datetime
    anchor_at: datetime
    overdue_from: datetime
    event_at: datetime
    span: timedelta
    ref: str = ""
    count: int = 1
    tier: str = ""
    max_nudges: int = 0

    @property
    def anchor(self) -> str:
        """The event the draft answers, as it appears in the idempotency key (see planner)."""
        if self.reason is Reason.NEW_CONTACT:
            return iso(self.event_at)
        if self.reason is Reason.AFTER_MEETING:
            return f"{self.ref}@{iso(self.event_at)}"
        if self.reason is Reason.AWAITING_REPLY:
            return f"{self.ref}#{self.count}"
        return f"{iso(self.event_at)}/{self.count}"

    @property
    def rule(self) -> str:
        """The configured rule that made this due, in words."""
        if self.reason is Reason.NEW_CONTACT:
            return f"new contact, {_span(self.span)} after the conversation stopped"
        if self.reason is Reason.AFTER_MEETING:
            return f"thank-you {_span(self.span)} after the meeting"
        if self.reason is Reason.AWAITING_REPLY:
            return f"nudge {self.count} of {self.max_nudges}, {_span(self.span)} after your message"
        return f"tier {self.tier}: every {_span(self.span)}"

    @property
    def why(self) -> str:
        """A one-line "why now" for the review screen: the trigger, the last exchange and the rule."""
        return f"{self.reason}: last exchange {_day(self.anchor_at)}; {self.rule}; due {_day(self.due_at)}"


def _day(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def iso(at: datetime) -> str:
    """Stable text for a timestamp inside keys: UTC, to the second. Naive datetimes are refused."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: every *_at value must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="seconds")


def latest_exchange(state: ContactState) -> datetime | None:
    """The latest real exchange with the contact (inbound, outbound, meeting end or recorded touch)."""
    latest = state.last_touch_at
    for at in (state.last_inbound_at, state.last_outbound_at, state.last_meeting_end_at):
        if at is not None and (latest is None or at > latest):
            latest = at
    return latest


def _paused(state: ContactState, now: datetime) -> str | None:
    if state.is_own:
        return "one of your own addresses"
    if state.automated:
        return "automated sender"
    if state.status == ContactStatus.IGNORED:
        return "contact ignored"
    if state.status == ContactStatus.MUTED and (state.muted_until is None or state.muted_until > now):
        return "contact muted"
    return None


def ineligible(state: ContactState, *, now: datetime) -> str | None:
    """Why no draft may exist for this contact right now (own, automated, ignored, muted, reply owed)."""
    return _paused(state, now) or ("reply owed: they wrote last" if state.owes_reply else None)


def reply_owed(state: ContactState, *, now: datetime) -> bool:
    """True when the contact should be shown as "reply owed" (they wrote last) instead of getting a draft."""
    return state.owes_reply and _paused(state, now) is None


class CadenceFields(Protocol):
    """What a contact's tier and interval depend on: a ContactState has these, and so does a light row."""

    @property
    def email(self) -> str: ...
    @property
    def tags(self) -> frozenset[str]: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def cadence_override(self) -> timedelta | None: ...


def tier_for(state: CadenceFields, rules: CadenceRules) -> str:
    """The contact's tier: the one set on the contact, else the first matching rule, else ``default``."""
    if state.tier:
        return state.tier
    if rules._matchers:
        email, tags = state.email.lower(), state.tags
        # Same logic as TierRule.matches, inlined over tuples for speed.
        for tier, tag, address, at_domain, dot_domain in rules._matchers:
            if tag is not None and tag not in tags:
                continue
            if address is not None and email != address:
                continue
            if at_domain is not None and not (email.endswith(at_domain) or email.endswith(dot_domain or "")):
                continue
            return tier
    return DEFAULT_TIER


def interval_for(state: CadenceFields, rules: CadenceRules) -> timedelta:
    """How often this contact should hear from the user: override > tier (rule) > default interval.

    A tier name with no configured tier falls back to the default interval (config validation reports it).
    """
    return _interval(state, rules, tier_for(state, rules))


def _interval(state: CadenceFields, rules: CadenceRules, tier_name: str) -> timedelta:
    if state.cadence_override is not None:
        return state.cadence_override
    tier = rules.tiers.get(tier_name)
    return tier.interval if tier is not None else rules.default_interval


@dataclass(frozen=True, slots=True)
class TouchRow:
    """The little the planner needs to rank a contact for keep_in_touch without loading its whole state."""

    contact_id: int
    email: str
    tags: frozenset[str]
    tier: str | None
    cadence_override: timedelta | None
    last_touch_at: datetime | None


def most_overdue(rows: Iterable[TouchRow], rules: CadenceRules, *, now: datetime, limit: int) -> list[int]:
    """Ids of the ``limit`` contacts whose keep-in-touch date passed longest ago , oldest first.

    The planner queues at most a few drafts a day and serves the longest-overdue first, so only these can
    become keep_in_touch drafts; the caller loads the full state of these (and of contacts with event
    triggers or live drafts) instead of every contact.
    """
    if limit <= 0 or not rules.keep_in_touch.enabled:
        return []
    delay = rules.keep_in_touch.delay
    scored = []
    for row in rows:
        if row.last_touch_at is None:
            continue
        due_at = row.last_touch_at + interval_for(row, rules) + delay
        if due_at <= now:
            scored.append((due_at, row.contact_id))
    return [contact_id for _due, contact_id in heapq.nsmallest(limit, scored)]


# How long after its event a trigger applies when its ``expires_after`` is not set.
DEFAULT_EXPIRY = MappingProxyType(
    {
        Reason.NEW_CONTACT: timedelta(days=30),
        Reason.AFTER_MEETING: timedelta(days=7),
        Reason.AWAITING_REPLY: timedelta(days=30),
    }
)


def _expired(trigger: Trigger, reason: Reason, event_at: datetime, now: datetime) -> bool:
    window = trigger.expires_after if trigger.expires_after is not None else DEFAULT_EXPIRY[reason]
    return now - event_at > window


def _after_meeting(state: ContactState, rules: CadenceRules, latest: datetime, now: datetime) -> Due | None:
    trigger, end = rules.after_meeting, state.last_meeting_end_at
    # Only when the meeting is the latest exchange: a mail written after it means the follow-up happened.
    if (
        not trigger.enabled
        or end is None
        or end < latest
        or _expired(trigger, Reason.AFTER_MEETING, end, now)
    ):
        return None
    meeting_id = state.last_meeting.id if state.last_meeting is not None else ""
    due_at = end + trigger.delay
    return Due(Reason.AFTER_MEETING, due_at, latest, due_at, end, trigger.delay, ref=meeting_id)


def _awaiting_reply(state: ContactState, rules: CadenceRules, latest: datetime, now: datetime) -> Due | None:
    trigger, awaiting = rules.awaiting_reply, state.awaiting
    if not trigger.enabled or awaiting is None or awaiting.nudges_sent >= trigger.max_nudges:
        return None
    if _answered(state, awaiting.sent_at) or _expired(trigger, Reason.AWAITING_REPLY, awaiting.sent_at, now):
        return None
    # Measured from the user's latest message, so a nudge (or any later note) restarts the wait.
    base = max(awaiting.sent_at, state.last_outbound_at or awaiting.sent_at)
    due_at = base + trigger.delay
    nudge, most = awaiting.nudges_sent + 1, trigger.max_nudges
    delay = trigger.delay
    return Due(
        Reason.AWAITING_REPLY,
        due_at,
        latest,
        due_at,
        awaiting.sent_at,
        delay,
        awaiting.message_id,
        nudge,
        max_nudges=most,
    )


def _answered(state: ContactState, sent_at: datetime) -> bool:
    after = (state.last_inbound_at, state.last_meeting_end_at)
    return any(at is not None and at > sent_at for at in after)


def _new_contact(state: ContactState, rules: CadenceRules, latest: datetime, now: datetime) -> Due | None:
    trigger = rules.new_contact
    if not trigger.enabled or _expired(trigger, Reason.NEW_CONTACT, state.first_seen_at, now):
        return None
    due_at = latest + trigger.delay
    return Due(Reason.NEW_CONTACT, due_at, latest, due_at, state.first_seen_at, trigger.delay)


def _keep_in_touch(
    state: ContactState, rules: CadenceRules, latest: datetime, now: datetime, *, future: bool
) -> Due | None:
    tier = tier_for(state, rules)
    interval = _interval(state, rules, tier)
    first_due = latest + interval + rules.keep_in_touch.delay
    if not future and first_due > now:
        return None  # most contacts, most of the time: skip building a Due nobody will look at
    cycle = 1
    if now > first_due and interval > timedelta(0):
        # A skipped keep-in-touch comes back one interval later under a new key, instead of never.
        cycle += (now - first_due) // interval
    due_at = first_due + (cycle - 1) * interval
    return Due(Reason.KEEP_IN_TOUCH, due_at, latest, first_due, latest, interval, count=cycle, tier=tier)


def _span(delta: timedelta) -> str:
    if delta.days and not delta.seconds:
        return f"{delta.days} day{'s' if delta.days != 1 else ''}"
    hours = round(delta.total_seconds() / 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def next_due(state: ContactState, rules: CadenceRules, *, now: datetime) -> Due | None:
    """The follow-up this contact is due for (possibly in the future), or None when none may be drafted.

    The first applicable trigger in the order after_meeting, awaiting_reply, new_contact, keep_in_touch
    decides; keep_in_touch applies to every eligible contact unless switched off.
    """
    return _decide(state, rules, now, future=True)


def due_now(state: ContactState, rules: CadenceRules, *, now: datetime) -> Due | None:
    """:func:`next_due` when it is due by ``now``, else None — cheaper, for the planner's hot loop."""
    return _decide(state, rules, now, future=False)


def _decide(state: ContactState, rules: CadenceRules, now: datetime, *, future: bool) -> Due | None:
    if ineligible(state, now=now) is not None:
        return None
    exchanged = latest_exchange(state)
    latest = exchanged or state.first_seen_at
    for step in (_after_meeting, _awaiting_reply, _new_contact):
        if exchanged is None and step is _new_contact:
            continue  # no conversation to follow up (an imported address book entry): keep_in_touch only
        due = step(state, rules, latest, now)
        if due is not None:
            return due if future or due.due_at <= now else None
    if not rules.keep_in_touch.enabled:
        return None
    return _keep_in_touch(state, rules, latest, now, future=future)
