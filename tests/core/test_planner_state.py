"""A hypothesis state machine over the planner and the draft life cycle.

The machine models a small mailbox: a few contacts write, get written to and meet; the user approves, skips,
snoozes and sends drafts; time passes; and the planner runs whenever hypothesis likes. After every plan the
actions are applied the way the engine would, and the invariants are checked:

- never two drafts (so never two live drafts) for one idempotency key;
- at most one live draft per contact;
- never a live draft for an ignored, muted, automated contact or one of the user's own addresses;
- never a live draft while a reply is owed;
- a superseded draft never comes back (its state never changes, its key is never queued again);
- the daily and weekly caps hold; the plan is deterministic; every queued draft was due.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from followupd.core.cadence import CadenceRules, ineligible, latest_exchange, next_due
from followupd.core.planner import (
    LIVE,
    SUPERSEDABLE,
    Awaiting,
    ContactState,
    ContactStatus,
    DraftState,
    DraftStatus,
    MeetingRef,
    QueueDraft,
    Reason,
    SupersedeDraft,
    ThreadRef,
    plan,
)

START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
RULES = CadenceRules(
    default_interval=timedelta(days=20),
    jitter=timedelta(days=1),
    max_new_per_day=2,
    max_new_per_week=3,
)
INDEX = st.integers(min_value=0, max_value=7)
# Mostly eligible contacts, so that drafts are actually planned; the rest exercise the exclusions.
RARELY = st.sampled_from([False, False, False, False, True])
STATUS = st.sampled_from([ContactStatus.ACTIVE] * 3 + [ContactStatus.MUTED, ContactStatus.IGNORED])
PROFILE = st.fixed_dictionaries(
    {
        "automated": RARELY,
        "is_own": RARELY,
        "status": STATUS,
        "tier": st.sampled_from([None, "close", "regular", "distant"]),
        "first_seen_days": st.integers(min_value=0, max_value=400),
    }
)


class PlannerMachine(RuleBasedStateMachine):
    """Contacts, drafts and a clock; the planner's actions applied as the engine applies them."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.contacts: dict[int, ContactState] = {}
        self.drafts: dict[int, DraftState] = {}
        self.superseded: dict[int, str] = {}  # draft id -> key
        self.queued_at: list[datetime] = []
        self.serial = 0

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def _contact(self, index: int) -> ContactState:
        ids = sorted(self.contacts)
        return self.contacts[ids[index % len(ids)]]

    def _update(self, state: ContactState, **changes: object) -> None:
        self.contacts[state.contact_id] = replace(state, **changes)  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------------- setup

    @initialize(profiles=st.lists(PROFILE, min_size=1, max_size=8))
    def make_contacts(self, profiles: list[dict[str, object]]) -> None:
        for contact_id, profile in enumerate(profiles, start=1):
            fields = dict(profile)
            first_seen = START - timedelta(days=fields.pop("first_seen_days"))  # type: ignore[arg-type]
            self.contacts[contact_id] = ContactState(
                contact_id=contact_id,
                email=f"p{contact_id}@example.org",
                first_seen_at=first_seen,
                last_inbound_at=first_seen,
                **fields,  # type: ignore[arg-type]
            )

    # ---------------------------------------------------------------------------------------- world

    @rule(hours=st.integers(min_value=1, max_value=24 * 12))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(index=INDEX)
    def they_write(self, index: int) -> None:
        state = self._contact(index)
        subject = f"From them {self._next()}"
        thread = ThreadRef(subject, f"<in{self.serial}@example.org>")
        self._update(state, last_inbound_at=self.now, owes_reply=True, awaiting=None, last_thread=thread)

    @rule(index=INDEX, asks=st.booleans())
    def user_writes(self, index: int, asks: bool) -> None:
        state = self._contact(index)
        message_id = f"<out{self._next()}@example.org>"
        awaiting = Awaiting("A question?", message_id, self.now) if asks else None
        thread = ThreadRef("Mine", message_id)
        self._update(
            state, last_outbound_at=self.now, owes_reply=False, awaiting=awaiting, last_thread=thread
        )

    @rule(index=INDEX, hours_ago=st.integers(min_value=0, max_value=48))
    def meeting_ends(self, index: int, hours_ago: int) -> None:
        state = self._contact(index)
        meeting = MeetingRef(f"uid-{self._next()}", "Coffee")
        end = max(self.now - timedelta(hours=hours_ago), latest_exchange(state) or state.first_seen_at)
        self._update(state, last_meeting_end_at=end, last_meeting=meeting, awaiting=None)

    @rule(index=INDEX, status=STATUS, days=st.none() | st.integers(0, 30))
    def user_sets_status(self, index: int, status: ContactStatus, days: int | None) -> None:
        until = self.now + timedelta(days=days) if days is not None else None
        self._update(self._contact(index), status=status, muted_until=until)

    @rule(index=INDEX, automated=RARELY, is_own=RARELY)
    def classification_changes(self, index: int, automated: bool, is_own: bool) -> None:
        self._update(self._contact(index), automated=automated, is_own=is_own)

    @rule(index=INDEX, days=st.none() | st.integers(1, 60))
    def user_sets_cadence(self, index: int, days: int | None) -> None:
        override = timedelta(days=days) if days is not None else None
        self._update(self._contact(index), cadence_override=override)

    # ---------------------------------------------------------------------------------------- review

    def _drafts_in(self, states: frozenset[DraftStatus]) -> list[int]:
        return sorted(draft_id for draft_id, d in self.drafts.items() if d.state in states)

    def _set(self, draft_id: int, state: DraftStatus) -> None:
        assert draft_id not in self.superseded, "a superseded draft changed state"
        self.drafts[draft_id] = replace(self.drafts[draft_id], state=state)

    @precondition(lambda self: bool(self._drafts_in(SUPERSEDABLE)))
    @rule(data=st.data(), action=st.sampled_from(["approve", "skip", "snooze", "wake"]))
    def user_reviews(self, data: st.DataObject, action: str) -> None:
        draft_id = data.draw(st.sampled_from(self._drafts_in(SUPERSEDABLE)))
        state = self.drafts[draft_id].state
        moves = {
            ("approve", DraftStatus.QUEUED): DraftStatus.APPROVED,
            ("snooze", DraftStatus.QUEUED): DraftStatus.SNOOZED,
            ("wake", DraftStatus.SNOOZED): DraftStatus.QUEUED,
        }
        if action == "skip":
            self._set(draft_id, DraftStatus.SKIPPED)
        elif (action, state) in moves:
            self._set(draft_id, moves[(action, state)])

    @precondition(lambda self: bool(self._drafts_in(frozenset({DraftStatus.APPROVED}))))
    @rule(
        data=st.data(), outcome=st.sampled_from([DraftStatus.SENT, DraftStatus.UNKNOWN, DraftStatus.FAILED])
    )
    def sender_sends(self, data: st.DataObject, outcome: DraftStatus) -> None:
        draft_id = data.draw(st.sampled_from(self._drafts_in(frozenset({DraftStatus.APPROVED}))))
        draft = self.drafts[draft_id]
        contact = self.contacts[draft.contact_id]
        # The sender re-checks right before sending (DESIGN 5): a stale draft is superseded, not sent.
        latest = latest_exchange(contact)
        if ineligible(contact, now=self.now) or (latest is not None and latest > (draft.anchor_at or START)):
            self._set(draft_id, DraftStatus.SUPERSEDED)
            self.superseded[draft_id] = draft.key
            return
        self._set(draft_id, outcome)
        if outcome is DraftStatus.SENT:
            self._record_sent(contact, draft)

    def _record_sent(self, contact: ContactState, draft: DraftState) -> None:
        awaiting = contact.awaiting
        if draft.reason is Reason.AWAITING_REPLY and awaiting is not None:
            awaiting = replace(awaiting, nudges_sent=awaiting.nudges_sent + 1)
        self._update(contact, last_outbound_at=self.now, awaiting=awaiting)

    @precondition(lambda self: bool(self._drafts_in(frozenset({DraftStatus.UNKNOWN}))))
    @rule(data=st.data())
    def unknown_found_in_sent(self, data: st.DataObject) -> None:
        draft_id = data.draw(st.sampled_from(self._drafts_in(frozenset({DraftStatus.UNKNOWN}))))
        self._set(draft_id, DraftStatus.SENT)
        draft = self.drafts[draft_id]
        self._record_sent(self.contacts[draft.contact_id], draft)

    # ---------------------------------------------------------------------------------------- planner

    def _counts(self) -> tuple[int, int]:
        today = sum(1 for at in self.queued_at if at.date() == self.now.date())
        week = sum(1 for at in self.queued_at if at.isocalendar()[:2] == self.now.isocalendar()[:2])
        return today, week

    @rule(seed=st.integers(min_value=0, max_value=3))
    def planner_runs(self, seed: int) -> None:
        today, week = self._counts()
        args = (list(self.contacts.values()), list(self.drafts.values()), RULES)
        actions = plan(*args, now=self.now, seed=seed, queued_today=today, queued_this_week=week)
        assert actions == plan(*args, now=self.now, seed=seed, queued_today=today, queued_this_week=week)
        self._check_actions(actions, today, week)
        for action in actions:
            self._apply(action)
        self._check_after_plan()

    def _check_actions(self, actions: list[QueueDraft | SupersedeDraft], today: int, week: int) -> None:
        new = [action for action in actions if isinstance(action, QueueDraft)]
        keys = {draft.key for draft in self.drafts.values()}
        assert len({action.key for action in new}) == len(new)
        assert not keys & {action.key for action in new}, "a key was queued twice"
        assert len(new) <= max(0, min(RULES.max_new_per_day - today, RULES.max_new_per_week - week))
        for action in new:
            contact = self.contacts[action.contact_id]
            assert ineligible(contact, now=self.now) is None
            due = next_due(contact, RULES, now=self.now)
            assert due is not None
            assert due.due_at <= self.now
            assert action.scheduled_at >= self.now
            assert action.key.startswith(f"{action.contact_id}:{action.reason}:")
        for cancel in actions:
            if isinstance(cancel, SupersedeDraft):
                assert self.drafts[cancel.draft_id].state in SUPERSEDABLE

    def _apply(self, action: QueueDraft | SupersedeDraft) -> None:
        if isinstance(action, SupersedeDraft):
            draft = self.drafts[action.draft_id]
            self._set(action.draft_id, DraftStatus.SUPERSEDED)
            self.superseded[action.draft_id] = draft.key
            return
        draft_id = self._next()
        self.drafts[draft_id] = DraftState(
            id=draft_id,
            contact_id=action.contact_id,
            key=action.key,
            reason=action.reason,
            state=DraftStatus.QUEUED,
            planned_at=self.now,
            scheduled_at=action.scheduled_at,
            anchor_at=action.anchor_at,
        )
        self.queued_at.append(self.now)

    def _check_after_plan(self) -> None:
        for contact in self.contacts.values():
            live = [d for d in self.drafts.values() if d.contact_id == contact.contact_id and d.state in LIVE]
            assert len(live) <= 1, "two live drafts for one contact"
            waiting = [d for d in live if d.state in SUPERSEDABLE]
            if ineligible(contact, now=self.now) is not None:
                # Covers ignored, muted, automated, own address and reply owed.
                assert not waiting, f"live draft for a contact that may not get one: {contact}"

    # ---------------------------------------------------------------------------------------- always

    @invariant()
    def one_draft_per_key(self) -> None:
        keys = [draft.key for draft in self.drafts.values()]
        assert len(keys) == len(set(keys))

    @invariant()
    def superseded_stays_superseded(self) -> None:
        for draft_id, key in self.superseded.items():
            assert self.drafts[draft_id].state is DraftStatus.SUPERSEDED
            assert sum(1 for draft in self.drafts.values() if draft.key == key) == 1

    @invariant()
    def caps_hold(self) -> None:
        per_day: dict[object, int] = {}
        per_week: dict[object, int] = {}
        for at in self.queued_at:
            per_day[at.date()] = per_day.get(at.date(), 0) + 1
            per_week[at.isocalendar()[:2]] = per_week.get(at.isocalendar()[:2], 0) + 1
        assert all(count <= RULES.max_new_per_day for count in per_day.values())
        assert all(count <= RULES.max_new_per_week for count in per_week.values())


PlannerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPlannerMachine = PlannerMachine.TestCase
