"""Per-account leases on PostgreSQL (``followupd.store.leases``, ``followupd.daemon.ownership``): claim,
renew, expiry and takeover, the fence that keeps a stale owner from committing, and fair shares between
workers.

Expiry is simulated by moving ``lease_until`` into the past (database time), never by sleeping.
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from followupd import config as config_mod
from followupd.daemon import ownership, steps
from followupd.errors import LeaseLostError
from followupd.store import leases, status_repo
from followupd.store.db import Database
from followupd.store.models import Account, Worker

pytestmark = pytest.mark.db_backend("postgresql")  # leases are for workers sharing PostgreSQL

LEASE = timedelta(seconds=30)
NOW = datetime(2024, 4, 3, 10, 0, tzinfo=UTC)
NAMES = [f"acct{n}" for n in range(6)]


@pytest.fixture
def pg(db: Database) -> Database:
    """The test's database, on PostgreSQL (the module's ``db_backend`` mark)."""
    return db


def configured(tmp_path: Path, names: list[str] = NAMES) -> config_mod.Config:
    text_ = "".join(
        f'[[accounts]]\nname = "{n}"\nemail = "{n}@example.org"\n[accounts.maildir]\npath = "{tmp_path}"\n'
        for n in names
    )
    return config_mod.parse('[database]\nurl = "sqlite://"\n' + text_, env={})


def seed(db: Database, names: list[str] = NAMES) -> None:
    with db.write() as session:
        leases.ensure_accounts(session, [(n, f"{n}@example.org") for n in names])


def expire(db: Database, *names: str) -> None:
    """Move the leases of ``names`` (or every lease) into the past, in database time."""
    with db.write() as session:
        now = leases.database_now(session)
        query = update(Account).values(lease_until=now - timedelta(seconds=1))
        if names:
            query = query.where(Account.name.in_(names))
        session.execute(query)


def owners(db: Database) -> dict[str, str | None]:
    with db.read() as session:
        return {name: owner for name, owner in session.execute(select(Account.name, Account.owner))}


def claim(db: Database, worker: str, limit: int | None = None) -> list[leases.Claimed]:
    with db.write() as session:
        return leases.claim(session, worker, NAMES, lease=LEASE, limit=limit)


# ------------------------------------------------------------------------------------------- pure parts


def test_fair_shares_add_up_and_every_worker_gets_some() -> None:
    workers = ["a", "b", "c", "d"]
    shares = [leases.fair_share(6, workers, w) for w in workers]
    assert shares == [2, 2, 1, 1]
    assert [leases.fair_share(6, ["a", "b"], w) for w in ("a", "b")] == [3, 3]
    assert leases.fair_share(6, [], "me") == 6  # the worker itself always counts
    assert sum(leases.fair_share(7, workers, w) for w in workers) == 7
    assert max(leases.fair_share(7, workers, w) for w in workers) == 2  # ceil(7 / 4)


def test_sqlite_reads_the_local_clock(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        db.upgrade()
        seed(db, ["one"])
        with db.write() as session:
            assert leases.claim(session, "w", ["one"], lease=LEASE) == [leases.Claimed("one", None)]
            assert abs(leases.database_now(session) - datetime.now(UTC)) < timedelta(minutes=1)
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------- PostgreSQL

pg_only = pytest.mark.postgres


@pg_only
def test_claim_takes_free_accounts_once(pg: Database) -> None:
    seed(pg)
    seed(pg)  # twice is harmless
    first = claim(pg, "A", limit=4)
    assert [c.name for c in first] == NAMES[:4] and all(c.previous is None for c in first)
    rest = claim(pg, "B")
    assert [c.name for c in rest] == NAMES[4:]
    assert claim(pg, "C") == []  # nothing free: live leases are never taken
    assert claim(pg, "A") == []  # an owner does not "claim" its own accounts again
    assert owners(pg) == {**dict.fromkeys(NAMES[:4], "A"), **dict.fromkeys(NAMES[4:], "B")}


@pg_only
def test_renew_extends_and_release_frees(pg: Database) -> None:
    seed(pg)
    claim(pg, "A", limit=2)
    with pg.read() as session:
        before = session.scalar(select(Account.lease_until).where(Account.name == NAMES[0]))
        db_now = leases.database_now(session)
    assert before is not None and db_now < before <= db_now + LEASE
    expire(pg, NAMES[0])  # late renewal: nobody took it, so it is still A's
    with pg.write() as session:
        assert leases.renew(session, "A", lease=timedelta(minutes=10)) == NAMES[:2]
    with pg.read() as session:
        after = session.scalar(select(Account.lease_until).where(Account.name == NAMES[0]))
    assert after is not None and before is not None and after > before
    with pg.write() as session:
        assert leases.release(session, "A", [NAMES[0]]) == [NAMES[0]]
        assert leases.release(session, "B") == []  # not B's
    assert owners(pg)[NAMES[0]] is None and owners(pg)[NAMES[1]] == "A"


@pg_only
def test_an_expired_lease_is_taken_over_and_the_old_owner_loses_it(pg: Database) -> None:
    seed(pg)
    claim(pg, "A")
    expire(pg, NAMES[2])
    taken = claim(pg, "B")
    assert taken == [leases.Claimed(NAMES[2], "A")]
    with pg.write() as session:
        assert NAMES[2] not in leases.renew(session, "A", lease=LEASE)
    with pg.read() as session:
        view = {item.name: item for item in leases.account_leases(session, now=leases.database_now(session))}
    assert view[NAMES[2]].owner == "B" and not view[NAMES[2]].expired


@pg_only
def test_fence_refuses_a_stale_owner_and_writes_nothing(pg: Database) -> None:
    seed(pg)
    claim(pg, "A")
    with pg.read() as session:
        account_id = session.scalar(select(Account.id).where(Account.name == NAMES[0]))
    assert account_id is not None
    with pg.write() as session:
        leases.fence(session, "A", account_id)  # the owner with a live lease passes
    expire(pg, NAMES[0])

    def stale_batch() -> None:
        with pg.write() as session:
            session.execute(update(Account).where(Account.id == account_id).values(last_error="x"))
            leases.fence(session, "A", account_id)

    with pytest.raises(LeaseLostError, match="no longer owns"):
        stale_batch()  # expired, even though nobody took it yet
    claim(pg, "B")
    with pytest.raises(LeaseLostError):
        stale_batch()
    with pg.read() as session:
        assert session.scalar(select(Account.last_error).where(Account.id == account_id)) is None


@pg_only
def test_fence_holds_the_row_so_a_takeover_cannot_interleave_with_the_commit(pg: Database) -> None:
    seed(pg)
    claim(pg, "A")
    with pg.read() as session:
        account_id = session.scalar(select(Account.id).where(Account.name == NAMES[0]))
    assert account_id is not None
    outcome: dict[str, object] = {}
    fenced, done = threading.Event(), threading.Event()

    def takeover() -> None:
        fenced.wait(10)
        try:
            with pg.write() as other:
                other.execute(text("SET LOCAL lock_timeout = '200ms'"))
                other.execute(update(Account).where(Account.id == account_id).values(owner="B"))
        except Exception as exc:  # the point is which error
            outcome["error"] = exc
        done.set()

    thread = threading.Thread(target=takeover)
    thread.start()
    with pg.write() as session:
        leases.fence(session, "A", account_id)
        fenced.set()
        assert done.wait(10)  # the takeover gave up while the batch transaction was open
    thread.join()
    error = outcome.get("error")
    assert error is not None and "lock" in str(error).lower(), error
    assert owners(pg)[NAMES[0]] == "A"


@pg_only
def test_claim_skips_rows_another_claim_holds(pg: Database) -> None:
    seed(pg)
    with pg.write() as first:
        got = leases.claim(first, "A", NAMES, lease=LEASE, limit=2)
        assert [c.name for c in got] == NAMES[:2]
        other = claim(pg, "B")  # concurrently: A's uncommitted rows are skipped, not waited for
        assert [c.name for c in other] == NAMES[2:]
    assert owners(pg) == {**dict.fromkeys(NAMES[:2], "A"), **dict.fromkeys(NAMES[2:], "B")}


@pg_only
def test_register_closes_only_workers_whose_lease_expired(pg: Database) -> None:
    steps.register(pg, "alive", now=NOW, lease=LEASE, shared=True)
    steps.register(pg, "dead", now=NOW, lease=LEASE, shared=True)
    with pg.write() as session:
        session.execute(update(Worker).where(Worker.id == "dead").values(lease_until=NOW))
    with pg.write() as session:
        found = status_repo.register_worker(
            session, "new", pid=1, host="h", now=NOW, lease=LEASE, shared=True
        )
    assert found == 1
    with pg.read() as session:
        stopped = {wid: at for wid, at in session.execute(select(Worker.id, Worker.stopped_at))}
        live = [w.id for w in leases.live_workers(session, now=leases.database_now(session))]
    assert stopped["dead"] is not None and stopped["alive"] is None
    assert live == ["alive", "new"]


@pg_only
def test_two_workers_rebalance_to_fair_disjoint_shares(pg: Database, tmp_path: Path) -> None:
    config = configured(tmp_path)
    a = ownership.Shares(pg, "A", lease=LEASE)
    b = ownership.Shares(pg, "B", lease=LEASE)
    steps.register(pg, "A", now=NOW, lease=LEASE, shared=True)
    first = a.round(config.accounts)
    assert a.owned == set(NAMES) and len(first.claimed) == 6 and first.live_workers == 1

    steps.register(pg, "B", now=NOW, lease=LEASE, shared=True)
    assert b.round(config.accounts).claimed == ()  # all owned by a live A
    surplus = a.round(config.accounts).surplus  # A now sees two live workers: three are surplus
    assert len(surplus) == 3
    a.release(surplus)
    assert len(b.round(config.accounts).claimed) == 3
    assert a.round(config.accounts) == ownership.Round(owned=a.owned, live_workers=2)  # stable
    assert a.owned.isdisjoint(b.owned) and a.owned | b.owned == set(NAMES)
    assert owners(pg) == {**dict.fromkeys(a.owned, "A"), **dict.fromkeys(b.owned, "B")}

    # B dies: its worker lease and its account leases expire; A takes everything over.
    with pg.write() as session:
        session.execute(update(Worker).where(Worker.id == "B").values(lease_until=NOW))
    b_had = set(b.owned)
    expire(pg, *b_had)
    taken = a.round(config.accounts).claimed
    assert {c.name for c in taken} == b_had and {c.previous for c in taken} == {"B"}
    assert a.owned == set(NAMES)
    back = b.round(config.accounts)  # B was only paused: it learns what it lost and claims nothing
    assert set(back.lost) == b_had and back.claimed == () and b.owned == set()

    a.close()
    with pg.read() as session:
        assert [w.id for w in leases.live_workers(session, now=leases.database_now(session))] == ["B"]
    assert set(owners(pg).values()) <= {None, "B"}
    b.close()  # closes its lease connections too


@pg_only
def test_holding_claims_free_accounts_and_releases_them(pg: Database, tmp_path: Path) -> None:
    config = configured(tmp_path)
    seed(pg)
    claim(pg, "daemon", limit=2)
    with ownership.Holding(pg, "once", config.accounts, lease=LEASE) as held:
        assert held.names == NAMES[2:]
        assert [(s.name, s.owner) for s in held.skipped] == [(n, "daemon") for n in NAMES[:2]]
        assert [a.name for a in held.accounts()] == NAMES[2:]
        assert set(owners(pg).values()) == {"daemon", "once"}
    assert set(owners(pg).values()) == {"daemon", None}


# ------------------------------------------------------------------------- dead workers on this machine


def test_a_dead_local_worker_frees_its_accounts_at_once(pg: Database) -> None:
    dead, live, remote = (
        "here:101:20240403T100000Z",
        "here:102:20240403T100000Z",
        "there:101:20240403T100000Z",
    )
    seed(pg)
    assert len(claim(pg, dead, limit=2)) == 2
    assert len(claim(pg, live, limit=2)) == 2
    assert len(claim(pg, remote, limit=2)) == 2
    with pg.write() as session:
        for worker in (dead, live, remote):
            host, pid = worker.split(":")[:2]
            status_repo.register_worker(
                session, worker, pid=int(pid), host=host, now=NOW, lease=LEASE, shared=True
            )
    checked: list[int] = []

    def alive(pid: int) -> bool:
        checked.append(pid)
        return pid != 101

    with pg.write() as session:
        assert leases.expire_dead(session, "here", alive, me="here:103:20240403T100000Z") == [dead]
    assert sorted(checked) == [101, 102]  # the other host's worker is never judged by a local pid
    with pg.write() as session:
        now = leases.database_now(session)
        assert [w.id for w in leases.live_workers(session, now=now)] == [live, remote]
    taken = claim(pg, "here:103:20240403T100000Z")
    assert [c.previous for c in taken] == [dead, dead]  # the dead worker's two, nobody else's
    assert sorted(o for o in owners(pg).values() if o) == sorted(
        [live] * 2 + [remote] * 2 + ["here:103:20240403T100000Z"] * 2
    )


def test_worker_ids_name_host_and_pid() -> None:
    assert leases.worker_host_pid("box.example:4242:20240403T100000Z") == ("box.example", 4242)
    assert leases.worker_host_pid(steps.worker_id(NOW)) is not None
    assert leases.worker_host_pid("garbage") is None
    assert leases.worker_host_pid("host:notapid:x") is None


def test_a_holding_after_a_killed_one_shot_takes_its_accounts(pg: Database, tmp_path: Path) -> None:
    config = configured(tmp_path)
    ghost = f"{socket.gethostname()}:{2**22 + 12345}:20240403T100000Z"  # above pid_max: no such process
    assert not ownership.pid_alive(2**22 + 12345)
    seed(pg)
    assert len(claim(pg, ghost)) == len(NAMES)
    with ownership.Holding(pg, "me:1:x", config.accounts, lease=LEASE) as holding:
        assert holding.names == NAMES and holding.skipped == []
