"""Reading and changing contacts for the CLI: the user's settings, muting, merging and importing.

Every function takes a session; the caller opens the transaction (``db.write()`` for changes). The user's
settings (status, tier, tags, notes, cadence) are never touched by scans.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from followupd.errors import NotFoundError, UsageError
from followupd.store.models import LIVE_STATES, Account, AddressRow, Contact, ContactStatus, Draft, DraftState

# Addresses a scan detaches from any contact again (contacts_refresh._NEVER_A_PERSON): never linked by hand.
NEVER_A_PERSON = {"own-address": "your own", "list-address": "a mailing list", "role-address": "a role"}


@dataclass(frozen=True)
class ContactView:
    """A contact as the CLI shows it (``--json`` field names are these, and stable)."""

    id: int
    email: str
    name: str
    addresses: tuple[str, ...]
    status: str
    tier: str | None
    tags: tuple[str, ...]
    notes: str
    first_seen_at: datetime | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None
    last_meeting_at: datetime | None
    last_touch_at: datetime | None
    owes_reply: bool
    muted_until: datetime | None = None
    cadence_days: float | None = None


@dataclass(frozen=True)
class ExcludedView:
    """An address that is not a contact, and why."""

    email: str
    name: str
    reason: str
    inbound_count: int
    bulk_count: int


@dataclass(frozen=True)
class ContactRecord:
    """One contact to import: None (or an empty tuple for tags) leaves that setting as it is."""

    line: int
    email: str
    name: str | None = None
    tier: str | None = None
    tags: tuple[str, ...] | None = None
    notes: str | None = None
    cadence_days: float | None = None


@dataclass(frozen=True)
class MergeResult:
    """What a merge did: the contact kept, the addresses moved, drafts repointed and superseded."""

    contact: ContactView
    moved: tuple[str, ...]
    drafts_moved: int
    drafts_superseded: tuple[int, ...]


def list_contacts(session: Session, *, include_ignored: bool = True) -> list[ContactView]:
    """Every contact, most recently touched first."""
    contacts = session.scalars(select(Contact)).all()
    addresses = session.execute(
        select(
            AddressRow.contact_id, AddressRow.email, AddressRow.inbound_count + AddressRow.outbound_count
        ).where(AddressRow.contact_id.is_not(None))
    ).all()
    by_contact: dict[int | None, list[tuple[int, str]]] = {}
    for contact_id, email, count in addresses:
        by_contact.setdefault(contact_id, []).append((count, email))
    views = [
        _view(c, [e for _n, e in sorted(by_contact.get(c.id, []), key=lambda t: (-t[0], t[1]))])
        for c in contacts
        if include_ignored or c.status != ContactStatus.IGNORED
    ]
    views = [v for v in views if v.addresses]
    epoch = datetime.min.replace(tzinfo=None)
    return sorted(
        views, key=lambda v: v.last_touch_at.replace(tzinfo=None) if v.last_touch_at else epoch, reverse=True
    )


def list_excluded(session: Session) -> list[ExcludedView]:
    """Addresses seen that are not contacts, with the reason (robots, lists, unanswered senders...)."""
    rows = session.scalars(
        select(AddressRow).where(AddressRow.contact_id.is_(None)).order_by(AddressRow.email)
    ).all()
    return [
        ExcludedView(r.email, r.name, r.excluded_reason or "no-exchange", r.inbound_count, r.bulk_count)
        for r in rows
    ]


def find_contact(session: Session, address: str, *, lock: bool = False) -> Contact:
    """The contact owning ``address``; NotFoundError says what to try otherwise.

    ``lock`` (in a write transaction, before changing the contact): the row is locked until commit
    (``SELECT ... FOR UPDATE``), so on PostgreSQL two commands changing one contact take turns instead of one
    overwriting the other's change (adding a tag reads the tags first). SQLite's writes already take turns.
    """
    row = session.scalar(select(AddressRow).where(AddressRow.email == address.strip().lower()))
    if row is None or row.contact_id is None:
        reason = f" (seen, not a contact: {row.excluded_reason or 'no exchange'})" if row is not None else ""
        raise NotFoundError(
            f"no contact with address {address}{reason}",
            hint="`followupd contacts list --all` shows every address and why it is or is not a contact.",
        )
    contact = session.get(Contact, row.contact_id, with_for_update=lock or None)
    assert contact is not None  # foreign key
    return contact


def view(session: Session, contact: Contact) -> ContactView:
    """One contact's view (its addresses, most used first)."""
    emails = session.scalars(
        select(AddressRow.email)
        .where(AddressRow.contact_id == contact.id)
        .order_by((AddressRow.inbound_count + AddressRow.outbound_count).desc(), AddressRow.email)
    ).all()
    return _view(contact, list(emails))


def set_status(session: Session, address: str, status: ContactStatus) -> ContactView:
    """Ignore, un-ignore or unmute a contact (``muted_until`` is cleared). Scans never change this."""
    contact = find_contact(session, address, lock=True)
    contact.status = status.value
    contact.muted_until = None
    return view(session, contact)


def mute(session: Session, address: str, until: datetime | None) -> ContactView:
    """No drafts for this contact until ``until`` (None: until unmuted); live drafts are superseded by the
    next plan, and the sender re-checks before sending."""
    contact = find_contact(session, address, lock=True)
    contact.status = ContactStatus.MUTED.value
    contact.muted_until = until
    return view(session, contact)


def update_settings(
    session: Session,
    address: str,
    *,
    tier: str | None = None,
    clear_tier: bool = False,
    cadence_days: float | None = None,
    clear_cadence: bool = False,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    note: str | None = None,
) -> ContactView:
    """Change the user's settings of one contact; ``note`` is appended as a new line of the notes."""
    contact = find_contact(session, address, lock=True)
    if tier is not None or clear_tier:
        contact.tier = tier
    if cadence_days is not None or clear_cadence:
        contact.cadence_days = cadence_days
    tags = [t for t in split_tags(contact.tags) if t not in remove_tags]
    contact.tags = join_tags([*tags, *add_tags])
    if note:
        contact.notes = f"{contact.notes}\n{note}" if contact.notes else note
    return view(session, contact)


def split_tags(text: str) -> list[str]:
    """Stored tags (comma-separated) as a list."""
    return [t for t in (part.strip() for part in text.split(",")) if t]


def join_tags(tags: Iterable[str]) -> str:
    """Tags as stored: comma-separated, in order, without duplicates."""
    return ",".join(dict.fromkeys(t.strip() for t in tags if t.strip()))


# --- merging ------------------------------------------------------------------------------------------------


def merge(session: Session, keep: str, other: str, *, now: datetime) -> MergeResult:
    """Make ``other``'s contact part of ``keep``'s: one person, several addresses.

    ``other``'s addresses move over; the times combine (earliest first seen, latest of every last_*);
    ``keep``'s settings win, tags are united and notes appended. ``other``'s drafts are repointed (history is
    kept), its live ones superseded (one person gets one live draft); then ``other``'s contact is deleted.
    """
    from followupd.store.contacts_refresh import refresh_contacts

    first, second = find_contact(session, keep, lock=True), find_contact(session, other, lock=True)
    if first.id == second.id:
        raise UsageError(f"{keep} and {other} are already one contact")
    if first.account_id != second.account_id:
        raise UsageError(f"{keep} and {other} belong to different accounts; they cannot be merged")
    moved = tuple(session.scalars(select(AddressRow.email).where(AddressRow.contact_id == second.id)))
    _combine(first, second)
    superseded = _supersede_live(session, second.id, now=now, why=f"merged into {view(session, first).email}")
    repointed = session.execute(
        update(Draft).where(Draft.contact_id == second.id).values(contact_id=first.id)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(update(AddressRow).where(AddressRow.contact_id == second.id).values(contact_id=first.id))
    session.execute(delete(Contact).where(Contact.id == second.id))
    session.flush()
    refresh_contacts(session, first.account_id, [first.id])
    session.expire(first)
    return MergeResult(view(session, first), moved, int(repointed), superseded)


def _combine(first: Contact, second: Contact) -> None:
    first.first_seen_at = _earliest(first.first_seen_at, second.first_seen_at)
    for name in ("last_inbound_at", "last_outbound_at", "last_meeting_at", "last_touch_at"):
        setattr(first, name, _latest(getattr(first, name), getattr(second, name)))
    first.name = first.name or second.name
    first.tags = join_tags([*split_tags(first.tags), *split_tags(second.tags)])
    first.notes = "\n".join(n for n in (first.notes, second.notes) if n)
    if first.tz_offset is None:
        first.tz_offset = second.tz_offset


def _supersede_live(session: Session, contact_id: int, *, now: datetime, why: str) -> tuple[int, ...]:
    live = [s.value for s in LIVE_STATES]
    ids = tuple(
        session.scalars(
            select(Draft.id).where(Draft.contact_id == contact_id, Draft.state.in_(live)).order_by(Draft.id)
        )
    )
    if ids:
        session.execute(
            update(Draft)
            .where(Draft.id.in_(ids), Draft.state.in_(live))
            .values(
                state=DraftState.SUPERSEDED.value,
                note=f"superseded: {why}",
                updated_at=now,
                version=Draft.version + 1,
            )
        )
    return ids


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(a, b) if a is not None and b is not None else a or b


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(a, b) if a is not None and b is not None else a or b


# --- importing ----------------------------------------------------------------------------------------------


def import_problems(session: Session, account_id: int | None, records: Sequence[ContactRecord]) -> list[str]:
    """What the database says against ``records`` (addresses that can never be contacts), one per line."""
    if account_id is None:
        return []
    emails = [r.email for r in records]
    found = {
        row.email: row.excluded_reason
        for row in session.execute(
            select(AddressRow.email, AddressRow.excluded_reason).where(
                AddressRow.account_id == account_id, AddressRow.email.in_(emails)
            )
        )
    }
    return [
        f"line {r.line}: {r.email} is {NEVER_A_PERSON[found[r.email]]} address; it cannot be a contact"
        for r in records
        if found.get(r.email) in NEVER_A_PERSON
    ]


def account_id(session: Session, name: str) -> int | None:
    """The id of the account row called ``name`` (None before its first scan or import)."""
    return session.scalar(select(Account.id).where(Account.name == name))


def known_contacts(session: Session, account_id: int | None, emails: Sequence[str]) -> set[str]:
    """Those of ``emails`` that already belong to a contact of the account."""
    if account_id is None or not emails:
        return set()
    query = select(AddressRow.email).where(
        AddressRow.account_id == account_id,
        AddressRow.email.in_(list(emails)),
        AddressRow.contact_id.is_not(None),
    )
    return set(session.scalars(query))


def apply_import(
    session: Session, account_id: int, records: Sequence[ContactRecord], *, now: datetime
) -> tuple[int, int]:
    """Create unknown contacts (an address row and a contact) and update known ones; (created, updated)."""
    created = updated = 0
    for record in records:
        row = session.scalar(
            select(AddressRow).where(AddressRow.account_id == account_id, AddressRow.email == record.email)
        )
        known = row is not None and row.contact_id
        contact = session.get(Contact, row.contact_id, with_for_update=True) if known and row else None
        if contact is None:
            contact = Contact(
                account_id=account_id, name="", status=ContactStatus.ACTIVE.value, tags="", notes=""
            )
            contact.first_seen_at = now
            session.add(contact)
            session.flush()
            if row is None:
                row = AddressRow(account_id=account_id, email=record.email, name=record.name or "")
                session.add(row)
            row.contact_id = contact.id
            created += 1
        else:
            updated += 1
        _apply(contact, record)
    session.flush()
    return created, updated


def _apply(contact: Contact, record: ContactRecord) -> None:
    if record.name:
        contact.name = record.name
    if record.tier:
        contact.tier = record.tier
    if record.tags:
        contact.tags = join_tags(record.tags)
    if record.notes:
        contact.notes = record.notes
    if record.cadence_days is not None:
        contact.cadence_days = record.cadence_days


def contacts_for_export(session: Session, statuses: Collection[str] = ()) -> list[ContactView]:
    """Contacts to export, by primary address; only the given statuses when any are given."""
    views = sorted(list_contacts(session), key=lambda v: v.email)
    return [v for v in views if not statuses or v.status in statuses]


def _view(c: Contact, emails: list[str]) -> ContactView:
    return ContactView(
        id=c.id,
        email=emails[0] if emails else "",
        name=c.name,
        addresses=tuple(emails),
        status=c.status,
        tier=c.tier,
        tags=tuple(split_tags(c.tags)),
        notes=c.notes,
        first_seen_at=c.first_seen_at,
        last_inbound_at=c.last_inbound_at,
        last_outbound_at=c.last_outbound_at,
        last_meeting_at=c.last_meeting_at,
        last_touch_at=c.last_touch_at,
        owes_reply=c.owes_reply,
        muted_until=c.muted_until,
        cadence_days=c.cadence_days,
    )
