"""Claims on PostgreSQL (``SELECT ... FOR UPDATE SKIP LOCKED``) and the ``accounts=`` restriction of the
sending and planning units, for several workers sharing one database (issue 10).

A row another transaction holds is skipped at once, never waited on; concurrent claimers never claim the
same draft; ``send_due``, ``recover_sending``, ``resolve_unknown`` and ``plan_once`` touch only the accounts
they are given; the caps are budgets per account. Rows come from :func:`tests.send_worker.seed`.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine import deliver
from followupd.engine.plan import plan_once
from followupd.engine.send import recover_sending, resolve_unknown, send_due
from followupd.store.db import Database
from followupd.store.models import Account, Draft, DraftState
from tests.send_worker import NOW, config_text, seed
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.db_backend("postgresql"), pytest.mark.timeout(120)]

GUARD_S = 20  # only a claim that blocks on the held lock takes this long: the test then fails


@pytest.fixture(autouse=True)
def _smtp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PW", "unused")


def make_config(
    db: Database, accounts: list[str], port: int = 1, *, send: str = "", daily_cap: int = 2000
) -> Config:
    url = db.url.render_as_string(hide_password=False)
    text = config_text(url, accounts, smtp_port=port, send=send, daily_cap=daily_cap)
    return config_mod.parse(text, env={})


def claim(db: Database, draft_id: int) -> deliver.Outgoing | tuple[DraftState, str]:
    return deliver.claim(db, draft_id, version=1, account="a", now=NOW, zone=UTC)


def by_account(db: Database) -> Counter[tuple[str, str]]:
    """(account, state) -> how many drafts."""
    with db.read() as session:
        rows = session.execute(
            select(Account.name, Draft.state).join(Account, Draft.account_id == Account.id)
        )
        return Counter((name, state) for name, state in rows)


# ----------------------------------------------------------------------------------------------- claims


def test_a_row_locked_by_another_worker_is_skipped_not_waited_on(db: Database) -> None:
    locked, free = seed(db, ["a"], 2)
    with db.write() as holder, ThreadPoolExecutor(max_workers=1) as pool:
        holder.execute(select(Draft.id).where(Draft.id == locked).with_for_update()).all()
        # In another thread: blocking on the lock would leave the future unfinished while the lock is held.
        skipped = pool.submit(claim, db, locked).result(timeout=GUARD_S)
        taken = pool.submit(claim, db, free).result(timeout=GUARD_S)
    assert skipped == (DraftState.APPROVED, deliver.TAKEN)
    assert isinstance(taken, deliver.Outgoing) and taken.draft_id == free and taken.version == 2

    # Released: now it can be claimed, once.
    first = claim(db, locked)
    assert isinstance(first, deliver.Outgoing) and first.draft_id == locked
    assert claim(db, locked) == (DraftState.SENDING, deliver.TAKEN)
    assert by_account(db) == Counter({("a", "sending"): 2})


def test_concurrent_claimers_never_claim_the_same_draft(db: Database) -> None:
    ids = seed(db, ["a"], 200)
    claimers = 4
    start = threading.Barrier(claimers)

    def run(offset: int) -> list[int]:
        start.wait()
        order = ids[offset:] + ids[:offset]  # overlapping, in different places: every kind of collision
        return [c.draft_id for c in map(lambda i: claim(db, i), order) if isinstance(c, deliver.Outgoing)]

    with ThreadPoolExecutor(max_workers=claimers) as pool:
        claimed = list(pool.map(run, [0, 0, 50, 100]))
    counts = Counter(i for mine in claimed for i in mine)
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert by_account(db) == Counter({("a", "sending"): 200})


# ---------------------------------------------------------------------------------------------- accounts=


def test_send_due_sends_only_the_given_accounts(db: Database, smtp_server: SmtpServer) -> None:
    seed(db, ["a", "b"], 3)
    config = make_config(db, ["a", "b"], smtp_server.port)
    report = send_due(db, config, now=NOW, accounts=["a"])
    assert report.count("sent") == 3 and len(report.drafts) == 3
    assert {m.mail_from for m in smtp_server.messages} == {"a@example.org"}
    assert by_account(db) == Counter({("a", "sent"): 3, ("b", "approved"): 3})
    assert send_due(db, config, now=NOW, accounts=[]).drafts == []
    send_due(db, config, now=NOW)  # None: every account
    assert by_account(db) == Counter({("a", "sent"): 3, ("b", "sent"): 3})


def test_recover_and_resolve_touch_only_the_given_accounts(db: Database, tmp_path: Path) -> None:
    a_ids, b_ids = seed(db, ["a"], 2, state="sending"), seed(db, ["b"], 2, state="sending")
    assert sorted(recover_sending(db, accounts=["b"])) == b_ids
    assert by_account(db) == Counter({("a", "sending"): 2, ("b", "unknown"): 2})
    assert sorted(recover_sending(db)) == a_ids

    outbox = f'transport = "outbox"\noutbox_dir = "{tmp_path / "outbox"}"\n'
    config = make_config(db, ["a", "b"], send=outbox)
    resolved = resolve_unknown(db, config, now=NOW, accounts=["a"])
    assert sorted(r.draft_id for r in resolved) == a_ids  # no file: never written, so it goes again
    assert by_account(db) == Counter({("a", "approved"): 2, ("b", "unknown"): 2})


def test_plan_once_plans_and_wakes_only_the_given_accounts(db: Database) -> None:
    seed(db, ["a"], 2, state="snoozed")
    seed(db, ["b"], 2, state="snoozed")
    with db.write() as session:
        session.execute(update(Draft).values(snoozed_until=NOW - timedelta(minutes=5)))
    config = make_config(db, ["a", "b", "c"])  # c was never scanned

    result = plan_once(db, config, now=NOW, accounts=["a"])
    assert not any("c:" in why for why in result.skipped)
    assert {q.account for q in result.queued} <= {"a"}
    assert by_account(db)[("a", "queued")] >= 2 and by_account(db)[("b", "snoozed")] == 2

    everything = plan_once(db, config, now=NOW)
    assert "c: not scanned yet" in everything.skipped
    assert by_account(db)[("b", "snoozed")] == 0


# ------------------------------------------------------------------------------------------------- caps


def test_caps_are_per_account_across_runs(db: Database, smtp_server: SmtpServer) -> None:
    seed(db, ["a", "b"], 3)
    config = make_config(db, ["a", "b"], smtp_server.port, daily_cap=2)
    first = send_due(db, config, now=NOW)
    assert first.count("sent") == 4  # two each: a's cap does not hold b back
    assert by_account(db) == Counter(
        {("a", "sent"): 2, ("a", "approved"): 1, ("b", "sent"): 2, ("b", "approved"): 1}
    )
    later = send_due(db, config, now=NOW + timedelta(hours=1))
    assert sorted(d.reason for d in later.drafts) == [
        "daily cap of 2 reached for account a",
        "daily cap of 2 reached for account b",
    ]
    assert len(smtp_server.messages) == 4
