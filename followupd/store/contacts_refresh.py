"""Deciding which addresses are contacts, and keeping each contact's times and reply-owed flag current.

Called by the scan after every batch (for the addresses it touched), by the meetings pass (attendees become
"met") and by ``contacts merge``. A contact, once created, keeps the user's settings whatever later scans
find; an address refused as own, list or role is detached again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Row,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.orm import Session

from followupd.core.classify import AddressEvidence, AdmissionPolicy, admit
from followupd.store.bulk import executemany, update_by_id
from followupd.store.models import AddressRow, Contact, Message, Thread

_CHUNK = 900  # stays under every SQLite build's bound-parameter limit
_NEVER_A_PERSON = frozenset({"own-address", "list-address", "role-address"})
MESSAGES = cast(Table, Message.__table__)
ADDRESSES = cast(Table, AddressRow.__table__)
THREADS = cast(Table, Thread.__table__)
CONTACTS = cast(Table, Contact.__table__)


def update_contacts(
    session: Session,
    account_id: int,
    emails: Collection[str],
    *,
    own: frozenset[str],
    policy: AdmissionPolicy,
) -> int:
    """Re-decide admission for ``emails`` and refresh the contacts they belong to. Returns contacts created.

    A contact, once created, keeps the user's settings (ignored, tier, notes) whatever later scans find.
    Runs on Core rows, not ORM objects: it is called once per batch with every address the batch touched.
    """
    created = 0
    touched: set[int] = set()
    detached = False
    changes: list[tuple[Any, ...]] = []
    ordered = list(emails)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        rows = session.execute(
            select(*_ADMISSION_COLUMNS).where(
                ADDRESSES.c.account_id == account_id, ADDRESSES.c.email.in_(chunk)
            )
        ).all()
        for row in rows:
            previous = row.contact_id
            reason, contact_id = _admission(row, own, policy)
            if reason == "" and contact_id is None:
                contact_id = _new_contact(session, row.account_id, row.name)
                created += 1
            if reason != row.excluded_reason or contact_id != previous:
                changes.append((reason, contact_id, row.id))
            detached = detached or (previous is not None and contact_id is None)
            touched.update(c for c in (previous, contact_id) if c is not None)
    if changes:
        executemany(session, _update_admission, _ADMISSION_KEYS, changes)
    if detached:  # only a detached address can leave a contact without any (every other keeps its own)
        _drop_orphans(session, touched)
    if touched:
        refresh_contacts(session, account_id, touched)
    return created


# What admission reads (no timestamps: converting them back from SQLite text is the costly part of a row).
_ADMISSION_COLUMNS = tuple(
    ADDRESSES.c[name]
    for name in (
        "id",
        "account_id",
        "email",
        "name",
        "contact_id",
        "inbound_count",
        "outbound_count",
        "bulk_count",
        "is_list",
        "met",
        "excluded_reason",
    )
)


def _drop_orphans(session: Session, contact_ids: set[int]) -> None:
    """Delete contacts left without any address (their only address turned out to be a list's or own)."""
    ids = list(contact_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        kept = set(session.scalars(select(AddressRow.contact_id).where(AddressRow.contact_id.in_(chunk))))
        orphans = set(chunk) - kept
        if orphans:
            session.execute(delete(Contact).where(Contact.id.in_(list(orphans))))
            contact_ids -= orphans


def _admission(row: Row[Any], own: frozenset[str], policy: AdmissionPolicy) -> tuple[str, int | None]:
    """The address's new (excluded_reason, contact_id); ("", None) means "admitted, needs a contact"."""
    evidence = AddressEvidence(
        user_wrote_to=row.outbound_count,
        wrote_directly=row.inbound_count,
        only_bulk=row.inbound_count == 0 and row.bulk_count > 0,
        is_list_address=row.is_list,
        is_role=bool(row.excluded_reason.startswith("role") or _is_role(row.email)),
        is_own=row.email in own,
        met=row.met,
    )
    admitted, reason = admit(evidence, policy)
    if not admitted:
        # Learned after admission (the user wrote to a list before its List-Post was seen): detach.
        return reason, None if reason in _NEVER_A_PERSON else row.contact_id
    return "", row.contact_id


def _new_contact(session: Session, account_id: int, name: str) -> int:
    result = session.connection().execute(
        insert(CONTACTS).values(account_id=account_id, name=name, status="active", tags="", notes="")
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _is_role(email: str) -> bool:
    from followupd.core.addresses import is_role_address

    return is_role_address(email) is not None


def refresh_contacts(session: Session, account_id: int, contact_ids: Collection[int]) -> None:
    """Recompute each contact's first/last times, name and reply-owed flag from its addresses and threads."""
    ids = list(contact_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        contacts = session.execute(select(*_CONTACT_COLUMNS).where(CONTACTS.c.id.in_(chunk))).all()
        addresses = session.execute(
            select(*_CONTACT_ADDRESS_COLUMNS).where(ADDRESSES.c.contact_id.in_(chunk))
        ).all()
        by_contact: dict[int, list[Row[Any]]] = {}
        for address in addresses:
            by_contact.setdefault(address.contact_id or 0, []).append(address)
        admitted = {c.id: _admitted(by_contact.get(c.id, [])) for c in contacts}
        # The times first: the owed-reply query reads the refreshed last_outbound_at. Then the flag.
        changed = []
        for contact in contacts:
            values = _refreshed(contact, admitted[contact.id])
            if values != tuple(contact[1 : len(values) + 1]):
                changed.append((*values, contact.id))
        if changed:
            executemany(session, _update_contact_times, _CONTACT_TIME_KEYS, changed)
        owed = _last_unanswered(session, account_id, chunk)
        flags = []
        for contact in contacts:
            owes_reply = _owes_reply(admitted[contact.id], owed)
            if owes_reply != contact.owes_reply:
                flags.append((owes_reply, contact.id))
        if flags:
            executemany(session, _update_contact_owes, _OWES_KEYS, flags)


_REFRESHED = ("first_seen_at", "last_inbound_at", "last_outbound_at", "last_touch_at", "name", "tz_offset")
_CONTACT_TIME_KEYS = (*("b_" + name for name in _REFRESHED), "b_id")
_OWES_KEYS = ("b_owes_reply", "b_id")
# id, then the refreshed columns in _REFRESHED order (compared as a slice), then what the refresh reads.
_CONTACT_COLUMNS = tuple(CONTACTS.c[name] for name in ("id", *_REFRESHED, "owes_reply", "last_meeting_at"))
_CONTACT_ADDRESS_COLUMNS = tuple(
    ADDRESSES.c[name]
    for name in (
        "contact_id",
        "email",
        "name",
        "excluded_reason",
        "first_seen_at",
        "last_inbound_at",
        "last_outbound_at",
        "tz_offset",
    )
)


_ADMISSION_KEYS = ("b_excluded_reason", "b_contact_id", "b_id")


def _update_admission(session: Session) -> Any:
    return update_by_id(session, ADDRESSES, _ADMISSION_KEYS)


def _update_contact_times(session: Session) -> Any:
    return update_by_id(session, CONTACTS, _CONTACT_TIME_KEYS)


def _update_contact_owes(session: Session) -> Any:
    return update_by_id(session, CONTACTS, _OWES_KEYS)


def _admitted(addresses: list[Row[Any]]) -> list[Row[Any]]:
    """The addresses a contact's figures come from: its admitted ones, or all of them when none is."""
    return [a for a in addresses if not a.excluded_reason] or addresses


def _owes_reply(admitted: list[Row[Any]], owed: dict[str, datetime]) -> bool:
    last_outbound = _max(a.last_outbound_at for a in admitted)
    last_owed = _max(owed.get(a.email) for a in admitted)
    return last_owed is not None and (last_outbound is None or last_owed > last_outbound)


def _refreshed(contact: Row[Any], admitted: list[Row[Any]]) -> tuple[Any, ...]:
    """The contact's recomputed columns, in _REFRESHED order."""
    last_inbound = _max(a.last_inbound_at for a in admitted)
    last_outbound = _max(a.last_outbound_at for a in admitted)
    return (
        _min(a.first_seen_at for a in admitted),
        last_inbound,
        last_outbound,
        _max([last_inbound, last_outbound, contact.last_meeting_at]),
        contact.name or next((a.name for a in admitted if a.name), ""),
        next((a.tz_offset for a in admitted if a.tz_offset is not None), contact.tz_offset),
    )


def _last_unanswered(session: Session, account_id: int, contact_ids: list[int]) -> dict[str, datetime]:
    """Per address of the contacts, the newest person thread in which that address wrote last — looked for
    only among threads newer than the contact's (already refreshed) ``last_outbound_at``.

    Older threads cannot make a reply owed. A thread's last message is a stored message of that thread with
    ``sender = last_sender`` and ``date_at = last_at``, so walking the address's messages after
    ``last_outbound_at`` on ``ix_messages_sender`` finds every thread that matters. (Filtering the threads
    table by ``last_sender`` scanned all of it once per batch, which made a first scan quadratic.)
    """
    a, c, m, t = ADDRESSES.c, CONTACTS.c, MESSAGES.c, THREADS.c
    result: dict[str, datetime] = {}
    if session.get_bind().dialect.name == "postgresql":
        return _last_unanswered_joined(session, account_id, contact_ids)
    for written_to in (True, False):
        newer = [m.date_at > c.last_outbound_at, t.last_at > c.last_outbound_at] if written_to else []
        # A correlated subquery per address: the sender is fixed inside it, so the messages index is used.
        owed = (
            select(func.max(t.last_at))
            .select_from(MESSAGES)
            .join(THREADS, and_(t.account_id == m.account_id, t.thread_key == m.thread_key))
            .where(
                m.account_id == a.account_id,
                m.sender == a.email,
                t.last_sender == a.email,
                t.last_direction == "in",
                t.last_automated.is_(False),
                *newer,
            )
            .scalar_subquery()
        )
        query = (
            select(a.email, owed)
            .select_from(ADDRESSES)
            .join(CONTACTS, c.id == a.contact_id)
            .where(
                a.contact_id.in_(contact_ids),
                c.account_id == account_id,
                c.last_outbound_at.is_not(None) if written_to else c.last_outbound_at.is_(None),
            )
        )
        for email, last_at in session.execute(query):
            if last_at is not None:
                result[email] = last_at if last_at.tzinfo else last_at.replace(tzinfo=UTC)
    return result


def _last_unanswered_joined(session: Session, account_id: int, contact_ids: list[int]) -> dict[str, datetime]:
    """:func:`_last_unanswered` as one grouped join (PostgreSQL): the same rows, whatever the statistics.

    The correlated subquery is planned per address, and with statistics lagging behind a table a first scan
    is filling, PostgreSQL chose to read every thread for each address (up to 1 s a batch). Joined, the
    threads are read at most once per query, through ix_threads_last_sender when that is cheaper. An address
    with no matching thread has no group, as it had a NULL maximum before: both are left out.
    """
    a, c, m, t = ADDRESSES.c, CONTACTS.c, MESSAGES.c, THREADS.c
    newer = or_(
        c.last_outbound_at.is_(None),
        and_(m.date_at > c.last_outbound_at, t.last_at > c.last_outbound_at),
    )
    query = (
        select(a.email, func.max(t.last_at))
        .select_from(ADDRESSES)
        .join(CONTACTS, c.id == a.contact_id)
        .join(THREADS, and_(t.account_id == a.account_id, t.last_sender == a.email))
        .join(
            MESSAGES,
            and_(m.account_id == t.account_id, m.thread_key == t.thread_key, m.sender == a.email),
        )
        .where(
            a.contact_id.in_(contact_ids),
            c.account_id == account_id,
            t.last_direction == "in",
            t.last_automated.is_(False),
            newer,
        )
        .group_by(a.email)
    )
    result: dict[str, datetime] = {}
    for email, last_at in session.execute(query):
        if last_at is not None:
            result[email] = last_at if last_at.tzinfo else last_at.replace(tzinfo=UTC)
    return result


def _max(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
