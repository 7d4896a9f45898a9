"""Benchmark: ``followupd drafts list`` with 1,000 queued drafts, process start included (target: <= 300 ms).

Run: ``python benchmarks/cli.py [drafts] [runs]``. A temporary SQLite database with that many queued drafts
(one contact each) is built with Core inserts (not counted); then ``python -m followupd --config ... drafts
list`` runs as a subprocess ``runs`` times (output piped, as in a script) and the median and best wall times
are printed, next to a bare ``python -c pass`` for scale. ``--importtime`` also prints the slowest imports of
one run (``python -X importtime``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from followupd.store.db import Database
from followupd.store.models import Account, AddressRow, Contact, Draft

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
BODY = "Hi {name},\n\nI came across something for you: [what I can offer: an intro].\n\nBest,\nMe\n"
LINT = '[{"code": "empty-slot", "message": "the offer slot is still empty"}]'


def build(db: Database, drafts: int) -> None:
    """``drafts`` contacts, each with one address and one queued draft."""
    contacts: list[dict[str, Any]] = []
    addresses: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i in range(1, drafts + 1):
        email = f"person{i}@example{i % 37}.com"
        last = NOW - timedelta(days=100 + i % 50)
        contacts.append(
            {"id": i, "account_id": 1, "name": f"Person {i}", "status": "active", "tags": "", "notes": "",
             "first_seen_at": last, "last_touch_at": last, "last_outbound_at": last, "owes_reply": False}
        )  # fmt: skip
        addresses.append({"account_id": 1, "email": email, "name": f"Person {i}", "contact_id": i})
        rows.append(
            {"account_id": 1, "contact_id": i, "key": f"{i}:keep_in_touch:{last.isoformat()}/1",
             "reason": "keep_in_touch", "template": "keep_in_touch", "state": "queued",
             "from_addr": "Me <me@example.org>", "to_addrs": email, "subject": f"Thought of you, Person {i}",
             "body": BODY.format(name=f"Person {i}"), "message_id": f"<bench{i}@example.org>",
             "why": f"keep_in_touch: last exchange {last:%Y-%m-%d %H:%M} UTC; tier default: every 90 days;"
                    f" due {last + timedelta(days=90):%Y-%m-%d %H:%M} UTC",
             "lint": LINT, "planned_at": NOW, "scheduled_at": NOW + timedelta(minutes=i), "updated_at": NOW,
             "version": 1}
        )  # fmt: skip
    with db.write() as session:
        session.execute(insert(Account), [{"id": 1, "name": "main", "email": "me@example.org"}])
        session.execute(insert(Contact), contacts)
        session.execute(insert(AddressRow), addresses)
        session.execute(insert(Draft), rows)


def timed(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of ``runs`` runs of ``argv`` (stdout piped; a failure stops the benchmark)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed:\n{done.stderr.decode()}")
    return times


def slowest_imports(argv: list[str], env: dict[str, str], count: int = 12) -> list[str]:
    """The ``count`` imports with the largest cumulative time in one ``-X importtime`` run."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, env=env, check=False)
    lines = [line for line in done.stderr.decode().splitlines() if line.startswith("import time:")]
    parsed = []
    for line in lines[1:]:
        self_us, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        parsed.append((int(cumulative), int(self_us), name))
    return [f"{c / 1000:8.1f} ms  {name}" for c, _s, name in sorted(parsed, reverse=True)[:count]]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    drafts = int(args[0]) if args else 1000
    runs = int(args[1]) if len(args) > 1 else 10
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{tmp}/bench.db"\n')
        config.chmod(0o600)
        db = Database(f"sqlite:///{tmp}/bench.db")
        db.upgrade()
        build(db, drafts)
        db.dispose()
        env = {**os.environ, "FOLLOWUPD_CONFIG": str(config)}
        argv = [sys.executable, "-m", "followupd", "--config", str(config), "drafts", "list"]
        out = subprocess.run(argv, capture_output=True, env=env, check=True).stdout.decode()
        assert out.count("\n") == drafts, f"expected {drafts} lines, got {out.count(chr(10))}"
        baseline = timed([sys.executable, "-c", "pass"], runs, env)
        wall = timed(argv, runs, env)
        as_json = timed([*argv, "--json"], runs, env)
        print(f"python -c pass:                 median {statistics.median(baseline) * 1000:6.1f} ms")
        print(
            f"followupd drafts list ({drafts}):  median {statistics.median(wall) * 1000:6.1f} ms,"
            f" best {min(wall) * 1000:6.1f} ms  (target <= 300 ms)"
        )
        print(f"followupd drafts list --json:   median {statistics.median(as_json) * 1000:6.1f} ms")
        if "--importtime" in sys.argv:
            print("slowest imports (cumulative):")
            for line in slowest_imports(argv, env):
                print("  " + line)


if __name__ == "__main__":
    main()
