"""Which contacts the planner must see in full, chosen by the database (the large-account path of planning).

The caps allow only a handful of new drafts a day, so of 100,000 contacts the planner needs: those with a
live draft, those with an event trigger (new, met, asked), and the most overdue few for keep_in_touch.

- keep_in_touch: the contacts are read oldest last touch first (``ORDER BY last_touch_at, id``, in growing
  pages) and ranked by :func:`~followupd.core.overdue.overdue_sorted`, which stops reading as soon as no
  later contact can be among the most overdue. Contacts with a cadence override are a second stream, with
  their own shortest interval. The ranking is exactly :func:`~followupd.core.cadence.most_overdue`'s.
- awaiting_reply: the user's asking messages in the window are joined to their recipient's contact in SQL
  and only those newer than the contact's last inbound message (unanswered) come back; messages with
  several recipients (or a recipient that is no known address) are split in Python as before.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, desc, func, or_, select, true
from sqlalchemy.orm import Session

from followupd.core.cadence import DEFAULT_EXPIRY, CadenceRules, TouchRow
from followupd.core.overdue import overdue_sorted, shortest_interval
from followupd.core.planner import LIVE, Awaiting, DraftState, Reason
from followupd.store.models import AddressRow, Contact, Message

_CHUNK = 500
# First page of the keep_in_touch stream, as a multiple of the candidates wanted; later pages grow 4x.
_PAGE_FACTOR = 4
_MIN_PAGE = 200


def aware(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (SQLite returns naive UTC); None stays None."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def bracket(message_id: str) -> str:
    """A message id in angle brackets (``a@b`` -> ``<a@b>``)."""
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def candidates(
    session: Session,
    account_id: int,
    rules: CadenceRules,
    *,
    now: datetime,
    limit: int,
    awaiting: Mapping[int, Awaiting],
    drafts: list[DraftState],
    need_email: bool,
) -> set[int]:
    """The contacts whose full state the planner needs; ``limit`` keep_in_touch candidates at most."""
    live = {d.contact_id for d in drafts if d.state in LIVE}
    new_since = now - (rules.new_contact.expires_after or DEFAULT_EXPIRY[Reason.NEW_CONTACT])
    met_since = now - (rules.after_meeting.expires_after or DEFAULT_EXPIRY[Reason.AFTER_MEETING])
    events = session.scalars(
        select(Contact.id).where(
            Contact.account_id == account_id,
            or_(Contact.first_seen_at >= new_since, Contact.last_meeting_at >= met_since),
        )
    )
    overdue = most_overdue_in_db(session, account_id, rules, now=now, limit=limit, need_email=need_email)
    # Unanswered questions are served oldest first too; one the planner drops (nudged already, answered by a
    # meeting) is replaced by the next, hence a wider margin than for keep_in_touch.
    ripe = now - rules.awaiting_reply.delay
    asked = heapq.nsmallest(limit * 4, ((a.sent_at, cid) for cid, a in awaiting.items() if a.sent_at <= ripe))
    return {*live, *(cid for _at, cid in asked), *events, *overdue}


def most_overdue_in_db(
    session: Session, account_id: int, rules: CadenceRules, *, now: datetime, limit: int, need_email: bool
) -> list[int]:
    """:func:`~followupd.core.cadence.most_overdue` over the account's light touch rows, read lazily."""
    if limit <= 0 or not rules.keep_in_touch.enabled:
        return []
    plain = or_(Contact.cadence_days.is_(None), Contact.cadence_days == 0)
    found = _stream_best(session, account_id, rules, plain, shortest_interval(rules), now, limit, need_email)
    overridden = and_(Contact.cadence_days.is_not(None), Contact.cadence_days != 0)
    shortest_days = session.scalar(
        select(func.min(Contact.cadence_days)).where(*_rankable(account_id), overridden)
    )
    if shortest_days is not None:
        shortest = timedelta(days=shortest_days)
        found += _stream_best(session, account_id, rules, overridden, shortest, now, limit, need_email)
    return [contact_id for _due, contact_id in heapq.nsmallest(limit, found)]


def _rankable(account_id: int) -> tuple[ColumnElement[bool], ...]:
    return (
        Contact.account_id == account_id,
        Contact.status != "ignored",
        Contact.owes_reply.is_(False),
        Contact.last_touch_at.is_not(None),
    )


def _stream_best(  # noqa: PLR0917
    session: Session,
    account_id: int,
    rules: CadenceRules,
    subset: ColumnElement[bool],
    shortest: timedelta,
    now: datetime,
    limit: int,
    need_email: bool,
) -> list[tuple[datetime, int]]:
    # Nothing touched after this can be due by now; the stream never reads past it.
    cutoff = now - shortest - rules.keep_in_touch.delay
    rows = _touch_rows(session, account_id, subset, cutoff, limit, need_email=need_email)
    return overdue_sorted(rows, rules, now=now, limit=limit, shortest=shortest)


def _touch_rows(
    session: Session,
    account_id: int,
    subset: ColumnElement[bool],
    cutoff: datetime,
    limit: int,
    *,
    need_email: bool,
) -> Iterator[TouchRow]:
    """The account's rankable contacts in ``subset``, oldest last touch first, fetched in growing pages."""
    size = max(limit * _PAGE_FACTOR, _MIN_PAGE)
    after: tuple[datetime, int] | None = None
    while True:
        query = select(
            Contact.id, Contact.tags, Contact.tier, Contact.cadence_days, Contact.last_touch_at
        ).where(*_rankable(account_id), subset, Contact.last_touch_at <= cutoff)
        if after is not None:
            query = query.where(
                or_(
                    Contact.last_touch_at > after[0],
                    and_(Contact.last_touch_at == after[0], Contact.id > after[1]),
                )
            )
        page = session.execute(query.order_by(Contact.last_touch_at, Contact.id).limit(size)).all()
        # Only tier rules by address or domain need each contact's primary address; a contact with no
        # address cannot be planned, and is left out then (as the join of the full load does).
        emails = primary_emails(session, account_id, [row.id for row in page]) if need_email else {}
        for contact_id, tags, tier, cadence_days, touched in page:
            email = emails.get(contact_id) if need_email else ""
            if email is None:
                continue
            yield TouchRow(
                contact_id,
                email,
                frozenset(t for t in tags.split(",") if t) if tags else frozenset(),
                tier,
                timedelta(days=cadence_days) if cadence_days else None,
                aware(touched),
            )
        if len(page) < size:
            return
        last = aware(page[-1].last_touch_at)
        assert last is not None  # the query excludes rows without one
        after = (last, page[-1].id)
        size *= _PAGE_FACTOR


def primary_emails(session: Session, account_id: int, contact_ids: list[int]) -> dict[int, str]:
    """contact id -> primary address (see :func:`primary`) for ``contact_ids``."""
    found: dict[int, str] = {}
    for start in range(0, len(contact_ids), _CHUNK):
        ranked = primary(account_id, contact_ids[start : start + _CHUNK])
        rows = session.execute(select(ranked.c.contact_id, ranked.c.email).where(ranked.c.rank == 1))
        found.update({contact_id: email for contact_id, email in rows})
    return found


def primary(account_id: int, only: Collection[int] | None = None) -> Any:
    """Each contact's (or ``only`` those contacts') primary address, most messages then alphabetical, as
    rank 1 of a window."""
    rank = (
        func.row_number()
        .over(
            partition_by=AddressRow.contact_id,
            order_by=(desc(AddressRow.inbound_count + AddressRow.outbound_count), AddressRow.email),
        )
        .label("rank")
    )
    return (
        select(AddressRow.contact_id, AddressRow.email, rank)
        .where(
            AddressRow.account_id == account_id,
            AddressRow.contact_id.is_not(None),
            AddressRow.contact_id.in_(only) if only is not None else true(),
        )
        .subquery()
    )


def load_awaiting(
    session: Session, account_id: int, rules: CadenceRules, *, now: datetime
) -> dict[int, Awaiting]:
    """contact id -> the user's newest asking message to that contact within the awaiting_reply window,
    for the contacts that have not written since (the others have no question pending)."""
    trigger = rules.awaiting_reply
    if not trigger.enabled or trigger.max_nudges <= 0:
        return {}
    window = trigger.expires_after or DEFAULT_EXPIRY[Reason.AWAITING_REPLY]
    rows = session.execute(
        select(
            AddressRow.id,
            AddressRow.contact_id,
            Message.recipients,
            Message.message_id,
            Message.subject,
            Message.date_at,
            Message.in_reply_to,
            Message.id,
        )
        .outerjoin(
            AddressRow,
            and_(AddressRow.account_id == Message.account_id, AddressRow.email == Message.recipients),
        )
        .outerjoin(Contact, Contact.id == AddressRow.contact_id)
        .where(
            Message.account_id == account_id,
            Message.direction == "out",
            Message.asks.is_(True),
            Message.date_at >= now - window,
            Message.date_at <= now,
            # One recipient that is a contact's address: only if they have not written since. Anything
            # else (several recipients) is split below.
            or_(
                AddressRow.id.is_(None),
                and_(
                    AddressRow.contact_id.is_not(None),
                    or_(Contact.last_inbound_at.is_(None), Message.date_at > Contact.last_inbound_at),
                ),
            ),
        )
    ).all()
    newest: dict[int, tuple[datetime, int, Awaiting]] = {}
    several: list[tuple[list[str], str, str, datetime, str | None, int]] = []
    for address_id, contact_id, recipients, message_id, subject, date_at, in_reply_to, row_id in rows:
        sent_at = aware(date_at) or now
        if address_id is None:
            several.append((recipients.split(), message_id, subject, sent_at, in_reply_to, row_id))
            continue
        assert contact_id is not None  # the query returns a matched address only when it has a contact
        _keep_newest(newest, contact_id, sent_at, row_id, (message_id, subject, in_reply_to))
    if several:
        owner = _owners(session, account_id, sorted({email for row in several for email in row[0]}))
        split: dict[int, tuple[datetime, int, Awaiting]] = {}
        for emails, message_id, subject, sent_at, in_reply_to, row_id in several:
            for email in emails:
                contact_id = owner.get(email)
                if contact_id is not None:
                    _keep_newest(split, contact_id, sent_at, row_id, (message_id, subject, in_reply_to))
        for contact_id, last_inbound in _last_inbound(session, list(split)).items():
            sent_at, row_id, _asked = split[contact_id]
            current = newest.get(contact_id)
            answered = last_inbound is not None and sent_at <= last_inbound
            if not answered and (current is None or (current[0], current[1]) < (sent_at, row_id)):
                newest[contact_id] = split[contact_id]
    return {contact_id: asked for contact_id, (_at, _id, asked) in newest.items()}


def _keep_newest(
    newest: dict[int, tuple[datetime, int, Awaiting]],
    contact_id: int,
    sent_at: datetime,
    row_id: int,
    message: tuple[str, str | None, str | None],
) -> None:
    """Keep the newest message (by date, then store id) per contact."""
    current = newest.get(contact_id)
    if current is not None and (current[0], current[1]) >= (sent_at, row_id):
        return
    message_id, subject, in_reply_to = message
    references = (bracket(in_reply_to),) if in_reply_to else ()
    newest[contact_id] = (sent_at, row_id, Awaiting(subject or "", bracket(message_id), sent_at, references))


def _last_inbound(session: Session, contact_ids: list[int]) -> dict[int, datetime | None]:
    found: dict[int, datetime | None] = {}
    for start in range(0, len(contact_ids), _CHUNK):
        chunk = contact_ids[start : start + _CHUNK]
        rows = session.execute(select(Contact.id, Contact.last_inbound_at).where(Contact.id.in_(chunk)))
        found.update({contact_id: aware(at) for contact_id, at in rows})
    return found


def _owners(session: Session, account_id: int, emails: list[str]) -> dict[str, int]:
    """address -> contact id, for those of ``emails`` that belong to a contact."""
    owner: dict[str, int] = {}
    for start in range(0, len(emails), _CHUNK):
        chunk = emails[start : start + _CHUNK]
        for email, contact_id in session.execute(
            select(AddressRow.email, AddressRow.contact_id).where(
                AddressRow.account_id == account_id,
                AddressRow.email.in_(chunk),
                AddressRow.contact_id.is_not(None),
            )
        ):
            if contact_id is not None:
                owner[email] = contact_id
    return owner


__all__ = [
    "aware",
    "bracket",
    "candidates",
    "load_awaiting",
    "most_overdue_in_db",
    "primary",
    "primary_emails",
]
