"""Benchmark: ``plan_once(dry_run=True)`` over 100,000 contacts and 1,000,000 messages (target: <= 1 s).

Run: ``python benchmarks/plan.py [contacts] [messages] [--runs N] [--db PATH] [--profile]``. The state is
inserted directly with Core executemany into a temporary SQLite database (not counted; ``--db PATH`` keeps
it at PATH and reuses it next time); then a few dry-run plans are timed and the best and median are printed,
with how many drafts the plan would queue. ``--profile`` prints a cProfile of one more plan (top 30 by
cumulative and own time) and the time spent in each SQL statement.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from followupd import config as config_mod
from followupd.engine.plan import plan_once
from followupd.store.db import Database
from followupd.store.models import Account, AddressRow, Contact, Draft, Message

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
ME = "me@example.org"
BATCH = 20_000


def _chunks(rows: list[dict[str, Any]]) -> Any:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


def build(db: Database, contacts: int, messages: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    contact_rows: list[dict[str, Any]] = []
    address_rows: list[dict[str, Any]] = []
    message_rows: list[dict[str, Any]] = []
    draft_rows: list[dict[str, Any]] = []
    per_contact = max(1, messages // contacts)
    for cid in range(1, contacts + 1):
        email = f"person{cid}@example{cid % 97}.com"
        first = NOW - timedelta(days=rng.uniform(1, 1500))
        times = sorted(first + (NOW - first) * rng.random() for _ in range(per_contact))
        directions = [rng.choice(("in", "out")) for _ in times]
        last_in = max((t for t, d in zip(times, directions, strict=True) if d == "in"), default=None)
        last_out = max((t for t, d in zip(times, directions, strict=True) if d == "out"), default=None)
        status = "ignored" if rng.random() < 0.02 else "active"
        contact_rows.append(
            {
                "id": cid, "account_id": 1, "name": f"Person {cid}", "status": status, "first_seen_at": first,
                "last_inbound_at": last_in, "last_outbound_at": last_out,
                "last_touch_at": max(t for t in (last_in, last_out) if t is not None),
                "owes_reply": directions[-1] == "in" and rng.random() < 0.3, "tags": "", "notes": "",
            }
        )  # fmt: skip
        address_rows.append(
            {
                "account_id": 1, "email": email, "contact_id": cid, "first_seen_at": first,
                "inbound_count": directions.count("in"), "outbound_count": directions.count("out"),
            }
        )  # fmt: skip
        for n, (at, direction) in enumerate(zip(times, directions, strict=True)):
            out = direction == "out"
            message_rows.append(
                {
                    "account_id": 1, "message_id": f"m{cid}.{n}@example.org", "thread_key": f"t{cid}",
                    "date_at": at, "direction": direction, "sender": ME if out else email,
                    "recipients": email if out else ME, "subject": "Q?" if out and n % 3 == 0 else "Hi",
                    "asks": out and n % 3 == 0, "automated": False, "reason": "", "has_calendar": False,
                }
            )  # fmt: skip
        if rng.random() < 0.05:
            draft_rows.append(
                {
                    "account_id": 1, "contact_id": cid, "key": f"{cid}:keep_in_touch:old/1",
                    "reason": "keep_in_touch", "template": "keep_in_touch.j2", "state": "sent",
                    "from_addr": ME, "to_addrs": email, "subject": "Hi", "body": "Hi\n",
                    "message_id": f"<d{cid}@example.org>", "why": "", "lint": "[]",
                    "planned_at": NOW - timedelta(days=400), "scheduled_at": NOW - timedelta(days=400),
                    "updated_at": NOW - timedelta(days=400), "attempts": 0, "note": "", "version": 1,
                }
            )  # fmt: skip
    with db.write() as session:
        session.execute(insert(Account), [{"id": 1, "name": "main", "email": ME}])
        for table, rows in ((Contact, contact_rows), (AddressRow, address_rows), (Message, message_rows),
                            (Draft, draft_rows)):  # fmt: skip
            for chunk in _chunks(rows):
                session.execute(insert(table), chunk)


def _statements(db: Database, config: config_mod.Config) -> None:
    """Time each SQL statement of one plan (execute to last row fetched is not separable: execute only)."""
    spent: dict[str, list[float]] = {}

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        key = " ".join(statement.split())[:110]
        spent.setdefault(key, []).append(time.perf_counter() - conn.info.pop("started"))

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    started = time.perf_counter()
    plan_once(db, config, now=NOW, dry_run=True)
    total = time.perf_counter() - started
    event.remove(db.engine, "before_cursor_execute", before)
    event.remove(db.engine, "after_cursor_execute", after)
    print(f"statements (execute only; rows are fetched lazily, outside these figures), plan {total:.3f} s:")
    for key, times in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {sum(times) * 1000:8.1f} ms  x{len(times):<3} {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("contacts", type=int, nargs="?", default=100_000)
    parser.add_argument("messages", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, help="keep the database here; reuse it when it exists")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.sqlite"
        url = f"sqlite:///{path}"
        config = config_mod.parse(
            f'[database]\nurl = "{url}"\n\n[[accounts]]\nname = "main"\nemail = "{ME}"\n'
            f'[accounts.maildir]\npath = "{tmp}"\n'
        )
        reuse = path.exists()
        db = Database(url)
        if reuse:
            print(f"reusing {path}")
        else:
            db.upgrade()
            started = time.perf_counter()
            build(db, args.contacts, args.messages)
            print(
                f"built {args.contacts:,} contacts / {args.messages:,} messages"
                f" in {time.perf_counter() - started:.1f} s"
            )
        timings = []
        result = None
        for _ in range(args.runs):
            started = time.perf_counter()
            result = plan_once(db, config, now=NOW, dry_run=True)
            timings.append(time.perf_counter() - started)
        assert result is not None
        print(
            f"plan_once(dry_run=True): best {min(timings):.3f} s, median {statistics.median(timings):.3f} s"
            f" of {len(timings)} ({len(result.queued)} would be queued, {result.superseded} superseded);"
            " target <= 1 s"
        )
        print("would queue:", ", ".join(sorted(d.key for d in result.queued)))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            plan_once(db, config, now=NOW, dry_run=True)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(30)
            _statements(db, config)
        db.dispose()


if __name__ == "__main__":
    main()
