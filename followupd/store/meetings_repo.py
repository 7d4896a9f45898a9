"""Meetings in the database: invites folded by UID, plain-text arrangements per thread, and who was met.

Every function takes the caller's session; the meetings pass runs them in one write transaction per folder.

A meeting *counts* (its people were met, and its end touches their contacts) when it is not cancelled, the
user is its organizer or an attendee and did not decline, and it has at most :data:`MAX_PEOPLE` other people
(an all-hands is not a conversation). A plain-text meeting counts only once confirmed: a proposal nobody
answered is no meeting. ``Meeting.last_end_at`` holds the end of the latest counting occurrence that has
ended; :mod:`followupd.store.meeting_people` turns those into the contacts' ``last_meeting_at``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select
from sqlalchemy.orm import Session

from followupd.core.meetings import InviteEvent, MeetingState, MeetingStatus, apply_invite, occurrences
from followupd.store.meeting_json import dump_state, load_state
from followupd.store.meeting_people import aware
from followupd.store.models import Meeting, MeetingAttendee

MAX_PEOPLE = 20  # more people than this (besides the user) and a meeting neither admits nor touches anyone
TOUCH_WINDOW = timedelta(days=90)  # a recurring meeting's past occurrences are looked for 90 days at a time
LOOK_BACK = timedelta(days=5 * 365)  # ... going back at most this far
HORIZON = timedelta(days=400)  # how far ahead the next occurrence of a recurring meeting is looked for
_CHUNK = 900


@dataclass
class Change:
    """What writes changed: every address of the meetings' people before and after (their contacts' touch is
    recomputed), and the people met, with the earliest date they were seen."""

    emails: set[str] = field(default_factory=set)
    met: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    meetings: int = 0

    def add(self, other: Change) -> None:
        """Merge ``other`` into this change."""
        self.emails |= other.emails
        for email, (name, seen_at) in other.met.items():
            current = self.met.get(email)
            self.met[email] = (
                name or (current[0] if current else ""),
                min(seen_at, current[1]) if current else seen_at,
            )
        self.meetings += other.meetings


# --- invites


@dataclass(frozen=True, slots=True)
class Seen:
    """One invite event as found in a message: the thread it came in and when it was sent."""

    event: InviteEvent
    thread_key: str | None
    seen_at: datetime


def record_invites(
    session: Session, account_id: int, seen: Sequence[Seen], *, own: frozenset[str], now: datetime
) -> Change:
    """Fold invite events into their meetings (created on first sight), REQUEST/CANCEL/REPLY per iTIP.

    A batch at a time: the meetings involved are read in one query, written in one flush, and their people
    replaced in two statements, whatever the number of events.
    """
    keys = {_key(item.event) for item in seen}
    rows = _rows_of(session, account_id, {uid for uid, _ in keys})
    before = attendees_of(session, [row.id for row in rows.values()])
    states = {key: load_state(row.state) for key, row in rows.items()}
    first_seen: dict[tuple[str, str], Seen] = {}
    for item in seen:
        key = _key(item.event)
        first_seen.setdefault(key, item)
        try:
            states[key] = apply_invite(states.get(key), item.event)
        except ValueError:  # a stored state of another key (UIDs cut to the column's length): start afresh
            states[key] = apply_invite(None, item.event)
    for key in keys:
        row = rows.get(key)
        if row is None:
            row = rows[key] = Meeting(
                account_id=account_id, uid=key[0], recurrence_key=key[1], source="invite"
            )
            row.thread_key = first_seen[key].thread_key
            session.add(row)
        _fill(row, _state(states[key]))
    session.flush()
    change = Change()
    people: dict[int, dict[str, tuple[str, str]]] = {}
    for key, row in rows.items():
        state = states.get(key)
        if state is None:
            continue
        _place(row, state, _siblings(states, key), own, now)
        people[row.id] = _invite_people(state)
        change.emails |= before.get(row.id, set()) | set(people[row.id])
        if key in keys:
            change.meetings += 1
            if row.counts:
                seen_at = first_seen[key].seen_at
                change.met.update(
                    (e, (n, seen_at))
                    for e, (n, p) in people[row.id].items()
                    if p != "DECLINED" and e not in own
                )
    replace_attendees(session, people)
    return change


def _key(event: InviteEvent) -> tuple[str, str]:
    return event.uid[:998], event.recurrence_id.astimezone(UTC).isoformat() if event.recurrence_id else ""


def _state(state: MeetingState | None) -> MeetingState:
    assert state is not None, "every key of the batch was folded"
    return state


def _rows_of(session: Session, account_id: int, uids: Collection[str]) -> dict[tuple[str, str], Meeting]:
    """Every stored meeting with one of these UIDs (series and their changed occurrences)."""
    found: dict[tuple[str, str], Meeting] = {}
    ordered = list(uids)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        for row in session.scalars(
            select(Meeting).where(Meeting.account_id == account_id, Meeting.uid.in_(chunk))
        ):
            found[(row.uid, row.recurrence_key)] = row
    return found


def _siblings(states: dict[tuple[str, str], MeetingState | None], key: tuple[str, str]) -> list[MeetingState]:
    """The changed occurrences of a series (empty for an occurrence itself)."""
    if key[1]:
        return []
    return [state for (uid, rkey), state in states.items() if uid == key[0] and rkey and state is not None]


def _fill(row: Meeting, state: MeetingState) -> None:
    ev = state.event
    replies = f", {len(state.replies)} replies" if state.replies else ""
    row.subject, row.all_day, row.status, row.confidence = ev.summary, ev.all_day, state.status.value, 1.0
    row.reason = f"invite: {ev.method} sequence {ev.sequence}{replies}"
    row.sequence, row.stamp_at, row.rrule = min(ev.sequence, 2**31 - 1), ev.dtstamp, ev.rrule
    row.organizer = ev.organizer.email if ev.organizer else None
    row.state = dump_state(state)
    row.start_at, row.end_at = state.start_at, state.end_at  # moved to the shown occurrence by _place


def _place(
    row: Meeting, state: MeetingState, overrides: list[MeetingState], own: frozenset[str], now: datetime
) -> None:
    """Set the row's shown span, whether it counts, and the end of its latest ended occurrence."""
    recurring = bool(state.event.rrule or state.event.rdates)
    row.counts = _counts(state, own)
    if not recurring:
        row.start_at, row.end_at = state.start_at, state.end_at
        row.last_end_at = state.end_at if row.counts and state.end_at <= now else None
        return
    last = _last_occurrence(state, overrides, now)
    duration = state.end_at - state.start_at
    ahead = occurrences(state, start=now - duration, horizon=HORIZON + duration, overrides=overrides)
    upcoming = next((span for span in ahead if span[1] > now), None)
    row.start_at, row.end_at = upcoming or last or (state.start_at, state.end_at)
    row.last_end_at = last[1] if row.counts and last is not None else None


def _last_occurrence(
    state: MeetingState, overrides: list[MeetingState], now: datetime
) -> tuple[datetime, datetime] | None:
    """The latest occurrence that has ended, looked for window by window back to :data:`LOOK_BACK`."""
    first = min((state.start_at, *state.event.rdates))
    window = now
    while window > max(now - LOOK_BACK, first):
        spans = occurrences(state, start=window - TOUCH_WINDOW, horizon=TOUCH_WINDOW, overrides=overrides)
        ended = [span for span in spans if span[1] <= now]
        if ended:
            return ended[-1]
        window -= TOUCH_WINDOW
    return None


def _invite_people(state: MeetingState) -> dict[str, tuple[str, str]]:
    """email -> (name, PARTSTAT) of the attendees with their latest answers, and the organizer (ACCEPTED)."""
    people = {a.address.email: (a.address.name, a.partstat) for a in state.attendees}
    organizer = state.event.organizer
    if organizer is not None:
        name, _ = people.get(organizer.email, (organizer.name, ""))
        people[organizer.email] = (name or organizer.name, "ACCEPTED")
    return people


def _counts(state: MeetingState, own: frozenset[str]) -> bool:
    if state.status == MeetingStatus.CANCELLED:
        return False
    people = _invite_people(state)
    mine = [p for e, (_, p) in people.items() if e in own]
    others = [e for e, (_, p) in people.items() if e not in own and p != "DECLINED"]
    return bool(mine) and "DECLINED" not in mine and 0 < len(others) <= MAX_PEOPLE


def _overrides(session: Session, account_id: int, uid: str) -> list[MeetingState]:
    texts = session.scalars(
        select(Meeting.state).where(
            Meeting.account_id == account_id, Meeting.uid == uid, Meeting.recurrence_key != ""
        )
    )
    return [state for text in texts if (state := load_state(text)) is not None]


# --- people: attendees, met, contacts' touch


def attendee_emails(session: Session, meeting_id: int) -> set[str]:
    """The addresses of one meeting's people."""
    return set(session.scalars(select(MeetingAttendee.email).where(MeetingAttendee.meeting_id == meeting_id)))


def replace_attendees(session: Session, people: dict[int, dict[str, tuple[str, str]]]) -> None:
    """Replace the people of these meetings: meeting id -> email -> (name, PARTSTAT)."""
    ids = list(people)
    for start in range(0, len(ids), _CHUNK):
        session.execute(
            delete(MeetingAttendee).where(MeetingAttendee.meeting_id.in_(ids[start : start + _CHUNK]))
        )
    rows = [
        {"meeting_id": meeting_id, "email": e[:320], "name": n[:300], "partstat": p[:20]}
        for meeting_id, found in people.items()
        for e, (n, p) in found.items()
    ]
    if rows:
        session.execute(insert(MeetingAttendee), rows)


def attendees_of(session: Session, meeting_ids: list[int]) -> dict[int, set[str]]:
    """meeting id -> the addresses of its people."""
    found: dict[int, set[str]] = {}
    for start in range(0, len(meeting_ids), _CHUNK):
        chunk = meeting_ids[start : start + _CHUNK]
        query = select(MeetingAttendee.meeting_id, MeetingAttendee.email).where(
            MeetingAttendee.meeting_id.in_(chunk)
        )
        for meeting_id, email in session.execute(query):
            found.setdefault(meeting_id, set()).add(email)
    return found


# --- time passing


def ended(account_id: int, now: datetime) -> ColumnElement[bool]:
    """Meetings that count and whose shown occurrence has ended since they were last looked at."""
    return and_(
        Meeting.account_id == account_id,
        Meeting.counts.is_(True),
        Meeting.end_at <= now,
        or_(Meeting.last_end_at.is_(None), Meeting.last_end_at < Meeting.end_at),
    )


def refresh_ended(session: Session, account_id: int, *, own: frozenset[str], now: datetime) -> set[str]:
    """Set last_end_at of the meetings that ended since last looked at; a recurring one moves on to its next
    occurrence. Returns the addresses whose contacts' touch must be recomputed."""
    emails: set[str] = set()
    for row in session.scalars(select(Meeting).where(ended(account_id, now))).all():
        last_end = aware(row.last_end_at)
        state = load_state(row.state) if row.source == "invite" else None
        if state is not None:
            overrides = _overrides(session, account_id, row.uid) if state.event.rrule else []
            _place(row, state, overrides, own, now)
        else:
            row.last_end_at = row.end_at
        if aware(row.last_end_at) != last_end:
            emails |= attendee_emails(session, row.id)
    session.flush()
    return emails
