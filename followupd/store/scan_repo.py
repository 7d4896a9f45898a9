"""Writing what a scan learned: message rows, address and thread aggregates, contacts and the folder cursor.

Every function takes the caller's session; the engine decides the transaction (one per batch, together with
the cursor it covers). Bulk rows go through Core ``executemany``, never one ORM object per row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from followupd.core.classify import AddressEvidence, AdmissionPolicy, admit
from followupd.core.digest import AddressDelta, Digest, ThreadDelta
from followupd.store.models import Account, AddressRow, Contact, Folder, Message, Thread

_CHUNK = 900  # stays under every SQLite build's bound-parameter limit
_NEVER_A_PERSON = frozenset({"own-address", "list-address", "role-address"})
MESSAGES = cast(Table, Message.__table__)
ADDRESSES = cast(Table, AddressRow.__table__)
THREADS = cast(Table, Thread.__table__)


def ensure_account(session: Session, name: str, email: str) -> int:
    """The id of the account row called ``name``, created if missing."""
    account_id = session.scalar(select(Account.id).where(Account.name == name))
    if account_id is None:
        account = Account(name=name, email=email)
        session.add(account)
        session.flush()
        account_id = account.id
    return account_id


def ensure_folder(session: Session, account_id: int, name: str, role: str) -> Folder:
    """The folder row (with its cursor), created if missing."""
    folder = session.scalar(select(Folder).where(Folder.account_id == account_id, Folder.name == name))
    if folder is None:
        folder = Folder(account_id=account_id, name=name, role=role, last_uid=0)
        session.add(folder)
        session.flush()
    return folder


def existing_message_ids(session: Session, account_id: int, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are already stored for the account."""
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = session.execute(
            select(Message.message_id).where(Message.account_id == account_id, Message.message_id.in_(chunk))
        )
        found.update(row[0] for row in rows)
    return found


def rebind(session: Session, account_id: int, folder_id: int, uids: dict[str, int]) -> None:
    """Point already-stored messages at their new location (after a UIDVALIDITY change or a move)."""
    if not uids:
        return
    table = MESSAGES
    stmt = (
        update(table)
        .where(table.c.account_id == account_id, table.c.message_id == bindparam("mid"))
        .values(folder_id=folder_id, uid=bindparam("new_uid"))
    )
    session.execute(stmt, [{"mid": mid, "new_uid": uid} for mid, uid in uids.items()])


def write_digest(session: Session, account_id: int, folder_id: int, dig: Digest) -> None:
    """Insert the digest's new messages and fold its aggregates into addresses and threads."""
    if dig.messages:
        rows = [{**asdict(m), "account_id": account_id, "folder_id": folder_id} for m in dig.messages]
        session.execute(MESSAGES.insert(), rows)
    if dig.addresses:
        _upsert_addresses(session, account_id, dig.addresses.values())
    if dig.threads:
        _upsert_threads(session, account_id, dig.threads.values())


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _later(current: Any, new: Any) -> Any:
    return case((current.is_(None), new), (new.is_(None), current), (new > current, new), else_=current)


def _earlier(current: Any, new: Any) -> Any:
    return case((current.is_(None), new), (new.is_(None), current), (new < current, new), else_=current)


def _upsert_addresses(session: Session, account_id: int, deltas: Iterable[AddressDelta]) -> None:
    table = ADDRESSES
    stmt = _insert(session, table)
    ex, cur = stmt.excluded, table.c
    stmt = stmt.on_conflict_do_update(
        index_elements=[cur.account_id, cur.email],
        set_={
            "name": case((ex.name != "", ex.name), else_=cur.name),
            "first_seen_at": _earlier(cur.first_seen_at, ex.first_seen_at),
            "last_inbound_at": _later(cur.last_inbound_at, ex.last_inbound_at),
            "last_outbound_at": _later(cur.last_outbound_at, ex.last_outbound_at),
            "inbound_count": cur.inbound_count + ex.inbound_count,
            "outbound_count": cur.outbound_count + ex.outbound_count,
            "bulk_count": cur.bulk_count + ex.bulk_count,
            "is_list": cur.is_list | ex.is_list,
            "tz_offset": func.coalesce(ex.tz_offset, cur.tz_offset),
        },
    )
    rows = []
    for d in deltas:
        row = asdict(d)
        row.pop("role_reason")
        rows.append({**row, "account_id": account_id, "met": False, "excluded_reason": d.role_reason})
    session.execute(stmt, rows)


def _upsert_threads(session: Session, account_id: int, deltas: Iterable[ThreadDelta]) -> None:
    table = THREADS
    stmt = _insert(session, table)
    ex, cur = stmt.excluded, table.c
    newer = ex.last_at >= cur.last_at
    stmt = stmt.on_conflict_do_update(
        index_elements=[cur.account_id, cur.thread_key],
        set_={
            "message_count": cur.message_count + ex.message_count,
            "subject": case((cur.subject == "", ex.subject), else_=cur.subject),
            "last_at": case((newer, ex.last_at), else_=cur.last_at),
            "last_message_id": case((newer, ex.last_message_id), else_=cur.last_message_id),
            "last_direction": case((newer, ex.last_direction), else_=cur.last_direction),
            "last_sender": case((newer, ex.last_sender), else_=cur.last_sender),
            "last_automated": case((newer, ex.last_automated), else_=cur.last_automated),
        },
    )
    rows = [
        {
            "account_id": account_id,
            "thread_key": t.key,
            "subject": t.subject,
            "message_count": t.count,
            "last_at": t.last_at,
            "last_message_id": t.last_message_id,
            "last_direction": t.last_direction,
            "last_sender": t.last_sender,
            "last_automated": t.last_automated,
        }
        for t in deltas
    ]
    session.execute(stmt, rows)


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
    """
    created = 0
    touched: set[int] = set()
    for start in range(0, len(emails), _CHUNK):
        chunk = list(emails)[start : start + _CHUNK]
        rows = session.scalars(
            select(AddressRow).where(AddressRow.account_id == account_id, AddressRow.email.in_(chunk))
        ).all()
        for row in rows:
            previous = row.contact_id
            created += _admit_row(session, row, own, policy)
            touched.update(c for c in (previous, row.contact_id) if c is not None)
    if touched:
        _drop_orphans(session, touched)
        refresh_contacts(session, account_id, touched)
    return created


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


def _admit_row(session: Session, row: AddressRow, own: frozenset[str], policy: AdmissionPolicy) -> int:
    evidence = AddressEvidence(
        user_wrote_to=row.outbound_count,
        wrote_directly=row.inbound_count,
        only_bulk=row.inbound_count == 0 and row.bulk_count > 0,
        is_list_address=row.is_list,
        is_role=bool(row.excluded_reason.startswith("role") or _is_role(row)),
        is_own=row.email in own,
        met=row.met,
    )
    admitted, reason = admit(evidence, policy)
    if not admitted:
        row.excluded_reason = reason
        if reason in _NEVER_A_PERSON:
            # Learned after admission (the user wrote to a list before its List-Post was seen): detach.
            row.contact_id = None
        return 0
    row.excluded_reason = ""
    if row.contact_id is not None:
        return 0
    contact = Contact(account_id=row.account_id, name=row.name, status="active", tags="", notes="")
    session.add(contact)
    session.flush()
    row.contact_id = contact.id
    return 1


def _is_role(row: AddressRow) -> bool:
    from followupd.core.addresses import is_role_address

    return is_role_address(row.email) is not None


def refresh_contacts(session: Session, account_id: int, contact_ids: Collection[int]) -> None:
    """Recompute each contact's first/last times, name and reply-owed flag from its addresses and threads."""
    ids = list(contact_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        contacts = session.scalars(select(Contact).where(Contact.id.in_(chunk))).all()
        addresses = session.scalars(select(AddressRow).where(AddressRow.contact_id.in_(chunk))).all()
        by_contact: dict[int, list[AddressRow]] = {}
        for address in addresses:
            by_contact.setdefault(address.contact_id or 0, []).append(address)
        owed = _last_unanswered(session, account_id, [a.email for a in addresses])
        for contact in contacts:
            _refresh_one(contact, by_contact.get(contact.id, []), owed)


def _refresh_one(contact: Contact, addresses: list[AddressRow], owed: dict[str, datetime]) -> None:
    admitted = [a for a in addresses if not a.excluded_reason] or addresses
    contact.first_seen_at = _min(a.first_seen_at for a in admitted)
    contact.last_inbound_at = _max(a.last_inbound_at for a in admitted)
    contact.last_outbound_at = _max(a.last_outbound_at for a in admitted)
    contact.last_touch_at = _max([contact.last_inbound_at, contact.last_outbound_at, contact.last_meeting_at])
    if not contact.name:
        contact.name = next((a.name for a in admitted if a.name), "")
    contact.tz_offset = next((a.tz_offset for a in admitted if a.tz_offset is not None), contact.tz_offset)
    last_owed = _max(owed.get(a.email) for a in admitted)
    contact.owes_reply = last_owed is not None and (
        contact.last_outbound_at is None or last_owed > contact.last_outbound_at
    )


def _last_unanswered(session: Session, account_id: int, emails: list[str]) -> dict[str, datetime]:
    """Per address, the newest person thread in which that address wrote last."""
    if not emails:
        return {}
    rows = session.execute(
        select(Thread.last_sender, func.max(Thread.last_at))
        .where(
            Thread.account_id == account_id,
            Thread.last_direction == "in",
            Thread.last_automated.is_(False),
            Thread.last_sender.in_(emails),
        )
        .group_by(Thread.last_sender)
    )
    result: dict[str, datetime] = {}
    for sender, last_at in rows:
        if last_at is not None:
            result[sender] = last_at if last_at.tzinfo else last_at.replace(tzinfo=_utc())
    return result


def _utc() -> Any:
    from datetime import UTC

    return UTC


def _max(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
