"""``plan_once``: load every account's contacts and drafts, ask the pure planner, apply its actions.

``accounts`` (names; None: every configured account) limits a run to the accounts a worker owns when several
share one database: nothing of the other accounts is read or changed, snoozed drafts included.

Per account, the whole unit of work (load, plan, render, insert, supersede) runs in one write transaction
(``BEGIN IMMEDIATE`` on SQLite), so two planners can never queue the same draft and a scan landing in the
middle cannot be half-seen; a dry run does the same work in a read transaction and writes nothing.

Loading (in :mod:`followupd.engine.contact_state`, shared with the CLI's "who is due" view) lets the
database do the work: one query over the contacts, one over the account's drafts, one over the user's recent
outbound questions. The thread a new_contact / after_meeting draft replies into is looked up only
for the few drafts actually queued (an index lookup each), not for every contact.

The engine is allowed randomness (the Message-ID nonce); the core is not.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formataddr
from zoneinfo import ZoneInfo

from sqlalchemy import and_, desc, select, update
from sqlalchemy.orm import Session

from followupd.config import AccountConfig, Config
from followupd.core.cadence import CadenceRules
from followupd.core.compose import (
    context_for,
    make_message_id,
    person,
    reply_references,
    sanitize_header,
)
from followupd.core.lint import LintRules, lint
from followupd.core.planner import (
    ContactState,
    DraftState,
    QueueDraft,
    Reason,
    SupersedeDraft,
    ThreadRef,
    plan,
)
from followupd.engine.candidates import bracket
from followupd.engine.contact_state import SUPERSEDABLE_STATES, load_contacts, load_drafts
from followupd.render import RenderError, TemplateSet
from followupd.store.db import Database
from followupd.store.drafts_repo import wake_snoozed
from followupd.store.models import (
    Account,
    AddressRow,
    Draft,
    Message,
    Thread,
)
from followupd.store.models import (
    DraftState as StoreDraftState,
)

log = logging.getLogger(__name__)

_THREADED = frozenset({Reason.NEW_CONTACT, Reason.AFTER_MEETING})


@dataclass(frozen=True)
class DraftSummary:
    """One draft plan_once queued (or, in a dry run, would queue). ``id`` is None in a dry run."""

    id: int | None
    account: str
    contact: str
    reason: str
    state: str
    subject: str
    scheduled_at: datetime
    why: str
    key: str
    lint: tuple[str, ...] = ()


@dataclass(frozen=True)
class SupersededSummary:
    """One draft plan_once superseded (or would supersede)."""

    id: int
    account: str
    contact: str
    why: str


@dataclass
class PlanResult:
    """What one plan did: drafts queued, drafts superseded, and why anything was skipped."""

    dry_run: bool = False
    queued: list[DraftSummary] = field(default_factory=list)
    superseded_drafts: list[SupersededSummary] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def superseded(self) -> int:
        return len(self.superseded_drafts)


@dataclass
class _Loaded:
    contacts: dict[int, ContactState]
    drafts: list[DraftState]
    queued_today: int
    queued_this_week: int


def plan_once(
    db: Database,
    config: Config,
    *,
    now: datetime,
    dry_run: bool = False,
    seed: int = 0,
    accounts: Collection[str] | None = None,
) -> PlanResult:
    """Plan every configured account (or those named in ``accounts``) once; see the module docstring."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    result = PlanResult(dry_run=dry_run)
    rules = config.cadence.core_rules()
    lint_rules = config.lint.core_rules()
    templates = TemplateSet(config.templates.dir)
    zone = ZoneInfo(config.send.timezone)
    chosen = [a for a in config.accounts if accounts is None or a.name in accounts]
    if not dry_run and chosen:
        # Snoozed drafts whose time has come are live again before the planner looks at them.
        with db.write() as session:
            ids = None
            if accounts is not None:
                names = [a.name for a in chosen]
                ids = list(session.scalars(select(Account.id).where(Account.name.in_(names))))
            woken = wake_snoozed(session, now, account_ids=ids)
        if woken:
            log.info("woke %d snoozed draft(s)", len(woken))
    for account in chosen:
        transaction = db.read() if dry_run else db.write()
        with transaction as session:
            _plan_account(
                session,
                config=config,
                account=account,
                rules=rules,
                lint_rules=lint_rules,
                templates=templates,
                result=result,
                now=now,
                zone=zone,
                dry_run=dry_run,
                seed=seed,
            )
    return result


def _plan_account(
    session: Session,
    *,
    config: Config,
    account: AccountConfig,
    rules: CadenceRules,
    lint_rules: LintRules,
    templates: TemplateSet,
    result: PlanResult,
    now: datetime,
    zone: ZoneInfo,
    dry_run: bool,
    seed: int,
) -> None:
    account_id = session.scalar(select(Account.id).where(Account.name == account.name))
    if account_id is None:
        result.skipped.append(f"{account.name}: not scanned yet")
        return
    loaded = _load(session, account_id, rules, now=now, zone=zone)
    actions = plan(
        loaded.contacts.values(),
        loaded.drafts,
        rules,
        now=now,
        seed=seed,
        queued_today=loaded.queued_today,
        queued_this_week=loaded.queued_this_week,
    )
    for action in actions:
        if isinstance(action, SupersedeDraft):
            _supersede(session, account, action, loaded, result, now=now, dry_run=dry_run)
        else:
            _queue(
                session,
                action,
                config=config,
                account=account,
                account_id=account_id,
                loaded=loaded,
                lint_rules=lint_rules,
                templates=templates,
                result=result,
                now=now,
                dry_run=dry_run,
            )


# --- loading ---------------------------------------------------------------------------------------------


def _load(
    session: Session, account_id: int, rules: CadenceRules, *, now: datetime, zone: ZoneInfo
) -> _Loaded:
    drafts, today, week = load_drafts(session, account_id, now=now, zone=zone)
    budget = min(rules.max_new_per_day - today, rules.max_new_per_week - week)
    contacts = load_contacts(session, account_id, rules, now=now, drafts=drafts, budget=budget)
    return _Loaded(contacts, drafts, today, week)


def _last_thread(session: Session, account_id: int, contact_id: int) -> ThreadRef | None:
    """The thread of the contact's newest inbound message, replying to that thread's latest message."""
    row = session.execute(
        select(
            Message.message_id, Message.subject, Message.in_reply_to, Thread.last_message_id, Thread.subject
        )
        .join(
            AddressRow,
            and_(AddressRow.account_id == Message.account_id, AddressRow.email == Message.sender),
        )
        .outerjoin(
            Thread, and_(Thread.account_id == Message.account_id, Thread.thread_key == Message.thread_key)
        )
        .where(
            Message.account_id == account_id,
            AddressRow.contact_id == contact_id,
            Message.direction == "in",
            Message.automated.is_(False),
        )
        .order_by(desc(Message.date_at), desc(Message.id))
        .limit(1)
    ).first()
    if row is None:
        return None
    message_id, subject, in_reply_to, last_id, thread_subject = row
    parent = bracket(last_id or message_id)
    references = tuple(bracket(v) for v in (in_reply_to, message_id) if v and bracket(v) != parent)
    return ThreadRef(thread_subject or subject or "", parent, references)


# --- applying --------------------------------------------------------------------------------------------


def _supersede(
    session: Session,
    account: AccountConfig,
    action: SupersedeDraft,
    loaded: _Loaded,
    result: PlanResult,
    *,
    now: datetime,
    dry_run: bool,
) -> None:
    contact_id = next((d.contact_id for d in loaded.drafts if d.id == action.draft_id), None)
    contact = loaded.contacts.get(contact_id) if contact_id is not None else None
    summary = SupersededSummary(action.draft_id, account.name, contact.email if contact else "", action.why)
    if dry_run:
        result.superseded_drafts.append(summary)
        return
    # Compare-and-set: a draft the user approved-and-sent meanwhile is not touched.
    changed = session.execute(
        update(Draft)
        .where(Draft.id == action.draft_id, Draft.state.in_(SUPERSEDABLE_STATES))
        .values(
            state=StoreDraftState.SUPERSEDED.value,
            updated_at=now,
            note=f"superseded: {action.why}",
            version=Draft.version + 1,
        )
    )
    if changed.rowcount:  # type: ignore[attr-defined]
        result.superseded_drafts.append(summary)
    else:
        result.skipped.append(f"draft {action.draft_id}: state changed meanwhile, not superseded")


def _queue(
    session: Session,
    action: QueueDraft,
    *,
    config: Config,
    account: AccountConfig,
    account_id: int,
    loaded: _Loaded,
    lint_rules: LintRules,
    templates: TemplateSet,
    result: PlanResult,
    now: datetime,
    dry_run: bool,
) -> None:
    contact = loaded.contacts[action.contact_id]
    if session.scalar(select(Draft.id).where(Draft.key == action.key)) is not None:
        result.skipped.append(f"{contact.email}: draft {action.key} exists")
        return
    thread = action.thread
    if thread is None and action.reason in _THREADED:
        thread = _last_thread(session, account_id, contact.contact_id)
    user = person(account.display_name, account.email)
    try:
        rendered = templates.render(
            str(action.reason), context_for(contact, user=user, now=now, thread=thread)
        )
    except RenderError as exc:
        result.skipped.append(f"{contact.email}: {exc}")
        return
    warnings = lint(rendered.subject, rendered.body, reason=str(action.reason), rules=lint_rules)
    review = config.send.review
    state = StoreDraftState.QUEUED if review else StoreDraftState.APPROVED
    scheduled_at = action.scheduled_at if review else max(action.scheduled_at, now + config.send.hold)
    summary_lint = tuple(str(w.code) for w in warnings)
    if dry_run:
        result.queued.append(
            DraftSummary(
                None,
                account.name,
                contact.email,
                str(action.reason),
                state.value,
                rendered.subject,
                scheduled_at,
                action.why,
                action.key,
                summary_lint,
            )
        )
        return
    in_reply_to, references = reply_references(thread.message_id, thread.references) if thread else (None, ())
    domain = account.email.rpartition("@")[2]
    draft = Draft(
        account_id=account_id,
        contact_id=contact.contact_id,
        key=action.key,
        reason=str(action.reason),
        template=rendered.template,
        state=state.value,
        from_addr=formataddr((sanitize_header(account.display_name), account.email)),
        to_addrs=contact.email,
        subject=rendered.subject,
        body=rendered.body,
        message_id=make_message_id(action.key, domain, nonce=uuid.uuid4().hex[:12]),
        in_reply_to=in_reply_to,
        references=" ".join(references) or None,
        why=action.why,
        lint=json.dumps([{"code": str(w.code), "message": w.message} for w in warnings]),
        planned_at=now,
        scheduled_at=scheduled_at,
        updated_at=now,
    )
    session.add(draft)
    session.flush()  # the UNIQUE constraints on key and message_id are the final guard
    result.queued.append(
        DraftSummary(
            draft.id,
            account.name,
            contact.email,
            draft.reason,
            draft.state,
            draft.subject,
            scheduled_at,
            draft.why,
            draft.key,
            summary_lint,
        )
    )


def summaries_as_dicts(items: Iterable[DraftSummary | SupersededSummary]) -> list[dict[str, object]]:
    """Plain dicts for ``--json``."""
    from dataclasses import asdict

    return [asdict(item) for item in items]


__all__: Sequence[str] = (
    "DraftSummary",
    "PlanResult",
    "SupersededSummary",
    "plan_once",
    "summaries_as_dicts",
)
