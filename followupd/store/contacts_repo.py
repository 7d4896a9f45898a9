"""Reading and changing contacts for the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from followupd.errors import NotFoundError
from followupd.store.models import AddressRow, Contact, ContactStatus


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


@dataclass(frozen=True)
class ExcludedView:
    """An address that is not a contact, and why."""

    email: str
    name: str
    reason: str
    inbound_count: int
    bulk_count: int


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


def find_contact(session: Session, address: str) -> Contact:
    """The contact owning ``address``; NotFoundError says what to try otherwise."""
    row = session.scalar(select(AddressRow).where(AddressRow.email == address.strip().lower()))
    if row is None or row.contact_id is None:
        reason = f" (seen, not a contact: {row.excluded_reason or 'no exchange'})" if row is not None else ""
        raise NotFoundError(
            f"no contact with address {address}{reason}",
            hint="`followupd contacts list --all` shows every address and why it is or is not a contact.",
        )
    contact = session.get(Contact, row.contact_id)
    assert contact is not None  # foreign key
    return contact


def view(session: Session, contact: Contact) -> ContactView:
    """One contact's view."""
    emails = session.scalars(
        select(AddressRow.email).where(AddressRow.contact_id == contact.id).order_by(AddressRow.email)
    ).all()
    return _view(contact, list(emails))


def set_status(session: Session, address: str, status: ContactStatus) -> ContactView:
    """Ignore or un-ignore a contact. Scans never change this."""
    contact = find_contact(session, address)
    contact.status = status.value
    return view(session, contact)


def _view(c: Contact, emails: list[str]) -> ContactView:
    return ContactView(
        id=c.id,
        email=emails[0] if emails else "",
        name=c.name,
        addresses=tuple(emails),
        status=c.status,
        tier=c.tier,
        tags=tuple(t for t in c.tags.split(",") if t),
        notes=c.notes,
        first_seen_at=c.first_seen_at,
        last_inbound_at=c.last_inbound_at,
        last_outbound_at=c.last_outbound_at,
        last_meeting_at=c.last_meeting_at,
        last_touch_at=c.last_touch_at,
        owes_reply=c.owes_reply,
    )
