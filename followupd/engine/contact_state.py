"""Loading what the planner knows about an account's contacts and drafts, as core types.

Shared by the planner (:mod:`followupd.engine.plan`) and the CLI's "who is due" view, so that both see a
contact exactly the same way. Loading lets the database do the work: one query over the contacts (their
primary address picked by a window function), one over the account's drafts, and one over the user's recent
unanswered questions (bounded by the awaiting_reply expiry). For the planner, which contacts are loaded in
full is decided in :mod:`followupd.engine.candidates`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Executable, and_, or_, select, true
from sqlalchemy.orm import Session

from followupd.config import Config
from followupd.core.cadence import (
    CadenceRules,
    interval_for,
    latest_exchange,
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
from followupd.engine.candidates import aware as aware  # noqa: PLC0414 (re-exported: the demo uses it)
from followupd.engine.candidates import candidates, load_awaiting, primary
from followupd.store.db import Database
from followupd.store.models import Account, AddressRow, Contact, Draft, Meeting, MeetingAttendee
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
    awaiting = load_awaiting(session, account_id, rules, now=now)
    only = None
    if budget is not None:
        limit = budget * CANDIDATES_PER_DRAFT + EXTRA_CANDIDATES if budget > 0 else 0
        need_email = any(r.address or r.domain for r in rules.rules)
        only = candidates(
            session,
            account_id,
            rules,
            now=now,
            limit=limit,
            awaiting=awaiting,
            drafts=drafts,
            need_email=need_email,
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


def _contacts_query(account_id: int, *, prefilter: bool, only: set[int] | None = None) -> Executable:
    """The account's contacts (or ``only`` those) with their primary address."""
    ranked = primary(account_id, only)
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
            ranked.c.email,
        )
        .join(ranked, and_(ranked.c.contact_id == Contact.id, ranked.c.rank == 1))
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
