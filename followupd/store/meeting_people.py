"""The people of meetings: who was met (admission evidence), and each contact's last meeting and last touch.

A contact's ``last_meeting_at`` is the latest ``Meeting.last_end_at`` of the meetings its addresses attended
without declining; ``last_touch_at`` is the latest of its last inbound mail, last outbound mail and last
meeting. Functions take the caller's session.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from followupd.core.classify import AdmissionPolicy
from followupd.store.contacts_refresh import update_contacts
from followupd.store.models import AddressRow, Contact, Meeting, MeetingAttendee

_CHUNK = 900


def mark_met(
    session: Session,
    account_id: int,
    met: dict[str, tuple[str, datetime]],
    *,
    own: frozenset[str],
    policy: AdmissionPolicy,
) -> int:
    """Mark the people met (address rows created when missing) and re-run admission.

    Returns how many contacts that created."""
    emails = [e for e in met if e not in own]
    if not emails:
        return 0
    existing: set[str] = set()
    for start in range(0, len(emails), _CHUNK):
        chunk = emails[start : start + _CHUNK]
        existing.update(
            session.scalars(
                select(AddressRow.email).where(
                    AddressRow.account_id == account_id, AddressRow.email.in_(chunk)
                )
            )
        )
        session.execute(
            update(AddressRow)
            .where(AddressRow.account_id == account_id, AddressRow.email.in_(chunk))
            .values(met=True)
        )
    new = [
        {
            "account_id": account_id,
            "email": e,
            "name": met[e][0][:300],
            "first_seen_at": met[e][1],
            "inbound_count": 0,
            "outbound_count": 0,
            "bulk_count": 0,
            "is_list": False,
            "met": True,
            "excluded_reason": "",
        }
        for e in emails
        if e not in existing
    ]
    if new:
        session.execute(insert(AddressRow), new)
    return update_contacts(session, account_id, emails, own=own, policy=policy)


def touch_contacts(session: Session, account_id: int, emails: Collection[str]) -> None:
    """Recompute last_meeting_at and last_touch_at of the contacts these addresses belong to."""
    ids: set[int] = set()
    ordered = list(emails)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        ids.update(
            c
            for c in session.scalars(
                select(AddressRow.contact_id).where(
                    AddressRow.account_id == account_id, AddressRow.email.in_(chunk)
                )
            )
            if c is not None
        )
    _recompute(session, account_id, ids)


def touch_all(session: Session, account_id: int) -> None:
    """Recompute every contact that has, or should have, a last meeting (admitted after the meeting, say)."""
    ended = _ended_by_email(session, account_id)
    linked: set[int] = set()
    emails = list(ended)
    for start in range(0, len(emails), _CHUNK):
        query = select(AddressRow.contact_id).where(
            AddressRow.account_id == account_id,
            AddressRow.email.in_(emails[start : start + _CHUNK]),
            AddressRow.contact_id.is_not(None),
        )
        linked.update(c for c in session.scalars(query) if c is not None)
    having = select(Contact.id).where(Contact.account_id == account_id, Contact.last_meeting_at.is_not(None))
    _recompute(session, account_id, linked | set(session.scalars(having)), ended)


def _ended_by_email(session: Session, account_id: int) -> dict[str, datetime]:
    """Address -> the latest end of a counting meeting it attended without declining."""
    query = (
        select(MeetingAttendee.email, func.max(Meeting.last_end_at))
        .join(Meeting, Meeting.id == MeetingAttendee.meeting_id)
        .where(
            Meeting.account_id == account_id,
            Meeting.last_end_at.is_not(None),
            MeetingAttendee.partstat != "DECLINED",
        )
        .group_by(MeetingAttendee.email)
    )
    return {email: utc for email, at in session.execute(query) if (utc := aware(at)) is not None}


def _recompute(
    session: Session, account_id: int, contact_ids: Collection[int], ended: dict[str, datetime] | None = None
) -> None:
    ended = _ended_by_email(session, account_id) if ended is None else ended
    ids = list(contact_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        latest: dict[int, datetime] = {}
        query = select(AddressRow.contact_id, AddressRow.email).where(AddressRow.contact_id.in_(chunk))
        for contact_id, email in session.execute(query):
            at = ended.get(email)
            if (
                contact_id is not None
                and at is not None
                and (contact_id not in latest or at > latest[contact_id])
            ):
                latest[contact_id] = at
        rows = session.execute(
            select(
                Contact.id,
                Contact.last_inbound_at,
                Contact.last_outbound_at,
                Contact.last_meeting_at,
                Contact.last_touch_at,
            ).where(Contact.id.in_(chunk))
        ).all()
        changes = []
        for cid, inbound, outbound, meeting, touch in rows:
            new_meeting = latest.get(cid)
            new_touch = max(
                (t for t in (aware(inbound), aware(outbound), new_meeting) if t is not None), default=None
            )
            if new_meeting != aware(meeting) or new_touch != aware(touch):
                changes.append({"id": cid, "last_meeting_at": new_meeting, "last_touch_at": new_touch})
        if changes:
            session.execute(update(Contact), changes)


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
