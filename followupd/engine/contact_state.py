"""Loading what the planner knows about an account's contacts and drafts, as core types.

Shared by the planner (:mod:`followupd.engine.plan`) and the CLI's "who is due" view, so that both see a
contact exactly the same way. Loading lets the database do the work: one query over the contacts (their
primary address picked by a window function), one over the account's drafts, and one over the user's recent
outbound questions (bounded by the awaiting_reply expiry).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Executable, String, and_, desc, func, or_, select, true, type_coerce
from sqlalchemy.orm import Session

from followupd.config import Config
from followupd.core.cadence import (
    DEFAULT_EXPIRY,
    CadenceRules,
    TouchRow,
    interval_for,
    latest_exchange,
    most_overdue,
    next_due,
    reply_owed,
)
from followupd.core.planner import (
    LIVE,
    Awaiting,
    ContactState,
    ContactStatus,
    DraftState,
    DraftStatus,
    MeetingRef,
    Reason,
)
from followupd.store.db import Database
from followupd.store.models import Account, AddressRow, Contact, Draft, Meeting, MeetingAttendee, Message
from followupd.store.models import DraftState as StoreDraftState

_STATUS = {status.value: status for status in ContactStatus}
_DRAFT_STATUS = {status.value: status for status in DraftStatus}
_REASONS = {reason.value: reason for reason in Reason}
SUPERSEDABLE_STATES = (
    StoreDraftState.QUEUED.value,
    StoreDraftState.APPROVED.value,
    StoreDraftState.SNOOZED.value,
)
_SENT_LIKE = frozenset({DraftStatus.SENT, DraftStatus.SENDING, DraftStatus.UNKNOWN})
_LIVE = LIVE
_CHUNK = 500


def aware(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (SQLite returns naive UTC); None stays None."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def bracket(message_id: str) -> str:
    """A message id in angle brackets (``a@b`` -> ``<a@b>``)."""
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"


def load_contacts(
    session: Session,
    account_id: int,
    rules: CadenceRules,
    *,
    now: datetime,
    drafts: list[DraftState],
    prefilter: bool = True,
    budget: int | None = None,
) -> dict[int, ContactState]:
    """contact id -> the contact's state, as the planner sees it.

    ``drafts`` are the account's drafts (from :func:`load_drafts`): sent awaiting_reply nudges count against
    ``max_nudges``. With ``prefilter`` (the planner's hot path) ignored contacts and those owed a reply are
    left out unless a live draft of theirs may need superseding; without it, every contact is loaded.

    With ``budget`` (how many new drafts the caps still allow) only contacts that can matter are loaded in
    full: those with an event trigger (new, met, asked), those with a live draft, and the most overdue for
    keep_in_touch — a few times the budget, ranked from a light query. Planning 100,000 contacts then costs
    what planning a few hundred does.
    """
    nudges = Counter(
        (d.contact_id, _awaiting_ref(d.key))
        for d in drafts
        if d.reason is Reason.AWAITING_REPLY and d.state in _SENT_LIKE
    )
    awaiting = _load_awaiting(session, account_id, rules, now=now)
    only = None
    if budget is not None:
        only = _candidates(
            session, account_id, rules, now=now, budget=budget, awaiting=awaiting, drafts=drafts
        )
    contacts: dict[int, ContactState] = {}
    for row in session.execute(_contacts_query(account_id, prefilter=prefilter, only=only)):
        last_inbound = aware(row.last_inbound_at)
        last_outbound = aware(row.last_outbound_at)
        last_touch = aware(row.last_touch_at)
        asked = awaiting.get(row.id)
        pending = None
        if asked is not None and (last_inbound is None or asked.sent_at > last_inbound):
            nudged = nudges.get((row.id, asked.message_id), 0)
            pending = (
                Awaiting(asked.subject, asked.message_id, asked.sent_at, asked.references, nudged)
                if nudged
                else asked
            )
        first_seen = aware(row.first_seen_at) or last_inbound or last_outbound or last_touch or now
        contacts[row.id] = ContactState(
            contact_id=row.id,
            email=row.email,
            first_seen_at=first_seen,
            name=row.name or "",
            status=_STATUS.get(row.status, ContactStatus.ACTIVE),
            muted_until=aware(row.muted_until),
            tier=row.tier,
            cadence_override=timedelta(days=row.cadence_days) if row.cadence_days else None,
            tags=frozenset(t for t in (row.tags or "").split(",") if t),
            last_inbound_at=last_inbound,
            last_outbound_at=last_outbound,
            last_touch_at=last_touch,
            last_meeting_end_at=aware(row.last_meeting_at),
            owes_reply=bool(row.owes_reply),
            awaiting=pending,
        )
    _attach_meetings(session, contacts)
    return contacts


def _attach_meetings(session: Session, contacts: dict[int, ContactState]) -> None:
    """Give each contact whose last touch was a meeting that meeting (its UID and subject), so the key of an
    after_meeting draft names the meeting and the template can thank them for it by name."""
    met = {cid: state.last_meeting_end_at for cid, state in contacts.items() if state.last_meeting_end_at}
    if not met:
        return
    rows = session.execute(
        select(AddressRow.contact_id, Meeting.uid, Meeting.subject, Meeting.start_at, Meeting.last_end_at)
        .join(MeetingAttendee, MeetingAttendee.meeting_id == Meeting.id)
        .join(
            AddressRow,
            and_(AddressRow.email == MeetingAttendee.email, AddressRow.account_id == Meeting.account_id),
        )
        .where(AddressRow.contact_id.in_(list(met)), Meeting.counts.is_(True))
    )
    for contact_id, uid, subject, start_at, end_at in rows:
        if contact_id in met and aware(end_at) == met[contact_id]:
            ref = MeetingRef(uid, subject or "", aware(start_at))
            contacts[contact_id] = replace(contacts[contact_id], last_meeting=ref)


# How many keep_in_touch candidates to load per draft the caps still allow: some of the most overdue are
# dropped by the planner (jitter not yet passed, muted, a draft under the same key); the rest fill in.
CANDIDATES_PER_DRAFT = 5
EXTRA_CANDIDATES = 20


def _candidates(
    session: Session,
    account_id: int,
    rules: CadenceRules,
    *,
    now: datetime,
    budget: int,
    awaiting: Mapping[int, Awaiting],
    drafts: list[DraftState],
) -> set[int]:
    """The contacts whose full state the planner needs (see :func:`load_contacts`)."""
    live = {d.contact_id for d in drafts if d.state in _LIVE}
    new_since = now - (rules.new_contact.expires_after or DEFAULT_EXPIRY[Reason.NEW_CONTACT])
    met_since = now - (rules.after_meeting.expires_after or DEFAULT_EXPIRY[Reason.AFTER_MEETING])
    events = session.scalars(
        select(Contact.id).where(
            Contact.account_id == account_id,
            or_(Contact.first_seen_at >= new_since, Contact.last_meeting_at >= met_since),
        )
    )
    limit = max(0, budget) * CANDIDATES_PER_DRAFT + EXTRA_CANDIDATES if budget > 0 else 0
    need_email = any(r.address or r.domain for r in rules.rules)
    overdue = most_overdue(
        _touch_rows(session, account_id, need_email=need_email), rules, now=now, limit=limit
    )
    # Unanswered questions are served oldest first too; one answered meanwhile is dropped by the planner,
    # hence a wider margin than for keep_in_touch.
    ripe = now - rules.awaiting_reply.delay
    asked = heapq.nsmallest(limit * 4, ((a.sent_at, cid) for cid, a in awaiting.items() if a.sent_at <= ripe))
    return {*live, *(cid for _at, cid in asked), *events, *overdue}


def _touch_rows(session: Session, account_id: int, *, need_email: bool) -> Iterator[TouchRow]:
    # The hot loop of planning a large account: 100,000 rows. The time column is read raw (type_coerce),
    # skipping the aware-UTC conversion of every row; only the few rows ranked get converted by the caller.
    last_touch = (
        type_coerce(Contact.last_touch_at, String)
        if session.get_bind().dialect.name == "sqlite"
        else Contact.last_touch_at
    )
    columns = [Contact.id, Contact.tags, Contact.tier, Contact.cadence_days, last_touch]
    query = select(*columns).where(
        Contact.account_id == account_id,
        Contact.status != "ignored",
        Contact.owes_reply.is_(False),
        Contact.last_touch_at.is_not(None),
    )
    if need_email:  # only tier rules by address or domain need each contact's primary address
        primary = _primary(account_id)
        query = query.add_columns(primary.c.email).join(
            primary, and_(primary.c.contact_id == Contact.id, primary.c.rank == 1)
        )
    row: Any
    for row in session.execute(query):
        contact_id, tags, tier, cadence_days, touched = row[:5]
        yield TouchRow(
            contact_id,
            row[5] if need_email else "",
            frozenset(t for t in tags.split(",") if t) if tags else frozenset(),
            tier,
            timedelta(days=cadence_days) if cadence_days else None,
            _utc(touched),
        )


def _utc(value: str | datetime) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _primary(account_id: int) -> Any:
    """Each contact's primary address (most messages, then alphabetical) as rank 1 of a window."""
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
        .where(AddressRow.account_id == account_id, AddressRow.contact_id.is_not(None))
        .subquery()
    )


def _contacts_query(account_id: int, *, prefilter: bool, only: set[int] | None = None) -> Executable:
    """The account's contacts (or ``only`` those) with their primary address."""
    primary = _primary(account_id)
    return (
        select(
            Contact.id,
            Contact.name,
            Contact.status,
            Contact.muted_until,
            Contact.tier,
            Contact.tags,
            Contact.cadence_days,
            Contact.first_seen_at,
            Contact.last_inbound_at,
            Contact.last_outbound_at,
            Contact.last_meeting_at,
            Contact.last_touch_at,
            Contact.owes_reply,
            primary.c.email,
        )
        .join(primary, and_(primary.c.contact_id == Contact.id, primary.c.rank == 1))
        .where(
            Contact.account_id == account_id,
            _draftable(account_id) if prefilter else true(),
            Contact.id.in_(only) if only is not None else true(),
        )
    )


def _draftable(account_id: int) -> ColumnElement[bool]:
    # Ignored contacts and those owed a reply cannot get a draft: skip them unless a live draft of theirs
    # may need superseding (the planner allows pre-filtering contacts, not drafts).
    return or_(
        and_(Contact.status != "ignored", Contact.owes_reply.is_(False)),
        Contact.id.in_(
            select(Draft.contact_id).where(
                Draft.account_id == account_id, Draft.state.in_(SUPERSEDABLE_STATES)
            )
        ),
    )


def load_drafts(
    session: Session, account_id: int, *, now: datetime, zone: ZoneInfo
) -> tuple[list[DraftState], int, int]:
    """The account's drafts as the planner sees them, and how many were planned today / in the last week."""
    midnight = datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone).astimezone(UTC)
    week_ago = now - timedelta(days=7)
    drafts: list[DraftState] = []
    today = week = 0
    rows = session.execute(
        select(
            Draft.id,
            Draft.contact_id,
            Draft.key,
            Draft.reason,
            Draft.state,
            Draft.planned_at,
            Draft.scheduled_at,
        ).where(Draft.account_id == account_id)
    )
    for row in rows:
        planned_at = aware(row.planned_at) or now
        today += planned_at >= midnight
        week += planned_at >= week_ago
        drafts.append(
            DraftState(
                id=row.id,
                contact_id=row.contact_id,
                key=row.key,
                # A reason the planner does not know (a hand-made meeting_request) still counts as a draft.
                reason=_REASONS.get(row.reason, Reason.KEEP_IN_TOUCH),
                state=_DRAFT_STATUS.get(row.state, DraftStatus.SKIPPED),
                planned_at=planned_at,
                scheduled_at=aware(row.scheduled_at),
            )
        )
    return drafts, today, week


def _awaiting_ref(key: str) -> str:
    """The message id inside an awaiting_reply key ``{contact}:awaiting_reply:{message id}#{n}``."""
    return key.partition(f":{Reason.AWAITING_REPLY}:")[2].rpartition("#")[0]


def _load_awaiting(
    session: Session, account_id: int, rules: CadenceRules, *, now: datetime
) -> dict[int, Awaiting]:
    """contact id -> the user's newest asking message to that contact within the awaiting_reply window."""
    trigger = rules.awaiting_reply
    if not trigger.enabled or trigger.max_nudges <= 0:
        return {}
    window = trigger.expires_after or DEFAULT_EXPIRY[Reason.AWAITING_REPLY]
    rows = session.execute(
        select(Message.message_id, Message.subject, Message.date_at, Message.recipients, Message.in_reply_to)
        .where(
            Message.account_id == account_id,
            Message.direction == "out",
            Message.asks.is_(True),
            Message.date_at >= now - window,
            Message.date_at <= now,
        )
        .order_by(Message.date_at)
    ).all()
    if not rows:
        return {}
    owner = _owners(session, account_id, sorted({email for row in rows for email in row.recipients.split()}))
    found: dict[int, Awaiting] = {}
    for row in rows:  # oldest first: the newest message to a contact wins
        references = (bracket(row.in_reply_to),) if row.in_reply_to else ()
        asked = Awaiting(row.subject or "", bracket(row.message_id), aware(row.date_at) or now, references)
        for email in row.recipients.split():
            contact_id = owner.get(email)
            if contact_id is not None:
                found[contact_id] = asked
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


# --- who is due ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueRow:
    """One contact in the "who is due" view (``--json`` field names are these, and stable).

    ``section`` is ``overdue``, ``upcoming`` or ``reply-owed``; ``reason`` the trigger (None when a reply is
    owed); ``elapsed`` the time since the last exchange as a fraction of the contact's cadence
    (``cadence_days``); ``draft_id``/``draft_state`` the contact's live draft, if any.
    """

    section: str
    contact_id: int
    email: str
    name: str
    reason: str | None
    due_at: datetime | None
    last_exchange_at: datetime | None
    cadence_days: float
    elapsed: float
    draft_id: int | None
    draft_state: str | None


def who_is_due(
    db: Database, config: Config, *, now: datetime, horizon: timedelta = timedelta(days=14)
) -> list[DueRow]:
    """Who is overdue, who comes due within ``horizon``, and who is owed a reply, across every account."""
    rules, zone = config.cadence.core_rules(), ZoneInfo(config.send.timezone)
    rows: list[DueRow] = []
    for account in config.accounts:
        with db.read() as session:
            account_id = session.scalar(select(Account.id).where(Account.name == account.name))
            if account_id is None:
                continue
            drafts, _today, _week = load_drafts(session, account_id, now=now, zone=zone)
            states = load_contacts(session, account_id, rules, now=now, drafts=drafts, prefilter=False)
        live = {d.contact_id: d for d in drafts if d.state in LIVE}
        rows += filter(
            None, (_due_row(s, rules, live.get(s.contact_id), now, horizon) for s in states.values())
        )
    order = {"overdue": 0, "upcoming": 1, "reply-owed": 2}
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: (order[r.section], r.due_at or r.last_exchange_at or far, r.email))


def _due_row(
    state: ContactState, rules: CadenceRules, draft: DraftState | None, now: datetime, horizon: timedelta
) -> DueRow | None:
    due = None if state.owes_reply else next_due(state, rules, now=now)
    if reply_owed(state, now=now):
        section = "reply-owed"
    elif due is not None and due.due_at <= now:
        section = "overdue"
    elif due is not None and due.due_at <= now + horizon:
        section = "upcoming"
    else:
        return None
    interval = interval_for(state, rules)
    last = latest_exchange(state)
    elapsed = (now - last) / interval if last is not None and interval > timedelta(0) else 0.0
    return DueRow(
        section=section,
        contact_id=state.contact_id,
        email=state.email,
        name=state.name,
        reason=str(due.reason) if due is not None else None,
        due_at=due.due_at if due is not None else None,
        last_exchange_at=last,
        cadence_days=interval / timedelta(days=1),
        elapsed=round(elapsed, 3),
        draft_id=draft.id if draft is not None else None,
        draft_state=str(draft.state) if draft is not None else None,
    )
