"""Reading drafts for the CLI."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from followupd.store.models import AddressRow, Draft


@dataclass(frozen=True)
class DraftView:
    """A draft as the CLI shows it (``--json`` field names are these, and stable)."""

    id: int
    contact: str
    to: str
    subject: str
    body: str
    reason: str
    state: str
    scheduled_at: datetime
    planned_at: datetime
    why: str
    lint: tuple[dict[str, str], ...]
    message_id: str
    in_reply_to: str | None
    last_error: str | None
    note: str


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _lint(text: str) -> tuple[dict[str, str], ...]:
    try:
        items = json.loads(text or "[]")
    except ValueError:
        return ()
    if not isinstance(items, list):
        return ()
    return tuple(
        {"code": str(item.get("code", "")), "message": str(item.get("message", ""))}
        for item in items
        if isinstance(item, dict)
    )


def list_drafts(
    session: Session,
    *,
    states: Sequence[str] | None = None,
    contact: str | None = None,
    reason: str | None = None,
) -> list[DraftView]:
    """Drafts, soonest scheduled first, filtered by state(s), one contact address, and reason.

    ``contact`` matches any address of the contact (case-insensitively), not only the one the draft is
    addressed to.
    """
    query = select(Draft).order_by(Draft.scheduled_at, Draft.id)
    if states:
        query = query.where(Draft.state.in_(list(states)))
    if reason:
        query = query.where(Draft.reason == reason)
    if contact:
        owners = select(AddressRow.contact_id).where(AddressRow.email == contact.strip().lower())
        query = query.where(Draft.contact_id.in_(owners))
    return [
        DraftView(
            id=d.id,
            contact=d.to_addrs.split(",")[0].strip(),
            to=d.to_addrs,
            subject=d.subject,
            body=d.body,
            reason=d.reason,
            state=d.state,
            scheduled_at=_aware(d.scheduled_at),
            planned_at=_aware(d.planned_at),
            why=d.why,
            lint=_lint(d.lint),
            message_id=d.message_id,
            in_reply_to=d.in_reply_to,
            last_error=d.last_error,
            note=d.note,
        )
        for d in session.scalars(query)
    ]
