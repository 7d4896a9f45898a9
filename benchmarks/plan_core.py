"""Benchmark: the pure planner over 100,000 contacts (target: <= 1 s).

Run: ``python benchmarks/plan_core.py [count]``. Prints the build time of the synthetic state (not counted),
then the best and median of a few ``plan()`` runs, and how many actions the plan produced.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from followupd.core.cadence import CadenceRules, ContactStatus, TierRule
from followupd.core.planner import (
    Awaiting,
    ContactState,
    DraftState,
    DraftStatus,
    MeetingRef,
    QueueDraft,
    Reason,
    ThreadRef,
    plan,
)

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


def _contact(rng: random.Random, contact_id: int) -> ContactState:
    first_seen = NOW - timedelta(days=rng.uniform(0, 1500))
    inbound = first_seen + timedelta(days=rng.uniform(0, (NOW - first_seen).days or 1))
    outbound = inbound + timedelta(hours=rng.uniform(-48, 48))
    roll = rng.random()
    meeting_end = inbound + timedelta(hours=1) if roll < 0.1 else None
    awaiting = None
    if 0.1 <= roll < 0.2:
        awaiting = Awaiting("Question", f"<q{contact_id}@example.org>", outbound + timedelta(hours=1))
    return ContactState(
        contact_id=contact_id,
        email=f"person{contact_id}@{rng.choice(['example.org', 'corp.example.com', 'mail.example.net'])}",
        name=f"Person {contact_id}",
        first_seen_at=first_seen,
        status=ContactStatus.IGNORED if roll > 0.97 else ContactStatus.ACTIVE,
        tags=frozenset({"friend"}) if roll > 0.9 else frozenset(),
        last_inbound_at=inbound,
        last_outbound_at=min(outbound, NOW),
        last_meeting_end_at=meeting_end,
        last_meeting=MeetingRef(f"uid-{contact_id}", "Coffee") if meeting_end else None,
        owes_reply=0.2 <= roll < 0.3,
        awaiting=awaiting,
        last_thread=ThreadRef("Hello", f"<t{contact_id}@example.org>"),
    )


def _drafts(rng: random.Random, count: int) -> list[DraftState]:
    states = list(DraftStatus)
    return [
        DraftState(
            id=i,
            contact_id=rng.randrange(count),
            key=f"{i}:keep_in_touch:x",
            reason=Reason.KEEP_IN_TOUCH,
            state=rng.choice(states),
            planned_at=NOW - timedelta(days=rng.uniform(0, 100)),
        )
        for i in range(count // 5)
    ]


def main() -> None:
    """Build ``count`` contacts (default 100,000) and time ``plan()`` over them."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(7)
    started = time.perf_counter()
    contacts = [_contact(rng, i) for i in range(count)]
    drafts = _drafts(rng, count)
    print(f"built {count:,} contacts and {len(drafts):,} drafts in {time.perf_counter() - started:.2f} s")
    rules = CadenceRules(rules=(TierRule("close", tag="friend"), TierRule("distant", domain="example.net")))
    timings, cpu = [], []
    for _ in range(5):
        started, started_cpu = time.perf_counter(), time.process_time()
        actions = plan(contacts, drafts, rules, now=NOW, seed=1)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    best, median = min(timings), statistics.median(timings)
    print(f"plan(): best {best:.3f} s, median {median:.3f} s wall; best {min(cpu):.3f} s CPU")
    queued = sum(1 for action in actions if isinstance(action, QueueDraft))
    print(f"        {len(actions):,} actions ({queued} queued, the rest superseded)")


if __name__ == "__main__":
    main()
