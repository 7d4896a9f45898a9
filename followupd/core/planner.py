"""The planner: from contacts' state and existing drafts to a list of actions (queue, supersede).

Pure and linear: one pass over the drafts to index them, one pass over the contacts calling
:func:`~followupd.core.cadence.due_now`, then the few due contacts are ranked and capped. Nothing is built
(keys, jitter, explanations) for a contact that is not due.

Idempotency key: ``f"{contact_id}:{reason}:{anchor}"`` where the anchor names the event the draft answers:

- new_contact: the contact's ``first_seen_at`` (``2024-05-01T09:30:00+00:00``) — one per contact, ever;
- after_meeting: ``{meeting id}@{meeting end}`` — one per meeting occurrence;
- awaiting_reply: ``{message id of the user's unanswered message}#{nudge number}``;
- keep_in_touch: ``{latest exchange}/{cycle}`` — a skipped one returns one interval later, under a new key.

A key that exists in any state (queued, sent, skipped, superseded...) is never queued again, so a superseded
draft cannot come back; the store's UNIQUE constraint on the key is the second line of defence.

Rules the planner keeps:

- at most one live draft per contact (queued, approved, snoozed, or in flight: sending/unknown);
- a live (queued/approved/snoozed) draft is superseded when an exchange newer than the one it was based on
  is known, or when the contact may no longer get drafts (own address, automated, ignored, muted, reply owed);
- the caller must pass every draft of every contact it passes (the database may pre-filter contacts, but
  drafts of a contact are all or nothing); drafts of contacts not passed are left alone;
- at most ``max_new_per_day - queued_today`` and ``max_new_per_week - queued_this_week`` new drafts;
  time-bound triggers (after_meeting, awaiting_reply, new_contact) are served before keep_in_touch, because
  a thank-you loses its point in days and a quarterly note does not; within each group the longest-overdue
  goes first;
- new_contact and keep_in_touch due dates are pushed back by a deterministic jitter in ``[0, jitter)``
  derived from ``(seed, key)``, so forty people met at one conference do not all come due on one morning.
  after_meeting and awaiting_reply answer one event at a delay the user chose, and are not jittered.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from followupd.core.cadence import (
    CadenceRules,
    ContactStatus,
    Due,
    Reason,
    due_now,
    ineligible,
    latest_exchange,
)

__all__ = [
    "LIVE",
    "SUPERSEDABLE",
    "Action",
    "Awaiting",
    "ContactState",
    "ContactStatus",
    "DraftState",
    "DraftStatus",
    "MeetingRef",
    "QueueDraft",
    "Reason",
    "SupersedeDraft",
    "ThreadRef",
    "draft_key",
    "jitter_offset",
    "plan",
]


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """A thread a draft can reply into: its subject and the message to answer (with its References)."""

    subject: str
    message_id: str
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MeetingRef:
    """The contact's latest meeting: a stable id (iCalendar UID or the store's id) and its subject."""

    id: str
    subject: str = ""
    start_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Awaiting:
    """The user's unanswered message that asked something.

    ``sent_at`` is when that message went out; ``nudges_sent`` counts nudges already sent for it (the
    store keeps pointing at the original message and counts). The nudge replies into this thread, so the
    message id and references are kept for threading. ``question`` is the question's text when the store
    keeps a snippet, else "" (the template then names the subject).
    """

    subject: str
    message_id: str
    sent_at: datetime
    references: tuple[str, ...] = ()
    nudges_sent: int = 0
    question: str = ""

    def thread(self) -> ThreadRef:
        """The thread a nudge replies into."""
        return ThreadRef(self.subject, self.message_id, self.references)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactState:
    """What the planner knows about one contact; all ``*_at`` values are timezone-aware UTC.

    ``status`` may be the enum or its text ("muted"); a muted contact with ``muted_until`` None stays muted
    until unmuted, one with a past ``muted_until`` is active again. ``tier`` and ``cadence_override`` are
    the per-contact settings from the CLI and win over the tier rules.

    ``owes_reply`` is true when the contact wrote last in a person-to-person thread and the user has not
    answered. ``last_touch_at`` may include touches the store records besides mail (a logged call); the
    latest of all exchange timestamps is what the cadence is measured from. ``automated`` contacts are never
    admitted by the store; the flag is here so a mistake upstream still cannot produce a draft.
    """

    contact_id: int
    email: str
    first_seen_at: datetime
    name: str = ""
    status: ContactStatus = ContactStatus.ACTIVE
    muted_until: datetime | None = None
    automated: bool = False
    is_own: bool = False
    tier: str | None = None
    cadence_override: timedelta | None = None
    tags: frozenset[str] = frozenset()
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    last_touch_at: datetime | None = None
    last_meeting_end_at: datetime | None = None
    last_meeting: MeetingRef | None = None
    owes_reply: bool = False
    awaiting: Awaiting | None = None
    last_thread: ThreadRef | None = None


class DraftStatus(enum.StrEnum):
    """A draft's place in its life cycle (see DESIGN.md section 5)."""

    QUEUED = "queued"
    APPROVED = "approved"
    SNOOZED = "snoozed"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    UNKNOWN = "unknown"


# Waiting for the user or the send window: a newer exchange cancels these.
SUPERSEDABLE = frozenset({DraftStatus.QUEUED, DraftStatus.APPROVED, DraftStatus.SNOOZED})
# In flight or possibly sent: not cancelled here (the sender re-checks), but no second draft meanwhile.
LIVE = SUPERSEDABLE | {DraftStatus.SENDING, DraftStatus.UNKNOWN}


@dataclass(frozen=True, slots=True, kw_only=True)
class DraftState:
    """An existing draft as the planner needs it.

    ``anchor_at`` is the latest exchange the draft was based on (``QueueDraft.anchor_at``, stored with the
    draft); when it is None, ``planned_at`` stands in for it.
    """

    id: int
    contact_id: int
    key: str
    reason: Reason
    state: DraftStatus
    planned_at: datetime
    scheduled_at: datetime | None = None
    anchor_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDraft:
    """Create a draft for review. ``thread`` is set when the draft replies into an existing thread."""

    contact_id: int
    key: str
    reason: Reason
    scheduled_at: datetime
    why: str
    anchor_at: datetime
    thread: ThreadRef | None = None


@dataclass(frozen=True, slots=True)
class SupersedeDraft:
    """Cancel a draft that is no longer right to send; ``why`` is shown to the user."""

    draft_id: int
    why: str


Action = QueueDraft | SupersedeDraft

_EVENT_REASONS = frozenset({Reason.AFTER_MEETING, Reason.AWAITING_REPLY, Reason.NEW_CONTACT})
_JITTERED = frozenset({Reason.NEW_CONTACT, Reason.KEEP_IN_TOUCH})


def draft_key(contact_id: int, due: Due) -> str:
    """The idempotency key of the draft ``due`` describes for ``contact_id``."""
    return f"{contact_id}:{due.reason}:{due.anchor}"


def jitter_offset(seed: int, key: str, span: timedelta) -> timedelta:
    """A deterministic offset in ``[0, span)`` from a stable hash of ``(seed, key)``."""
    if span <= timedelta(0):
        return timedelta(0)
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return span * (int.from_bytes(digest, "big") / 2**64)


@dataclass(slots=True)
class _Index:
    used_keys: set[str] = field(default_factory=set)
    live: dict[int, list[DraftState]] = field(default_factory=dict)


def _index(drafts: Iterable[DraftState]) -> _Index:
    index = _Index()
    for draft in drafts:
        index.used_keys.add(draft.key)
        if draft.state in LIVE:
            index.live.setdefault(draft.contact_id, []).append(draft)
    return index


def _supersede_why(contact: ContactState, draft: DraftState, now: datetime) -> str | None:
    blocked = ineligible(contact, now=now)
    if blocked is not None:
        return blocked
    latest = latest_exchange(contact)
    basis = draft.anchor_at or draft.planned_at
    if latest is not None and latest > basis:
        return f"new exchange on {latest:%Y-%m-%d %H:%M} UTC after the draft was planned"
    return None


# (rank, overdue_from, contact_id, contact, due): contact ids are unique in a plan, so tuple comparison never
# reaches the last two items. Plain tuples because one is built for every due contact.
_Candidate = tuple[int, datetime, int, ContactState, Due]


def _thread_for(contact: ContactState, reason: Reason) -> ThreadRef | None:
    if reason is Reason.AWAITING_REPLY and contact.awaiting is not None:
        return contact.awaiting.thread()
    if reason is Reason.KEEP_IN_TOUCH:
        # A months-old thread is the wrong place for a fresh note: keep-in-touch starts a new thread.
        return None
    return contact.last_thread


def _jitter_span(due: Due, rules: CadenceRules) -> timedelta:
    if due.reason not in _JITTERED:
        return timedelta(0)
    if due.reason is Reason.KEEP_IN_TOUCH:
        # A jitter longer than the cycle would keep pushing the draft into the next cycle.
        return min(rules.jitter, due.span / 2)
    return rules.jitter


def _chosen(
    candidates: list[_Candidate], budget: int, index: _Index, rules: CadenceRules, *, now: datetime, seed: int
) -> list[QueueDraft]:
    """Walk the due contacts most-overdue first; keys and jitter are computed only for those looked at."""
    chosen: list[QueueDraft] = []
    heapq.heapify(candidates)
    while candidates and len(chosen) < budget:
        _, _, contact_id, contact, due = heapq.heappop(candidates)
        key = draft_key(contact_id, due)
        if key in index.used_keys:
            continue
        due_at = due.due_at + jitter_offset(seed, key, _jitter_span(due, rules))
        if due_at <= now:
            chosen.append(_queue(contact, due, key, max(due_at, now)))
    return chosen


def _queue(contact: ContactState, due: Due, key: str, scheduled_at: datetime) -> QueueDraft:
    return QueueDraft(
        contact_id=contact.contact_id,
        key=key,
        reason=due.reason,
        scheduled_at=scheduled_at,
        why=due.why,
        anchor_at=due.anchor_at,
        thread=_thread_for(contact, due.reason),
    )


def plan(
    contacts: Iterable[ContactState],
    drafts: Iterable[DraftState],
    rules: CadenceRules,
    *,
    now: datetime,
    seed: int = 0,
    queued_today: int = 0,
    queued_this_week: int = 0,
) -> list[Action]:
    """Decide what to do now: supersede stale drafts, queue due follow-ups (capped, longest-overdue first).

    Supersede actions come first, then queue actions in priority order. The result depends only on the
    arguments (same input, same plan). See the module docstring for the rules.
    """
    index = _index(drafts)
    supersede: list[Action] = []
    candidates: list[_Candidate] = []
    seen: set[int] = set()
    for contact in contacts:
        if contact.contact_id in seen:  # a contact listed twice is planned once
            continue
        seen.add(contact.contact_id)
        live = index.live.get(contact.contact_id)
        if live and _supersede_live(contact, live, now, supersede):
            continue
        due = due_now(contact, rules, now=now)
        if due is not None:
            rank = 0 if due.reason in _EVENT_REASONS else 1
            candidates.append((rank, due.overdue_from, contact.contact_id, contact, due))
    budget = min(rules.max_new_per_day - queued_today, rules.max_new_per_week - queued_this_week)
    return supersede + _chosen(candidates, budget, index, rules, now=now, seed=seed)


def _supersede_live(contact: ContactState, live: list[DraftState], now: datetime, out: list[Action]) -> int:
    """Append supersede actions for ``live`` drafts that must go; return how many stay live."""
    remaining = 0
    for draft in live:
        why = _supersede_why(contact, draft, now) if draft.state in SUPERSEDABLE else None
        if why is None:
            remaining += 1
        else:
            out.append(SupersedeDraft(draft.id, why))
    return remaining
