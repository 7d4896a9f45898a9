"""Example tests of the planner: keys, supersede, caps, priority, jitter, threading."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from followupd.core.cadence import CadenceRules, ContactStatus, iso
from followupd.core.planner import (
    LIVE,
    Awaiting,
    ContactState,
    DraftState,
    DraftStatus,
    MeetingRef,
    QueueDraft,
    Reason,
    SupersedeDraft,
    ThreadRef,
    jitter_offset,
    plan,
)

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NO_JITTER = CadenceRules(jitter=timedelta(0), max_new_per_day=1000, max_new_per_week=1000)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def contact(contact_id: int = 1, /, **changes: object) -> ContactState:
    """An active contact, 100 days since the last exchange: keep_in_touch due 10 days ago."""
    base = ContactState(
        contact_id=contact_id,
        email=f"p{contact_id}@example.org",
        first_seen_at=ago(400),
        last_inbound_at=ago(101),
        last_outbound_at=ago(100),
        last_thread=ThreadRef("Old thread", f"<t{contact_id}@example.org>"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def draft(
    draft_id: int = 1, contact_id: int = 1, state: DraftStatus = DraftStatus.QUEUED, **kw: object
) -> DraftState:
    fields: dict[str, object] = {
        "key": f"{contact_id}:keep_in_touch:old",
        "reason": Reason.KEEP_IN_TOUCH,
        "planned_at": ago(5),
        "anchor_at": ago(100),
    }
    fields.update(kw)
    return DraftState(id=draft_id, contact_id=contact_id, state=state, **fields)  # type: ignore[arg-type]


def queued(actions: list[QueueDraft | SupersedeDraft]) -> list[QueueDraft]:
    return [action for action in actions if isinstance(action, QueueDraft)]


def superseded(actions: list[QueueDraft | SupersedeDraft]) -> list[SupersedeDraft]:
    return [action for action in actions if isinstance(action, SupersedeDraft)]


# --------------------------------------------------------------------------------------------- queue


def test_a_due_contact_gets_one_draft_with_key_why_and_anchor() -> None:
    actions = plan([contact()], [], NO_JITTER, now=NOW)
    assert len(actions) == 1
    action = actions[0]
    assert isinstance(action, QueueDraft)
    assert action.key == f"1:keep_in_touch:{iso(ago(100))}/1"
    assert action.reason is Reason.KEEP_IN_TOUCH
    assert action.anchor_at == ago(100)
    assert action.scheduled_at == NOW
    assert action.thread is None  # keep-in-touch starts a new thread
    assert "keep_in_touch" in action.why
    assert "tier default: every 90 days" in action.why
    assert "2025-02-22" in action.why  # the last exchange


def test_nothing_before_it_is_due() -> None:
    assert plan([contact(last_outbound_at=ago(10))], [], NO_JITTER, now=NOW) == []


@pytest.mark.parametrize(
    ("changes", "reason", "thread"),
    [
        ({"first_seen_at": ago(10), "last_inbound_at": ago(9), "last_outbound_at": ago(8)},
         Reason.NEW_CONTACT, ThreadRef("Old thread", "<t1@example.org>")),
        ({"last_meeting_end_at": ago(2), "last_meeting": MeetingRef("uid", "Coffee")}, Reason.AFTER_MEETING,
         ThreadRef("Old thread", "<t1@example.org>")),
        ({"awaiting": Awaiting("Deck?", "<q@x>", ago(6), references=("<r@x>",)), "last_outbound_at": ago(6)},
         Reason.AWAITING_REPLY, ThreadRef("Deck?", "<q@x>", ("<r@x>",))),
    ],
)  # fmt: skip
def test_threads_per_reason(changes: dict[str, object], reason: Reason, thread: ThreadRef) -> None:
    (action,) = queued(plan([contact(**changes)], [], NO_JITTER, now=NOW))
    assert action.reason is reason
    assert action.thread == thread


@pytest.mark.parametrize("state", list(DraftStatus))
def test_an_existing_key_is_never_queued_again_whatever_its_state(state: DraftStatus) -> None:
    (first,) = queued(plan([contact()], [], NO_JITTER, now=NOW))
    existing = draft(state=state, key=first.key, planned_at=NOW, anchor_at=first.anchor_at)
    assert queued(plan([contact()], [existing], NO_JITTER, now=NOW + DAY)) == []


@pytest.mark.parametrize("state", sorted(LIVE))
def test_one_live_draft_per_contact(state: DraftStatus) -> None:
    live = draft(state=state, key="1:new_contact:other", planned_at=ago(1), anchor_at=ago(100))
    assert queued(plan([contact()], [live], NO_JITTER, now=NOW)) == []


@pytest.mark.parametrize("state", [DraftStatus.SENT, DraftStatus.SKIPPED, DraftStatus.FAILED])
def test_finished_drafts_of_other_keys_do_not_block(state: DraftStatus) -> None:
    done = draft(state=state, key="1:new_contact:other")
    assert len(queued(plan([contact()], [done], NO_JITTER, now=NOW))) == 1


def test_a_contact_listed_twice_is_planned_once() -> None:
    assert len(plan([contact(), contact()], [], NO_JITTER, now=NOW)) == 1


def test_iterables_are_read_once() -> None:
    actions = plan(iter([contact(1), contact(2)]), iter([draft(contact_id=3)]), NO_JITTER, now=NOW)
    assert len(queued(actions)) == 2


# ------------------------------------------------------------------------------------------ supersede


@pytest.mark.parametrize("state", [DraftStatus.QUEUED, DraftStatus.APPROVED, DraftStatus.SNOOZED])
@pytest.mark.parametrize(
    "exchange",
    [
        {"last_outbound_at": ago(1)},  # the user wrote by hand
        {"last_touch_at": ago(1)},
        {"last_meeting_end_at": ago(1)},
        {"last_inbound_at": ago(1), "owes_reply": True},  # they wrote
    ],
)
def test_a_new_exchange_supersedes_a_waiting_draft(state: DraftStatus, exchange: dict[str, object]) -> None:
    actions = plan([contact(**exchange)], [draft(state=state)], NO_JITTER, now=NOW)
    (action,) = superseded(actions)
    assert action.draft_id == 1
    assert action.why


def test_an_exchange_found_late_still_supersedes() -> None:
    # Dated before the draft was planned, scanned after it: anchor_at decides, not planned_at.
    late = draft(planned_at=ago(1), anchor_at=ago(100))
    assert superseded(plan([contact(last_inbound_at=ago(2))], [late], NO_JITTER, now=NOW))


def test_without_anchor_planned_at_is_the_basis() -> None:
    old = draft(planned_at=ago(5), anchor_at=None)
    assert superseded(plan([contact(last_inbound_at=ago(2))], [old], NO_JITTER, now=NOW))
    assert not superseded(plan([contact(last_inbound_at=ago(6))], [old], NO_JITTER, now=NOW))


def test_no_new_exchange_no_supersede() -> None:
    assert plan([contact()], [draft()], NO_JITTER, now=NOW) == []


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"status": ContactStatus.IGNORED}, "ignored"),
        ({"status": ContactStatus.MUTED}, "muted"),
        ({"automated": True}, "automated"),
        ({"is_own": True}, "own"),
        ({"owes_reply": True}, "reply owed"),
    ],
)
def test_a_contact_that_may_not_get_drafts_loses_its_waiting_draft(
    changes: dict[str, object], why: str
) -> None:
    (action,) = plan([contact(**changes)], [draft()], NO_JITTER, now=NOW)
    assert isinstance(action, SupersedeDraft)
    assert why in action.why


@pytest.mark.parametrize("state", [DraftStatus.SENDING, DraftStatus.UNKNOWN])
def test_in_flight_drafts_are_left_to_the_sender(state: DraftStatus) -> None:
    assert plan([contact(last_inbound_at=ago(1))], [draft(state=state)], NO_JITTER, now=NOW) == []


def test_drafts_of_contacts_not_passed_are_left_alone() -> None:
    # Contact 2 was pre-filtered out by the database: its very old draft is neither superseded nor counted.
    stale = draft(contact_id=2, planned_at=ago(500), anchor_at=ago(500))
    assert plan([contact(1)], [stale], NO_JITTER, now=NOW) == plan([contact(1)], [], NO_JITTER, now=NOW)


def test_supersede_then_queue_in_one_plan() -> None:
    # A keep-in-touch draft was waiting, then a meeting happened: the draft goes, a thank-you comes.
    met = contact(last_meeting_end_at=ago(2), last_meeting=MeetingRef("uid-5", "Lunch"))
    actions = plan([met], [draft()], NO_JITTER, now=NOW)
    assert isinstance(actions[0], SupersedeDraft)
    assert isinstance(actions[1], QueueDraft)
    assert actions[1].reason is Reason.AFTER_MEETING
    assert actions[1].key == f"1:after_meeting:uid-5@{iso(ago(2))}"


def test_a_superseded_draft_never_comes_back() -> None:
    state = contact(first_seen_at=ago(10), last_inbound_at=ago(9), last_outbound_at=ago(8))
    (first,) = queued(plan([state], [], NO_JITTER, now=NOW))
    gone = draft(key=first.key, state=DraftStatus.SUPERSEDED, reason=first.reason, planned_at=NOW)
    # Whatever happens later, the same anchor (first seen) never produces a second new_contact draft.
    for later in range(1, 40):
        actions = plan([state], [gone], NO_JITTER, now=NOW + later * DAY)
        assert all(action.key != first.key for action in queued(actions))


# ------------------------------------------------------------------------------------ caps and priority


def test_caps_per_day_and_week() -> None:
    contacts = [contact(i) for i in range(1, 30)]
    rules = replace(NO_JITTER, max_new_per_day=5, max_new_per_week=20)
    assert len(plan(contacts, [], rules, now=NOW)) == 5
    assert len(plan(contacts, [], rules, now=NOW, queued_today=3)) == 2
    assert len(plan(contacts, [], rules, now=NOW, queued_today=5)) == 0
    assert len(plan(contacts, [], rules, now=NOW, queued_today=9)) == 0
    assert len(plan(contacts, [], rules, now=NOW, queued_this_week=18)) == 2


def test_caps_do_not_limit_supersedes() -> None:
    contacts = [contact(i, last_inbound_at=ago(1), owes_reply=True) for i in range(1, 10)]
    drafts = [draft(i, contact_id=i, key=f"k{i}") for i in range(1, 10)]
    actions = plan(contacts, drafts, replace(NO_JITTER, max_new_per_day=1), now=NOW, queued_today=1)
    assert len(superseded(actions)) == 9


def test_longest_overdue_first() -> None:
    contacts = [contact(i, last_outbound_at=ago(90 + i), last_inbound_at=ago(90 + i)) for i in range(1, 11)]
    rules = replace(NO_JITTER, max_new_per_day=3)
    assert [action.contact_id for action in queued(plan(contacts, [], rules, now=NOW))] == [10, 9, 8]


def test_time_bound_triggers_before_keep_in_touch() -> None:
    backlog = [contact(i, last_outbound_at=ago(400), last_inbound_at=ago(400)) for i in range(1, 10)]
    thanks = contact(99, last_meeting_end_at=ago(1.5), last_meeting=MeetingRef("m", "Coffee"))
    actions = queued(plan([*backlog, thanks], [], replace(NO_JITTER, max_new_per_day=2), now=NOW))
    assert [action.contact_id for action in actions] == [99, 1]


def test_the_plan_does_not_depend_on_input_order() -> None:
    contacts = [contact(i, last_outbound_at=ago(90 + i % 7)) for i in range(1, 50)]
    rules = replace(NO_JITTER, max_new_per_day=7, jitter=timedelta(days=3))
    expected = plan(contacts, [], rules, now=NOW, seed=3)
    shuffled = contacts[:]
    random.Random(1).shuffle(shuffled)
    assert plan(shuffled, [], rules, now=NOW, seed=3) == expected


# ---------------------------------------------------------------------------------------------- jitter


def test_jitter_offset_is_deterministic_and_bounded() -> None:
    span = timedelta(days=2)
    offsets = [jitter_offset(0, f"1:keep_in_touch:{i}", span) for i in range(500)]
    assert offsets == [jitter_offset(0, f"1:keep_in_touch:{i}", span) for i in range(500)]
    assert all(timedelta(0) <= offset < span for offset in offsets)
    assert len(set(offsets)) > 450
    assert jitter_offset(1, "k", span) != jitter_offset(2, "k", span)
    assert jitter_offset(0, "k", timedelta(0)) == timedelta(0)


def test_a_conference_does_not_land_on_one_morning() -> None:
    """Forty people met on one day: their new_contact drafts spread over the jitter window."""
    met = [
        contact(i, first_seen_at=ago(4), last_inbound_at=ago(4), last_outbound_at=ago(3.9), last_thread=None)
        for i in range(1, 41)
    ]
    rules = replace(NO_JITTER, jitter=timedelta(days=2))
    # Due 3 days after the conversation stopped (0.9 days ago): run the planner every hour for three days.
    drafts: list[DraftState] = []
    days: Counter[int] = Counter()
    for hour in range(72):
        now = ago(1) + timedelta(hours=hour)
        for action in queued(plan(met, drafts, rules, now=now)):
            drafts.append(draft(len(drafts) + 1, action.contact_id, key=action.key, planned_at=now))
            days[hour // 24] += 1
    assert len(drafts) == 40
    assert max(days.values()) < 30
    assert len(days) >= 2


@pytest.mark.parametrize("reason", ["after_meeting", "awaiting_reply"])
def test_event_triggers_are_not_jittered(reason: str) -> None:
    changes: dict[str, object] = (
        {"last_meeting_end_at": ago(1), "last_meeting": MeetingRef("m")}
        if reason == "after_meeting"
        else {"awaiting": Awaiting("Q", "<q@x>", ago(5)), "last_outbound_at": ago(5)}
    )
    rules = replace(NO_JITTER, jitter=timedelta(days=30))
    (action,) = queued(plan([contact(**changes)], [], rules, now=NOW))
    assert action.reason == reason


def test_jitter_holds_a_due_draft_back() -> None:
    rules = replace(NO_JITTER, jitter=timedelta(days=2))
    contacts = [contact(i, last_outbound_at=ago(90), last_inbound_at=ago(91)) for i in range(1, 41)]
    at_due = len(plan(contacts, [], rules, now=NOW))
    after_jitter = len(plan(contacts, [], rules, now=NOW + 2 * DAY))
    assert at_due < 10
    assert after_jitter == 40


def test_seed_changes_who_goes_first_in_the_window() -> None:
    rules = replace(NO_JITTER, jitter=timedelta(days=2))
    contacts = [contact(i, last_outbound_at=ago(91), last_inbound_at=ago(91)) for i in range(1, 41)]
    picks = {
        tuple(a.contact_id for a in queued(plan(contacts, [], rules, now=NOW, seed=s))) for s in range(5)
    }
    assert len(picks) > 1
