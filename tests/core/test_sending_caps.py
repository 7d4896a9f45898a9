"""``decide``'s caps are budgets per sending account: providers limit each mailbox, not the deployment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from followupd.core.sending import DueDraft, SendCounts, SendRules, Verdict, decide
from followupd.core.window import parse_window

NOW = datetime(2024, 4, 3, 10, 0, tzinfo=UTC)  # a Wednesday, inside the window
RULES = SendRules(window=parse_window("Mon-Fri 09:00-17:00"), zone=UTC, daily_cap=2, per_minute=5)


def due(draft_id: int, account: str, *, minutes_ago: int = 0) -> DueDraft:
    return DueDraft(
        id=draft_id,
        planned_at=NOW - timedelta(days=1),
        scheduled_at=NOW - timedelta(hours=1, minutes=minutes_ago),
        account=account,
    )


def verdicts(drafts: list[DueDraft], counts: SendCounts | dict[str, SendCounts]) -> dict[int, Verdict]:
    return {d.draft_id: d.verdict for d in decide(drafts, RULES, counts, now=NOW)}


def test_each_account_has_its_own_daily_budget() -> None:
    drafts = [due(i, "a", minutes_ago=10 - i) for i in range(1, 4)] + [due(i, "b") for i in range(4, 7)]
    assert verdicts(drafts, {}) == {
        1: Verdict.SEND,
        2: Verdict.SEND,
        3: Verdict.DAILY_CAP,  # a's two are gone; b's budget is untouched by a's
        4: Verdict.SEND,
        5: Verdict.SEND,
        6: Verdict.DAILY_CAP,
    }


def test_counts_are_read_per_account_and_an_account_not_counted_has_sent_nothing() -> None:
    drafts = [due(1, "a"), due(2, "b"), due(3, "c")]
    counts = {"a": SendCounts(today=2), "b": SendCounts(today=1, last_minute=5)}
    decisions = {d.draft_id: d for d in decide(drafts, RULES, counts, now=NOW)}
    assert decisions[1].verdict is Verdict.DAILY_CAP and "account a" in decisions[1].reason
    assert decisions[1].not_before == datetime(2024, 4, 4, 0, 0, tzinfo=UTC)
    assert decisions[2].verdict is Verdict.RATE_LIMIT and "account b" in decisions[2].reason
    assert decisions[2].not_before == NOW + timedelta(minutes=1)
    assert decisions[3].verdict is Verdict.SEND


def test_per_minute_is_per_account() -> None:
    rules = SendRules(window=RULES.window, zone=UTC, daily_cap=100, per_minute=1)
    drafts = [due(1, "a", minutes_ago=3), due(2, "a", minutes_ago=2), due(3, "b", minutes_ago=1)]
    got = {d.draft_id: d.verdict for d in decide(drafts, rules, {}, now=NOW)}
    assert got == {1: Verdict.SEND, 2: Verdict.RATE_LIMIT, 3: Verdict.SEND}


def test_a_single_count_applies_to_every_account_alike() -> None:
    drafts = [due(1, "a"), due(2, "a"), due(3, "b"), due(4, "b")]
    assert verdicts(drafts, SendCounts(today=1)) == {
        1: Verdict.SEND,
        2: Verdict.DAILY_CAP,
        3: Verdict.SEND,
        4: Verdict.DAILY_CAP,
    }


def test_drafts_without_an_account_share_one_budget_as_before() -> None:
    drafts = [DueDraft(id=i, planned_at=NOW - timedelta(days=1), scheduled_at=NOW) for i in range(1, 4)]
    decisions = decide(drafts, RULES, SendCounts(), now=NOW)
    assert [d.verdict for d in decisions] == [Verdict.SEND, Verdict.SEND, Verdict.DAILY_CAP]
    assert decisions[2].reason == "daily cap of 2 reached"
