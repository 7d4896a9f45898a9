"""Ranking keep_in_touch candidates from rows sorted by their last touch, reading only as far as needed.

:func:`~followupd.core.cadence.most_overdue` ranks every row it is given. The store can hand the rows over
oldest last touch first instead; then the walk can stop early: a row touched at ``t`` cannot come due before
``t + shortest + delay`` (``shortest`` being the shortest interval any of these rows can have), so once the
``limit`` best found so far all come due before that, no later row can displace them. The result is exactly
:func:`most_overdue`'s over the same rows (ties broken by contact id); on a large account only the few
hundred oldest rows are read instead of every contact.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime, timedelta

from followupd.core.cadence import CadenceRules, TouchRow, interval_for


def shortest_interval(rules: CadenceRules) -> timedelta:
    """The shortest interval a contact without a cadence override can have (tier or default)."""
    return min([rules.default_interval, *(tier.interval for tier in rules.tiers.values())])


def overdue_sorted(
    rows: Iterable[TouchRow], rules: CadenceRules, *, now: datetime, limit: int, shortest: timedelta
) -> list[tuple[datetime, int]]:
    """``(due_at, contact_id)`` of the ``limit`` most overdue of ``rows``, most overdue first.

    ``rows`` must come ordered by ``last_touch_at`` (oldest first; rows without one are ignored) and none
    may have an interval shorter than ``shortest``. The iteration stops as soon as no later row can enter
    the result, so ``rows`` may be a lazy stream.
    """
    if limit <= 0 or not rules.keep_in_touch.enabled:
        return []
    delay = rules.keep_in_touch.delay
    best: list[tuple[datetime, int]] = []
    for row in rows:
        touched = row.last_touch_at
        if touched is None:
            continue
        earliest = touched + shortest + delay
        if earliest > now or (len(best) >= limit and earliest > best[-1][0]):
            break  # this row, and every later one, comes due too late to count
        due = (touched + interval_for(row, rules) + delay, row.contact_id)
        if due[0] <= now and (len(best) < limit or due < best[-1]):
            bisect.insort(best, due)
            del best[limit:]
    return best


__all__ = ["overdue_sorted", "shortest_interval"]
