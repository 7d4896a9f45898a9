"""Per-account leases: which worker scans, plans and sends for an account, until when.

Several ``followupd run`` workers may share one PostgreSQL database. Each account row has an ``owner`` (a
worker id, see ``followupd.daemon.steps.worker_id``) and a ``lease_until``; each worker row has its own
``lease_until`` (it is alive until then). All times come from the DATABASE clock (:func:`database_now`), never
from a worker's, so workers on machines with skewed clocks agree on who owns what.

- :func:`claim` takes free accounts (no owner, or an expired lease) with ``SELECT ... FOR UPDATE SKIP LOCKED``
  then one UPDATE: two workers claiming at once never take the same account.
- :func:`renew` extends the leases of the accounts a worker still owns; an account whose row names another
  owner was taken over (the lease had expired) and is lost.
- :func:`fence` is the check a write transaction runs first: it row-locks the account row only if this worker
  still owns it with an unexpired lease, so a takeover (which must lock the same row) cannot interleave with
  the commit; otherwise it raises :class:`~followupd.errors.LeaseLostError` and nothing is written.

SQLite has a single daemon (``followupd.instance``) and never uses these, except that the functions work there
too (``database_now`` reads the local clock), which keeps the unit tests cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from followupd.errors import LeaseLostError
from followupd.store.models import Account, Worker


@dataclass(frozen=True)
class Claimed:
    """An account newly taken by a worker; ``previous`` is the owner whose lease had expired (None: free)."""

    name: str
    previous: str | None


@dataclass(frozen=True)
class AccountLease:
    """Who owns an account and until when (``--json`` field names are these, and stable)."""

    name: str
    owner: str | None
    lease_until: datetime | None
    expired: bool


@dataclass(frozen=True)
class LiveWorker:
    """A worker whose own lease has not expired."""

    id: str
    pid: int
    host: str
    started_at: datetime
    lease_until: datetime


def database_now(session: Session) -> datetime:
    """The database's clock (``now()`` on PostgreSQL: the start of the current transaction); aware UTC."""
    if session.get_bind().dialect.name == "postgresql":
        value = session.execute(text("SELECT now()")).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


def ensure_accounts(session: Session, accounts: Iterable[tuple[str, str]]) -> None:
    """Create the rows of configured accounts ``(name, email)`` that do not exist yet (concurrency-safe)."""
    rows = [{"name": name, "email": email} for name, email in accounts]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(Account).values(rows).on_conflict_do_nothing(index_elements=["name"]))


# ------------------------------------------------------------------------------------------ the worker


def renew_worker(session: Session, worker_id: str, *, lease: timedelta) -> datetime:
    """Extend this worker's liveness lease to database now + ``lease``; returns database now."""
    now = database_now(session)
    session.execute(update(Worker).where(Worker.id == worker_id).values(lease_until=now + lease))
    return now


def end_worker(session: Session, worker_id: str) -> None:
    """This worker is going away: it no longer counts as alive (its accounts are released separately)."""
    session.execute(update(Worker).where(Worker.id == worker_id).values(lease_until=None))


def live_workers(session: Session, *, now: datetime) -> list[LiveWorker]:
    """Workers whose lease runs past ``now`` (database time), by id."""
    rows = session.scalars(
        select(Worker).where(Worker.lease_until > now, Worker.stopped_at.is_(None)).order_by(Worker.id)
    ).all()
    return [
        LiveWorker(w.id, w.pid, w.host, w.started_at, w.lease_until)
        for w in rows
        if w.lease_until is not None
    ]


# --------------------------------------------------------------------------------------- the accounts


def _free(now: datetime, worker_id: str) -> ColumnElement[bool]:
    """No owner, or another worker's expired lease."""
    expired = or_(Account.lease_until.is_(None), Account.lease_until <= now)
    return or_(Account.owner.is_(None), and_(Account.owner != worker_id, expired))


def claim(
    session: Session, worker_id: str, names: Collection[str], *, lease: timedelta, limit: int | None = None
) -> list[Claimed]:
    """Take at most ``limit`` of the accounts ``names`` that are free (no owner or an expired lease).

    Rows another transaction is claiming right now are skipped (``SKIP LOCKED``), never waited for.
    """
    if not names or (limit is not None and limit <= 0):
        return []
    now = database_now(session)
    query = (
        select(Account.id, Account.name, Account.owner)
        .where(Account.name.in_(list(names)), _free(now, worker_id))
        .order_by(Account.name)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Account)
    rows = session.execute(query).all()
    if not rows:
        return []
    session.execute(
        update(Account)
        .where(Account.id.in_([r.id for r in rows]))
        .values(owner=worker_id, lease_until=now + lease)
    )
    return [Claimed(r.name, r.owner) for r in rows]


def renew(session: Session, worker_id: str, *, lease: timedelta) -> list[str]:
    """Extend the lease of every account this worker still owns; returns their names.

    An owned account whose lease expired is renewed too as long as nobody took it over: the row still names
    this worker, so no one else scanned it meanwhile (its batches were refused by :func:`fence` though).
    """
    now = database_now(session)
    result = session.execute(
        update(Account)
        .where(Account.owner == worker_id)
        .values(lease_until=now + lease)
        .returning(Account.name)
    )
    return sorted(result.scalars())


def release(session: Session, worker_id: str, names: Collection[str] | None = None) -> list[str]:
    """Give up the accounts ``names`` (None: all) this worker owns; returns the names released."""
    condition = Account.owner == worker_id
    if names is not None:
        condition = and_(condition, Account.name.in_(list(names)))
    result = session.execute(
        update(Account).where(condition).values(owner=None, lease_until=None).returning(Account.name)
    )
    return sorted(result.scalars())


def fence(session: Session, worker_id: str, account_id: int) -> None:
    """Inside a write transaction: go on only if ``worker_id`` owns the account with an unexpired lease.

    The no-op UPDATE locks the account row until the transaction ends, so a takeover (an UPDATE of the same
    row) waits for this commit, and this commit cannot follow a takeover. Raises LeaseLostError otherwise.
    """
    now = database_now(session)
    found = session.execute(
        update(Account)
        .where(Account.id == account_id, Account.owner == worker_id, Account.lease_until > now)
        .values(lease_until=Account.lease_until)
        .returning(Account.id)
    ).first()
    if found is None:
        name = session.scalar(select(Account.name).where(Account.id == account_id)) or f"#{account_id}"
        raise LeaseLostError(
            f"{name}: this worker ({worker_id}) no longer owns the account; nothing was written",
            hint="Another worker took it over after this one's lease expired; it carries on from there.",
        )


def worker_host_pid(worker_id: str) -> tuple[str, int] | None:
    """The host and pid in a worker id (``host:pid:start``, see ``followupd.daemon.steps.worker_id``)."""
    parts = worker_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def expire_dead(session: Session, host: str, alive: Callable[[int], bool], *, me: str) -> list[str]:
    """End now the leases of workers on ``host`` whose process is gone; returns their ids.

    A worker killed on this machine (SIGKILL, OOM, a crash that systemd restarts) would otherwise hold its
    accounts until its lease runs out. Only this host's workers can be checked (``alive(pid)``, by the caller:
    this module does no process I/O), and only a pid that does not exist counts as dead, so a live worker is
    never robbed; a fenced batch would refuse a wrong takeover anyway.
    """
    now = database_now(session)
    owners = {
        owner
        for owner in session.scalars(select(Account.owner).where(Account.lease_until > now))
        if owner is not None
    }
    owners |= set(
        session.scalars(select(Worker.id).where(Worker.lease_until > now, Worker.stopped_at.is_(None)))
    )
    dead: list[str] = []
    for worker_id in sorted(owners - {me}):
        located = worker_host_pid(worker_id)
        if located is not None and located[0] == host and not alive(located[1]):
            dead.append(worker_id)
    if dead:
        session.execute(update(Account).where(Account.owner.in_(dead)).values(lease_until=now))
        session.execute(
            update(Worker)
            .where(Worker.id.in_(dead), Worker.stopped_at.is_(None))
            .values(lease_until=now, stopped_at=now, status="gone (its process no longer exists)")
        )
    return dead


def owned(session: Session, worker_id: str) -> list[str]:
    """The names of the accounts whose row names ``worker_id`` as owner (lease expired or not)."""
    return sorted(session.scalars(select(Account.name).where(Account.owner == worker_id)))


def account_leases(session: Session, *, now: datetime) -> list[AccountLease]:
    """Every account's owner and lease (``expired`` relative to ``now``, database time), by name."""
    rows = session.execute(select(Account.name, Account.owner, Account.lease_until).order_by(Account.name))
    return [
        AccountLease(name, owner, until, owner is not None and (until is None or until <= now))
        for name, owner, until in rows
    ]


def fair_share(total: int, workers: list[str], me: str) -> int:
    """How many of ``total`` accounts worker ``me`` should own when ``workers`` (sorted ids) are alive.

    At most ``ceil(total / len(workers))``; the remainder goes to the first workers by id, so the shares add
    up to ``total`` exactly and a worker started later always gets some (6 accounts, 4 workers: 2, 2, 1, 1).
    """
    live = sorted(set(workers) | {me})
    base, extra = divmod(total, len(live))
    return base + (1 if live.index(me) < extra else 0)
