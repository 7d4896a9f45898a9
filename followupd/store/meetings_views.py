"""Meetings as the CLI shows them: plain values, read in the caller's (read) session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from followupd.errors import UsageError
from followupd.store.models import Arrangement, Meeting, MeetingAttendee


@dataclass(frozen=True)
class AttendeeView:
    """One person of a meeting and their answer (PARTSTAT; ACCEPTED for an organizer)."""

    email: str
    name: str
    partstat: str


@dataclass(frozen=True)
class MeetingView:
    """A meeting: what, when (for a recurring one, its current or next occurrence), learned how, with whom."""

    id: int
    uid: str
    subject: str
    start_at: datetime
    end_at: datetime
    all_day: bool
    status: str
    source: str
    confidence: float
    reason: str
    organizer: str | None
    thread_key: str | None
    rrule: str | None
    sequence: int
    counts: bool
    last_end_at: datetime | None
    attendees: tuple[AttendeeView, ...]


@dataclass(frozen=True)
class EvidenceView:
    """What one message of the thread said, for a meeting arranged in words."""

    message_id: str
    sent_at: datetime
    from_user: bool
    kind: str
    start_at: datetime | None
    confidence: float
    reason: str


def list_meetings(session: Session, *, now: datetime, upcoming: bool = False) -> list[MeetingView]:
    """Every meeting by start time, or only those not ended yet (``upcoming``: cancelled ones left out)."""
    query = select(Meeting).order_by(Meeting.start_at, Meeting.id)
    if upcoming:
        query = query.where(Meeting.end_at > now, Meeting.status != "cancelled")
    rows = session.scalars(query).all()
    people = _attendees(session, [row.id for row in rows])
    return [_view(row, people.get(row.id, ())) for row in rows]


def get_meeting(session: Session, meeting_id: int) -> MeetingView:
    """One meeting; a UsageError naming the command to list them when there is no such id."""
    row = session.get(Meeting, meeting_id)
    if row is None:
        raise UsageError(f"no meeting {meeting_id}", hint="List them with `followupd meetings list`.")
    return _view(row, _attendees(session, [row.id]).get(row.id, ()))


def evidence(session: Session, meeting: MeetingView) -> list[EvidenceView]:
    """The arrangements of a text meeting's thread, oldest first ([] for an invite)."""
    if meeting.source != "text" or meeting.thread_key is None:
        return []
    rows = session.scalars(
        select(Arrangement)
        .join(Meeting, Meeting.account_id == Arrangement.account_id)
        .where(Meeting.id == meeting.id, Arrangement.thread_key == meeting.thread_key)
        .order_by(Arrangement.sent_at)
    )
    return [
        EvidenceView(
            a.message_id, _utc(a.sent_at), a.from_user, a.kind, _opt(a.start_at), a.confidence, a.reason
        )
        for a in rows
    ]


def state_json(session: Session, meeting_id: int) -> object:
    """The stored state (iTIP event and replies, or the arrangement summary), parsed, for ``show --json``."""
    text = session.scalar(select(Meeting.state).where(Meeting.id == meeting_id))
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _attendees(session: Session, ids: list[int]) -> dict[int, tuple[AttendeeView, ...]]:
    found: dict[int, list[AttendeeView]] = {}
    a = MeetingAttendee
    for start in range(0, len(ids), 900):
        rows = session.execute(
            select(a.meeting_id, a.email, a.name, a.partstat)
            .where(a.meeting_id.in_(ids[start : start + 900]))
            .order_by(a.meeting_id, a.email)
        )
        for meeting_id, email, name, partstat in rows:
            found.setdefault(meeting_id, []).append(AttendeeView(email, name, partstat))
    return {key: tuple(value) for key, value in found.items()}


def _view(row: Meeting, attendees: tuple[AttendeeView, ...]) -> MeetingView:
    return MeetingView(
        id=row.id,
        uid=row.uid,
        subject=row.subject,
        start_at=_utc(row.start_at),
        end_at=_utc(row.end_at),
        all_day=row.all_day,
        status=row.status,
        source=row.source,
        confidence=row.confidence,
        reason=row.reason,
        organizer=row.organizer,
        thread_key=row.thread_key,
        rrule=row.rrule,
        sequence=row.sequence,
        counts=row.counts,
        last_end_at=_opt(row.last_end_at),
        attendees=attendees,
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _opt(value: datetime | None) -> datetime | None:
    return _utc(value) if value is not None else None
