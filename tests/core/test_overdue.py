"""Ranking contacts for keep_in_touch without their whole state (the planner's large-account path)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from followupd.core.cadence import CadenceRules, Tier, TierRule, TouchRow, most_overdue

NOW = datetime(2026, 3, 1, tzinfo=UTC)
RULES = CadenceRules(
    default_interval=timedelta(days=90),
    tiers={"close": Tier("close", timedelta(days=30)), "distant": Tier("distant", timedelta(days=180))},
    rules=(TierRule("close", domain="partner.example"),),
)


def row(
    cid: int,
    days_ago: float | None,
    *,
    email: str = "a@x.org",
    tier: str | None = None,
    override: int | None = None,
) -> TouchRow:
    touched = NOW - timedelta(days=days_ago) if days_ago is not None else None
    return TouchRow(cid, email, frozenset(), tier, timedelta(days=override) if override else None, touched)


def test_ranks_by_how_long_ago_the_contact_became_due() -> None:
    rows = [
        row(1, 100),  # default 90d: 10 days overdue
        row(2, 40, email="b@mail.partner.example"),  # close by domain rule: 10 days overdue, same as 1
        row(3, 200, tier="distant"),  # 20 days overdue
        row(4, 50, override=45),  # override: 5 days overdue
        row(5, 60),  # not due yet
        row(6, None),  # never touched: not a keep_in_touch case
    ]
    assert most_overdue(rows, RULES, now=NOW, limit=10) == [3, 1, 2, 4]
    assert most_overdue(rows, RULES, now=NOW, limit=2) == [3, 1]
    assert most_overdue(rows, RULES, now=NOW, limit=0) == []


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=60), st.integers(min_value=0, max_value=20))
def test_the_top_k_are_exactly_the_k_most_overdue(days: list[float], limit: int) -> None:
    rows = [row(i, d) for i, d in enumerate(days)]
    due = sorted((NOW - timedelta(days=d) + timedelta(days=90), i) for i, d in enumerate(days) if d >= 90)
    assert most_overdue(rows, RULES, now=NOW, limit=limit) == [i for _at, i in due[:limit]]
