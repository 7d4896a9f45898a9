"""Meetings from calendar data (iTIP, RFC 5546): one state per event, whatever order the messages came in.

:func:`parse_calendar` (from :mod:`followupd.core.ical`) turns the text of a ``text/calendar`` part into
:class:`InviteEvent` values, :func:`apply_invite` folds one event into the :class:`MeetingState` kept per
``(UID, RECURRENCE-ID)``, and :func:`occurrences` expands a recurring meeting inside a window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dateutil.rrule import rrulestr

from followupd.core.ical import (
    MAX_CALENDAR_CHARS,
    Attendee,
    InviteEvent,
    MeetingStatus,
    Method,
    parse_calendar,
)
from followupd.core.types import Address

__all__ = [
    "MAX_CALENDAR_CHARS",
    "MAX_EXAMINED",
    "MAX_OCCURRENCES",
    "Attendee",
    "InviteEvent",
    "MeetingState",
    "MeetingStatus",
    "Method",
    "Reply",
    "apply_invite",
    "latest_states",
    "occurrences",
    "parse_calendar",
]

MAX_OCCURRENCES = 500  # most spans occurrences() returns for one meeting
MAX_EXAMINED = 5_000  # most recurrence steps taken, whatever the rule says (hostile or "forever" RRULEs)

_EPOCH = datetime.min.replace(tzinfo=UTC)
_FORWARD_STEP = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1),
}
# Scheduling messages outrank a published copy, which outranks what can be learnt from an answer.
_RANK: dict[str, int] = {
    Method.REQUEST: 3,
    Method.ADD: 3,
    Method.CANCEL: 3,
    Method.PUBLISH: 2,
    Method.REPLY: 1,
}


@dataclass(frozen=True, slots=True)
class Reply:
    """The latest answer one attendee gave, with the SEQUENCE it answered."""

    address: Address
    partstat: str
    sequence: int
    dtstamp: datetime | None


@dataclass(frozen=True, slots=True)
class MeetingState:
    """What is known of one meeting after folding in every message about it, in any order.

    ``event`` is the authoritative version: the winning REQUEST/CANCEL if any was seen, else the latest
    PUBLISH, else a REPLY (an organizer who invited from a calendar app only ever sees the answers).
    ``replies`` holds the latest answer per attendee, sorted by email.
    """

    event: InviteEvent
    replies: tuple[Reply, ...] = ()

    @property
    def key(self) -> tuple[str, datetime | None]:
        """``(uid, recurrence_id)``."""
        return self.event.key

    @property
    def start_at(self) -> datetime:
        """Start of the authoritative version, aware UTC."""
        return self.event.start_at

    @property
    def end_at(self) -> datetime:
        """End of the authoritative version, aware UTC."""
        return self.event.end_at

    @property
    def status(self) -> MeetingStatus:
        """Cancelled when the winning message was a CANCEL or said STATUS:CANCELLED."""
        return MeetingStatus.CANCELLED if self.event.method == Method.CANCEL else self.event.status

    @property
    def attendees(self) -> tuple[Attendee, ...]:
        """The invited people, each with the newest answer that applies to the current SEQUENCE."""
        answers = {r.address.email: r for r in self.replies if r.sequence >= self._reply_floor()}
        merged = [
            replace(a, partstat=answers[a.address.email].partstat) if a.address.email in answers else a
            for a in self.event.attendees
        ]
        invited = {a.address.email for a in self.event.attendees}
        merged.extend(
            Attendee(r.address, r.partstat) for r in answers.values() if r.address.email not in invited
        )
        return tuple(merged)

    def _reply_floor(self) -> int:
        # An answer to an older version does not hold once the organizer has changed the meeting.
        return self.event.sequence if self.event.method in {Method.REQUEST, Method.ADD} else 0


def apply_invite(state: MeetingState | None, event: InviteEvent) -> MeetingState:
    """Fold one event into the state of its meeting; the result does not depend on arrival order.

    REQUEST/ADD create or update: higher SEQUENCE wins, equal SEQUENCE goes to the later DTSTAMP. CANCEL
    cancels when its SEQUENCE is at least the current one (so a CANCEL 0 after a REQUEST 1 changes nothing).
    REPLY records the attendee's answer and never moves times. PUBLISH is informational: it creates the
    meeting (status from its STATUS, usually confirmed) but any REQUEST or CANCEL outranks it. COUNTER,
    DECLINECOUNTER and REFRESH change nothing once the meeting exists.

    Raises ValueError when ``state`` belongs to another ``(uid, recurrence_id)``: that is a caller bug.
    """
    if state is None:
        return MeetingState(event, _merge_replies((), event))
    if state.key != event.key:
        raise ValueError(f"event {event.key!r} does not belong to meeting {state.key!r}")
    winner = max(state.event, event, key=_precedence)
    return MeetingState(winner, _merge_replies(state.replies, event))


def occurrences(
    state: MeetingState,
    *,
    start: datetime,
    horizon: timedelta,
    overrides: Iterable[MeetingState] = (),
    limit: int = MAX_OCCURRENCES,
) -> list[tuple[datetime, datetime]]:
    """Return the (start, end) spans, aware UTC, of the meeting starting in ``[start, start + horizon)``.

    A single meeting gives at most one span; a recurring one is expanded in its own zone (so a 10:00 Berlin
    meeting stays at 10:00 across DST), minus EXDATEs, plus RDATEs, at most ``limit`` spans and never more
    than :data:`MAX_EXAMINED` steps, so "weekly forever" rules are safe. ``overrides`` are the states of
    single changed occurrences (same UID, with RECURRENCE-ID): they move or cancel the matching instance.
    A cancelled meeting has no occurrences.
    """
    if state.status == MeetingStatus.CANCELLED:
        return []
    end = start + horizon
    event = state.event
    moved = {
        o.event.recurrence_id: o for o in overrides if o.event.uid == event.uid and o.event.recurrence_id
    }
    duration = event.end_at - event.start_at
    starts = _instants(event, start, end) if event.rrule or event.rdates else [event.start_at]
    spans = [(s, s + duration) for s in starts if start <= s < end and s not in moved]
    for override in moved.values():
        if override.status != MeetingStatus.CANCELLED and start <= override.event.start_at < end:
            spans.append((override.event.start_at, override.event.end_at))
    return sorted(set(spans))[:limit]


def latest_states(events: Sequence[InviteEvent]) -> dict[tuple[str, datetime | None], MeetingState]:
    """Fold a batch of events into one state per ``(uid, recurrence_id)``, e.g. all events of one scan."""
    states: dict[tuple[str, datetime | None], MeetingState] = {}
    for event in events:
        states[event.key] = apply_invite(states.get(event.key), event)
    return states


def _precedence(event: InviteEvent) -> tuple[Any, ...]:
    """A total order on versions of one meeting; the maximum is the authoritative one."""
    cancel = event.method == Method.CANCEL
    # The trailing fields only break exact ties, so that every arrival order picks the same winner.
    return (
        _RANK.get(event.method, 0),
        event.sequence,
        cancel,
        event.dtstamp or _EPOCH,
        event.start_at,
        event.end_at,
        event.summary,
        event.status,
        event.rrule or "",
        tuple((a.address.email, a.partstat) for a in event.attendees),
    )


def _merge_replies(replies: tuple[Reply, ...], event: InviteEvent) -> tuple[Reply, ...]:
    if event.method != Method.REPLY:
        return replies
    latest = {r.address.email: r for r in replies}
    for attendee in event.attendees:
        candidate = Reply(attendee.address, attendee.partstat, event.sequence, event.dtstamp)
        current = latest.get(attendee.address.email)
        if current is None or _reply_order(candidate) > _reply_order(current):
            latest[attendee.address.email] = candidate
    return tuple(latest[email] for email in sorted(latest))


def _reply_order(reply: Reply) -> tuple[int, datetime, str, str]:
    return reply.sequence, reply.dtstamp or _EPOCH, reply.partstat, reply.address.name


def _instants(event: InviteEvent, start: datetime, end: datetime) -> list[datetime]:
    """Occurrence starts (UTC) of a recurring event from ``start`` up to ``end``, bounded."""
    found = {d for d in event.rdates if start <= d < end}
    if not event.rrule and start <= event.start_at < end:
        found.add(event.start_at)  # with RDATE alone, DTSTART is still the first instance
    if event.rrule:
        excluded = set(event.exdates)
        for instant in _rule_instants(event, start, end):
            if instant not in excluded:
                found.add(instant)
    return sorted(found)


def _rule_instants(event: InviteEvent, start: datetime, end: datetime) -> list[datetime]:
    local_start = _fast_forward(event, event.start_at.astimezone(event.zone), start)
    try:
        rule = rrulestr(event.rrule or "", dtstart=local_start)
    except (ValueError, TypeError, OverflowError):
        return [event.start_at]
    found: list[datetime] = []
    steps = 0
    iterator = iter(rule)
    while steps < MAX_EXAMINED and len(found) < MAX_OCCURRENCES:
        steps += 1
        try:
            instant = next(iterator).astimezone(UTC)
        except (StopIteration, ValueError, OverflowError):
            break
        if instant >= end:
            break
        if instant >= start:
            found.append(instant)
    return found


def _fast_forward(event: InviteEvent, local_start: datetime, start: datetime) -> datetime:
    """Move DTSTART forward by whole periods, so a weekly meeting from 2010 is not stepped through since 2010.

    Only for rules without COUNT (moving would change which instances are counted) and with fixed-length
    periods (months and years differ in length); wall-clock arithmetic keeps the local time of day.
    """
    parts = dict(p.split("=", 1) for p in (event.rrule or "").upper().split(";") if "=" in p)
    step = _FORWARD_STEP.get(parts.get("FREQ", ""))
    interval = int(parts["INTERVAL"]) if parts.get("INTERVAL", "").isdigit() else 1
    if step is None or "COUNT" in parts or interval < 1 or local_start >= start:
        return local_start
    period = step * interval
    periods = (start - local_start) // period - 1
    return local_start + period * periods if periods > 0 else local_start
