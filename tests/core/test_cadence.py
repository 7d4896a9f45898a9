"""Table tests of the cadence rules, each with an explicit ``now``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from followupd.core.cadence import (
    CadenceRules,
    ContactStatus,
    Due,
    Reason,
    Tier,
    TierRule,
    Trigger,
    due_now,
    interval_for,
    iso,
    latest_exchange,
    next_due,
    reply_owed,
    tier_for,
)
from followupd.core.planner import Awaiting, ContactState, MeetingRef

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RULES = CadenceRules()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def contact(**changes: object) -> ContactState:
    """A long-known active contact: first seen a year ago, last exchange 10 days ago (inbound, answered)."""
    base = ContactState(
        contact_id=7,
        email="ada@example.org",
        name="Ada Lovelace",
        first_seen_at=ago(365),
        last_inbound_at=ago(11),
        last_outbound_at=ago(10),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- tiers


TIER_RULES = CadenceRules(
    rules=(
        TierRule("close", address="Boss@Example.org"),
        TierRule("distant", domain="example.net"),
        TierRule("close", tag="family"),
        TierRule("regular", domain="corp.example.com", tag="client"),
        TierRule("close"),  # no criterion: matches nobody
    )
)


@pytest.mark.parametrize(
    ("email", "tags", "tier", "expected"),
    [
        ("boss@example.org", frozenset(), None, "close"),
        ("x@example.net", frozenset(), None, "distant"),
        ("x@mail.example.net", frozenset(), None, "distant"),
        ("x@badexample.net", frozenset(), None, "default"),
        ("x@example.org", frozenset({"family"}), None, "close"),
        ("x@corp.example.com", frozenset({"client"}), None, "regular"),
        ("x@corp.example.com", frozenset(), None, "default"),
        ("x@example.org", frozenset(), None, "default"),
        # The first matching rule wins, and a tier set on the contact beats every rule.
        ("x@example.net", frozenset({"family"}), None, "distant"),
        ("boss@example.org", frozenset(), "distant", "distant"),
    ],
)
def test_tier_for(email: str, tags: frozenset[str], tier: str | None, expected: str) -> None:
    assert tier_for(contact(email=email, tags=tags, tier=tier), TIER_RULES) == expected


@pytest.mark.parametrize("rule", TIER_RULES.rules, ids=repr)
@pytest.mark.parametrize(
    "email",
    ["boss@example.org", "x@example.net", "x@mail.example.net", "x@corp.example.com", "x@notexample.net"],
)
@pytest.mark.parametrize("tags", [frozenset(), frozenset({"family", "client"})])
def test_matches_agrees_with_tier_for(rule: TierRule, email: str, tags: frozenset[str]) -> None:
    alone = CadenceRules(rules=(rule,))
    assert rule.matches(email, tags) == (tier_for(contact(email=email, tags=tags), alone) == rule.tier)


def test_empty_strings_in_a_rule_mean_no_criterion() -> None:
    rules = CadenceRules(rules=(TierRule("close", address="", domain="example.org", tag=""),))
    assert tier_for(contact(), rules) == "close"
    assert tier_for(contact(), CadenceRules(rules=(TierRule("close", address="", domain="", tag=""),))) == (
        "default"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, timedelta(days=90)),  # default
        ({"email": "boss@example.org"}, timedelta(days=30)),  # rule -> close
        ({"email": "x@example.net"}, timedelta(days=180)),  # rule -> distant
        ({"tier": "regular"}, timedelta(days=90)),
        ({"tier": "no-such-tier"}, timedelta(days=90)),  # unknown tier: default interval
        ({"email": "boss@example.org", "cadence_override": timedelta(days=14)}, timedelta(days=14)),
    ],
)
def test_interval_for(changes: dict[str, object], expected: timedelta) -> None:
    assert interval_for(contact(**changes), TIER_RULES) == expected


def test_default_interval_and_custom_tiers() -> None:
    rules = CadenceRules(default_interval=timedelta(days=60), tiers={"vip": Tier("vip", timedelta(days=7))})
    assert interval_for(contact(), rules) == timedelta(days=60)
    assert interval_for(contact(tier="vip"), rules) == timedelta(days=7)


# ---------------------------------------------------------------------------------------- eligibility


@pytest.mark.parametrize(
    "changes",
    [
        {"is_own": True},
        {"automated": True},
        {"status": ContactStatus.IGNORED},
        {"status": ContactStatus.MUTED},
        {"status": ContactStatus.MUTED, "muted_until": NOW + DAY},
        {"status": "ignored"},  # the store may pass the text
        {"status": "muted"},
        {"owes_reply": True},
    ],
)
def test_nothing_is_due_for_ineligible_contacts(changes: dict[str, object]) -> None:
    assert (
        next_due(contact(last_inbound_at=ago(400), last_outbound_at=ago(400), **changes), RULES, now=NOW)
        is None
    )


def test_a_mute_that_ended_is_active_again() -> None:
    state = contact(status=ContactStatus.MUTED, muted_until=NOW - DAY, last_outbound_at=ago(200))
    due = next_due(state, RULES, now=NOW)
    assert due is not None
    assert due.reason is Reason.KEEP_IN_TOUCH


@pytest.mark.parametrize(
    ("changes", "owed"),
    [
        ({"owes_reply": True}, True),
        ({"owes_reply": False}, False),
        ({"owes_reply": True, "status": ContactStatus.IGNORED}, False),  # ignored: not shown as owed
        ({"owes_reply": True, "automated": True}, False),
    ],
)
def test_reply_owed(changes: dict[str, object], owed: bool) -> None:
    assert reply_owed(contact(**changes), now=NOW) is owed


# ------------------------------------------------------------------------------------ next_due tables


def meeting(end: datetime, uid: str = "uid-1") -> dict[str, object]:
    return {"last_meeting_end_at": end, "last_meeting": MeetingRef(uid, "Coffee")}


def awaiting(sent: datetime, nudges: int = 0, msgid: str = "<q1@example.org>") -> dict[str, object]:
    return {
        "awaiting": Awaiting("Deck", msgid, sent, nudges_sent=nudges),
        "last_outbound_at": sent,
        "last_inbound_at": sent - DAY,
    }


def mail(inbound: float | None, outbound: float | None, first_seen: float = 365) -> dict[str, object]:
    """Contact changes: last inbound/outbound so many days ago, first seen so many days ago."""
    return {
        "last_inbound_at": None if inbound is None else ago(inbound),
        "last_outbound_at": None if outbound is None else ago(outbound),
        "first_seen_at": ago(first_seen),
    }


KEEP, NEW, MEET, NUDGE = Reason.KEEP_IN_TOUCH, Reason.NEW_CONTACT, Reason.AFTER_MEETING, Reason.AWAITING_REPLY
OFF = Trigger(enabled=False)
HOURS = timedelta(hours=1)

# (case, contact changes, rules, expected reason or None, expected due_at or None)
CASES: list[tuple[str, dict[str, object], CadenceRules, Reason | None, datetime | None]] = [
    # keep_in_touch
    ("keep: 10 days since the last exchange", {}, RULES, KEEP, ago(10) + 90 * DAY),
    ("keep: overdue", mail(120, 100), RULES, KEEP, ago(10)),
    ("keep: the latest of in/out counts", mail(95, 100), RULES, KEEP, ago(5)),
    ("keep: a recorded touch counts", {**mail(120, 100), "last_touch_at": ago(3)}, RULES, KEEP, ago(-87)),
    ("keep: tier close", {**mail(41, 40), "tier": "close"}, RULES, KEEP, ago(10)),
    ("keep: override", {"cadence_override": 7 * DAY}, RULES, KEEP, ago(3)),
    ("keep: override, second cycle", {"cadence_override": 4 * DAY}, RULES, KEEP, ago(2)),
    ("keep: extra delay", {}, replace(RULES, keep_in_touch=Trigger(delay=2 * DAY)), KEEP, ago(-82)),
    ("keep: disabled", {}, replace(RULES, keep_in_touch=OFF), None, None),
    ("keep: no exchange yet: from first seen", mail(None, None, 100), RULES, KEEP, ago(10)),
    # A skipped keep-in-touch returns in the next cycle: 100 + 90 days ago -> cycle 2, due 10 days ago.
    ("keep: second cycle", mail(191, 190), RULES, KEEP, ago(10)),
    # new_contact
    ("new: stopped 1 day ago", mail(2, 1, 5), RULES, NEW, ago(1) + 3 * DAY),
    ("new: stopped 4 days ago", mail(5, 4, 6), RULES, NEW, ago(1)),
    ("new: first seen 31 days ago is not new", mail(30, 29, 31), RULES, KEEP, ago(29) + 90 * DAY),
    ("new: custom window", mail(30, 29, 31),
     replace(RULES, new_contact=Trigger(delay=DAY, expires_after=60 * DAY)), NEW, ago(28)),
    ("new: disabled", mail(5, 4, 5), replace(RULES, new_contact=OFF), KEEP, ago(4) + 90 * DAY),
    # an imported address-book entry: seen 2 days ago, no exchange -> no new_contact, keep_in_touch later
    ("new: no exchange at all is not a conversation", mail(None, None, 2), RULES, KEEP, ago(2) + 90 * DAY),
    # after_meeting
    ("meeting: ended 2 hours ago", meeting(NOW - 2 * HOURS), RULES, MEET, NOW + 22 * HOURS),
    ("meeting: ended 2 days ago", meeting(ago(2)), RULES, MEET, ago(1)),
    ("meeting: in the future", meeting(NOW + DAY), RULES, MEET, NOW + 2 * DAY),
    ("meeting: 8 days ago is stale", meeting(ago(8)), RULES, KEEP, ago(8) + 90 * DAY),
    ("meeting: you wrote after it", {**meeting(ago(2)), "last_outbound_at": ago(1)}, RULES, KEEP, ago(-89)),
    ("meeting: 12-hour delay", meeting(NOW - 13 * HOURS),
     replace(RULES, after_meeting=Trigger(delay=12 * HOURS)), MEET, NOW - HOURS),
    ("meeting: disabled", meeting(ago(2)), replace(RULES, after_meeting=OFF), KEEP, ago(2) + 90 * DAY),
    ("meeting beats new_contact", {**meeting(ago(2)), "first_seen_at": ago(3)}, RULES, MEET, ago(1)),
    # awaiting_reply
    ("awaiting: sent 6 days ago", awaiting(ago(6)), RULES, NUDGE, ago(1)),
    ("awaiting: sent 2 days ago", awaiting(ago(2)), RULES, NUDGE, ago(2) + 5 * DAY),
    ("awaiting: nudge already sent", awaiting(ago(12), nudges=1), RULES, KEEP, ago(12) + 90 * DAY),
    ("awaiting: second nudge allowed, from the latest outbound",
     {**awaiting(ago(12), nudges=1), "last_outbound_at": ago(6)},
     replace(RULES, awaiting_reply=Trigger(delay=5 * DAY, max_nudges=2)), NUDGE, ago(1)),
    ("awaiting: they answered", {**awaiting(ago(6)), "last_inbound_at": ago(3)}, RULES, KEEP, ago(-87)),
    ("awaiting: a meeting answered it", {**awaiting(ago(6)), **meeting(ago(3))}, RULES, MEET, ago(2)),
    ("awaiting: 31 days old is stale", awaiting(ago(31)), RULES, KEEP, ago(31) + 90 * DAY),
    ("awaiting: disabled", awaiting(ago(6)), replace(RULES, awaiting_reply=OFF), KEEP, ago(6) + 90 * DAY),
    ("awaiting beats new_contact", {**awaiting(ago(6)), "first_seen_at": ago(8)}, RULES, NUDGE, ago(1)),
    # reply owed: nothing, whatever else applies
    ("owed beats meeting", {**meeting(ago(2)), "owes_reply": True}, RULES, None, None),
    ("owed beats keep", {"owes_reply": True, "last_outbound_at": ago(300)}, RULES, None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "rules", "reason", "due_at"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_next_due(
    changes: dict[str, object], rules: CadenceRules, reason: Reason | None, due_at: datetime | None
) -> None:
    due = next_due(contact(**changes), rules, now=NOW)
    # due_now is the planner's cheap form: the same answer when due, None otherwise.
    assert due_now(contact(**changes), rules, now=NOW) == (
        due if due is not None and due.due_at <= NOW else None
    )
    if reason is None:
        assert due is None
        return
    assert due is not None
    assert (due.reason, due.due_at) == (reason, due_at)


# ------------------------------------------------------------------------------------------ anchors


def due_for(**changes: object) -> Due:
    due = next_due(contact(**changes), RULES, now=NOW)
    assert due is not None
    return due


def test_anchor_formats() -> None:
    assert due_for(first_seen_at=ago(5), last_inbound_at=ago(5), last_outbound_at=ago(4)).anchor == iso(
        ago(5)
    )
    assert due_for(**meeting(ago(2), "uid-9")).anchor == f"uid-9@{iso(ago(2))}"
    assert due_for(**awaiting(ago(6), msgid="<m@x>")).anchor == "<m@x>#1"
    assert due_for().anchor == f"{iso(ago(10))}/1"
    assert due_for(last_outbound_at=ago(190), last_inbound_at=ago(191)).anchor == f"{iso(ago(190))}/2"


def test_anchor_is_utc_whatever_the_offset() -> None:
    from zoneinfo import ZoneInfo

    local = ago(10).astimezone(ZoneInfo("Europe/Berlin"))
    assert due_for(last_outbound_at=local).anchor == due_for(last_outbound_at=ago(10)).anchor


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        iso(datetime(2025, 1, 1))


def test_any_exchange_moves_the_anchor() -> None:
    before = due_for().anchor
    for field_name in ("last_inbound_at", "last_outbound_at", "last_touch_at", "last_meeting_end_at"):
        assert due_for(**{field_name: ago(1)}).anchor != before, field_name


def test_same_state_same_due() -> None:
    assert next_due(contact(), RULES, now=NOW) == next_due(contact(), RULES, now=NOW)
    # The anchor of keep_in_touch does not depend on now within a cycle.
    assert due_for().anchor == next_due(contact(), RULES, now=NOW + 30 * DAY).anchor  # type: ignore[union-attr]


def test_latest_exchange() -> None:
    assert latest_exchange(contact(last_inbound_at=None, last_outbound_at=None)) is None
    assert latest_exchange(contact(last_meeting_end_at=ago(1))) == ago(1)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({}, ["keep_in_touch", "tier default: every 90 days", "2025-05-23 09:00 UTC"]),
        ({"tier": "close"}, ["tier close: every 30 days"]),
        (meeting(ago(2)), ["after_meeting", "thank-you 1 day after the meeting"]),
        (awaiting(ago(6)), ["awaiting_reply", "nudge 1 of 1, 5 days after your message"]),
        ({"first_seen_at": ago(5)}, ["new_contact", "3 days after the conversation stopped"]),
    ],
)
def test_why_names_trigger_last_exchange_and_rule(changes: dict[str, object], words: list[str]) -> None:
    why = due_for(**changes).why
    for word in words:
        assert word in why


def test_hours_in_why() -> None:
    rules = replace(RULES, after_meeting=Trigger(delay=timedelta(hours=12)))
    due = next_due(contact(**meeting(ago(1))), rules, now=NOW)
    assert due is not None
    assert "12 hours" in due.rule
