"""Meetings agreed in words: each message's arrangement, and the meeting each thread arrived at.

A thread's meeting has the uid :func:`text_uid` of its thread key. It is re-resolved from every stored
arrangement of the thread whenever one is added (:func:`followupd.core.arrangements.resolve_thread`): a later
confirmation raises its confidence, a "need to reschedule" makes it tentative again, with no time until a new
one is agreed. Its people are the thread's correspondents (the user left out); it counts (they were met) once
confirmed with a time. Functions take the caller's session and work on a batch at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from followupd.core import arrangements as text_core
from followupd.core.meetings import MeetingStatus
from followupd.store.meetings_repo import MAX_PEOPLE, Change, attendees_of, replace_attendees
from followupd.store.models import Arrangement, Meeting, Message, Thread

TEXT_DURATION = timedelta(hours=1)  # what a "coffee on Tuesday at 3pm" is assumed to last
_CHUNK = 900


@dataclass(frozen=True, slots=True)
class Said:
    """What one message said about a meeting."""

    message_id: str
    thread_key: str
    sent_at: datetime
    from_user: bool
    found: text_core.Arrangement


def text_uid(thread_key: str) -> str:
    """The stable uid of the meeting a thread arranged in words."""
    return "text-" + hashlib.sha1(thread_key.encode("utf-8", "replace"), usedforsecurity=False).hexdigest()


def save(session: Session, account_id: int, said: Sequence[Said]) -> None:
    """Store (or replace) the arrangements, one statement for the batch."""
    if not said:
        return
    table = cast(Table, Arrangement.__table__)
    dialect = session.get_bind().dialect.name
    stmt = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    names = (
        "thread_key",
        "sent_at",
        "from_user",
        "kind",
        "start_at",
        "confidence",
        "reason",
        "has_day",
        "has_time",
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "message_id"], set_={name: stmt.excluded[name] for name in names}
    )
    rows = [
        {
            "account_id": account_id,
            "message_id": s.message_id,
            "thread_key": s.thread_key,
            "sent_at": s.sent_at,
            "from_user": s.from_user,
            "kind": s.found.kind.value,
            "start_at": s.found.start_at,
            "confidence": s.found.confidence,
            "reason": s.found.reason[:2000],
            "has_day": s.found.has_day,
            "has_time": s.found.has_time,
        }
        for s in {s.message_id: s for s in said}.values()
    ]
    session.execute(stmt, rows)


def resolve(
    session: Session, account_id: int, thread_keys: Collection[str], *, own: frozenset[str], now: datetime
) -> Change:
    """Fold each thread's stored arrangements into its meeting (created once a day was named)."""
    keys = list(dict.fromkeys(thread_keys))
    found = _arrangements(session, account_id, keys)
    subjects = _subjects(session, account_id, keys)
    rows = {
        row.uid: row
        for start in range(0, len(keys), _CHUNK)
        for row in session.scalars(
            select(Meeting).where(
                Meeting.account_id == account_id,
                Meeting.uid.in_([text_uid(k) for k in keys[start : start + _CHUNK]]),
            )
        )
    }
    before = attendees_of(session, [row.id for row in rows.values()])
    people: dict[str, list[str]] = {}
    change = Change()
    for key in keys:
        items = found.get(key, [])
        result = text_core.resolve_thread([(s.sent_at, s.from_user, s.found) for s, _, _ in items])
        if result is None:
            continue
        uid = text_uid(key)
        row = rows.get(uid)
        if row is None:
            row = rows[uid] = Meeting(account_id=account_id, uid=uid, recurrence_key="", source="text")
            row.all_day, row.sequence = False, 0
            session.add(row)
        people[uid] = _participants(((sender, recipients) for _, sender, recipients in items), own)
        _fill(row, result, items, people[uid], subject=subjects.get(key, ""), now=now)
        if row.counts:
            seen = min(s.sent_at for s, _, _ in items)
            change.met.update((email, ("", seen)) for email in people[uid])
        change.meetings += 1
    session.flush()
    partstats: dict[int, dict[str, tuple[str, str]]] = {}
    for uid, emails in people.items():
        row = rows[uid]
        partstat = "ACCEPTED" if row.status == MeetingStatus.CONFIRMED.value else "NEEDS-ACTION"
        partstats[row.id] = {email: ("", partstat) for email in emails}
        change.emails |= before.get(row.id, set()) | set(emails)
    replace_attendees(session, partstats)
    return change


def _fill(
    row: Meeting,
    result: text_core.ThreadMeeting,
    items: list[tuple[Said, str, str]],
    people: list[str],
    *,
    subject: str,
    now: datetime,
) -> None:
    known = [s.found.start_at for s, _, _ in sorted(items, key=lambda i: i[0].sent_at) if s.found.start_at]
    start = result.start_at or (row.start_at if row.start_at is not None else known[-1])
    confirmed = result.status == MeetingStatus.CONFIRMED and result.start_at is not None
    row.thread_key, row.subject = items[0][0].thread_key, subject
    row.start_at = start
    row.end_at = start + TEXT_DURATION
    row.status, row.confidence = result.status.value, min(max(result.confidence, 0.0), 1.0)
    row.reason = result.reason + ("" if result.start_at is not None else "; no new time yet")
    row.stamp_at = result.decided_at
    row.state = json.dumps(
        {
            "v": 1,
            "kind": "text",
            "start_known": result.start_at is not None,
            "proposed_by_user": result.proposed_by_user,
            "decided_at": result.decided_at.isoformat(),
        }
    )
    row.counts = confirmed and 0 < len(people) <= MAX_PEOPLE
    row.last_end_at = row.end_at if row.counts and row.end_at <= now else None


def _arrangements(
    session: Session, account_id: int, keys: list[str]
) -> dict[str, list[tuple[Said, str, str]]]:
    """thread key -> (arrangement, its message's sender, recipients), for every stored one of the threads."""
    found: dict[str, list[tuple[Said, str, str]]] = {}
    for start in range(0, len(keys), _CHUNK):
        rows = session.execute(
            select(Arrangement, Message.sender, Message.recipients)
            .join(
                Message,
                (Message.account_id == Arrangement.account_id)
                & (Message.message_id == Arrangement.message_id),
            )
            .where(
                Arrangement.account_id == account_id, Arrangement.thread_key.in_(keys[start : start + _CHUNK])
            )
        )
        for a, sender, recipients in rows:
            item = text_core.Arrangement(
                text_core.Kind(a.kind), a.start_at, a.confidence, a.reason, a.has_day, a.has_time
            )
            said = Said(a.message_id, a.thread_key, a.sent_at, a.from_user, item)
            found.setdefault(a.thread_key, []).append((said, sender or "", recipients or ""))
    return found


def _subjects(session: Session, account_id: int, keys: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(keys), _CHUNK):
        query = select(Thread.thread_key, Thread.subject).where(
            Thread.account_id == account_id, Thread.thread_key.in_(keys[start : start + _CHUNK])
        )
        found.update((key, subject or "") for key, subject in session.execute(query))
    return found


def _participants(rows: Iterable[tuple[str, str]], own: frozenset[str]) -> list[str]:
    people: dict[str, None] = {}
    for sender, recipients in rows:
        for email in (sender, *recipients.split()):
            if email and email not in own:
                people.setdefault(email)
    return list(people)
