"""The daemon's health in the database: its heartbeat (``workers``), each account's last scan and error, the
draft queue and today's sends. The daemon writes; ``followupd status`` reads, from any process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from followupd.store import leases
from followupd.store.models import Account, Draft, DraftState, Folder, Worker

HEARTBEAT_INTERVAL = timedelta(seconds=30)
"""How often a running daemon writes its heartbeat."""
STALE_AFTER = 3 * HEARTBEAT_INTERVAL
"""A daemon whose heartbeat is older than this (and that never said it stopped) is dead or hung."""
KEEP_STOPPED = timedelta(days=30)
"""Rows of stopped daemons are pruned after this long."""


@dataclass(frozen=True)
class WorkerView:
    """One daemon run (``--json`` field names are these, and stable)."""

    id: str
    pid: int
    host: str
    started_at: datetime
    heartbeat_at: datetime
    status: str
    stopped_at: datetime | None


@dataclass(frozen=True)
class AccountHealth:
    """An account's last successful scan and last error."""

    name: str
    email: str
    last_scan_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None

    @property
    def failing(self) -> bool:
        """True when the last error is newer than the last successful scan."""
        if self.last_error_at is None:
            return False
        return self.last_scan_at is None or self.last_error_at > self.last_scan_at


@dataclass(frozen=True)
class StatusView:
    """Everything ``followupd status`` shows. ``daemon`` is running / stale / stopped / never."""

    daemon: str
    worker: WorkerView | None
    heartbeat_age: timedelta | None
    accounts: tuple[AccountHealth, ...]
    drafts: dict[str, int]
    sent_today: int
    shared: bool = False
    """Several workers may share this (PostgreSQL) database; ``workers`` and ``owners`` are filled."""
    workers: tuple[leases.LiveWorker, ...] = ()
    owners: tuple[leases.AccountLease, ...] = ()


# ------------------------------------------------------------------------------------------------ writing


def register_worker(
    session: Session,
    worker_id: str,
    *,
    pid: int,
    host: str,
    now: datetime,
    lease: timedelta | None = None,
    shared: bool = False,
) -> int:
    """Record a starting daemon. Rows left running by a crashed daemon are closed (the caller holds the
    single-instance lock, so nobody else can be running); old stopped rows are pruned. Returns how many
    crashed runs were found.

    ``shared`` (several workers on PostgreSQL): others may be running, so only the rows whose liveness lease
    expired (database clock) are closed; ``lease`` gives this worker one (None: a one-shot command, which is
    not counted among the live workers)."""
    crashed: ColumnElement[bool] = Worker.stopped_at.is_(None)
    lease_until = None
    if shared:
        db_now = leases.database_now(session)
        crashed = and_(crashed, Worker.lease_until.is_not(None), Worker.lease_until <= db_now)
        lease_until = db_now + lease if lease is not None else None
    open_ids = list(session.scalars(select(Worker.id).where(crashed)))
    if open_ids:
        session.execute(
            update(Worker)
            .where(Worker.id.in_(open_ids))
            .values(stopped_at=Worker.heartbeat_at, status="ended without stopping (crash or kill)")
        )
    session.execute(delete(Worker).where(Worker.stopped_at < now - KEEP_STOPPED))
    session.add(
        Worker(
            id=worker_id,
            pid=pid,
            host=host,
            started_at=now,
            heartbeat_at=now,
            status="starting",
            lease_until=lease_until,
        )
    )
    return len(open_ids)


def heartbeat(session: Session, worker_id: str, *, now: datetime, status: str) -> None:
    """The daemon is alive and doing ``status``."""
    session.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now, status=status))


def stop_worker(session: Session, worker_id: str, *, now: datetime, status: str) -> None:
    """The daemon stopped cleanly; ``status`` is its summary line."""
    session.execute(
        update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now, stopped_at=now, status=status)
    )


def record_scan(session: Session, account: str, *, now: datetime, error: str | None = None) -> None:
    """A scan of ``account`` finished (``error`` None) or failed (the error is kept for ``status``)."""
    values: dict[str, object] = (
        {"last_error": error[:2000], "last_error_at": now} if error else {"last_scan_at": now}
    )
    session.execute(update(Account).where(Account.name == account).values(**values))


# ------------------------------------------------------------------------------------------------ reading


def folder_uidnext(session: Session, account: str, folder: str) -> int | None:
    """The UIDNEXT stored by the last scan of ``folder`` (None when never scanned)."""
    return session.scalar(
        select(Folder.uidnext)
        .join(Account, Account.id == Folder.account_id)
        .where(Account.name == account, Folder.name == folder)
    )


def sent_since(session: Session, since: datetime) -> int:
    """How many drafts were sent at or after ``since``."""
    count = session.scalar(
        select(func.count()).select_from(Draft).where(Draft.state == DraftState.SENT, Draft.sent_at >= since)
    )
    return int(count or 0)


def sending_count(session: Session) -> int:
    """Drafts in SENDING: claimed by a sender whose outcome is not recorded yet."""
    count = session.scalar(select(func.count()).select_from(Draft).where(Draft.state == DraftState.SENDING))
    return int(count or 0)


def draft_counts(session: Session) -> dict[str, int]:
    """Drafts by state; every state is present (0 when none)."""
    counts = {state.value: 0 for state in DraftState}
    for state, count in session.execute(select(Draft.state, func.count()).group_by(Draft.state)):
        counts[str(state)] = int(count)
    return counts


def latest_worker(session: Session) -> WorkerView | None:
    """The most recently started daemon run."""
    query = select(Worker).order_by(Worker.started_at.desc(), Worker.id.desc()).limit(1)
    row = session.scalars(query).first()
    if row is None:
        return None
    return WorkerView(
        row.id, row.pid, row.host, row.started_at, row.heartbeat_at, row.status or "", row.stopped_at
    )


def account_health(session: Session) -> list[AccountHealth]:
    """Every account in the database, by name."""
    rows = session.scalars(select(Account).order_by(Account.name)).all()
    return [AccountHealth(a.name, a.email, a.last_scan_at, a.last_error, a.last_error_at) for a in rows]


def read_status(session: Session, *, now: datetime, day_start: datetime, shared: bool = False) -> StatusView:
    """The whole health picture at ``now``; "today" begins at ``day_start`` (the user's midnight).

    ``shared``: also the live workers and every account's owner and lease (judged by the database clock)."""
    db_now = leases.database_now(session) if shared else None
    worker = latest_worker(session)
    age = now - worker.heartbeat_at if worker is not None else None
    if worker is None:
        state = "never"
    elif worker.stopped_at is not None:
        state = "stopped"
    elif age is not None and age > STALE_AFTER:
        state = "stale"
    else:
        state = "running"
    return StatusView(
        daemon=state,
        worker=worker,
        heartbeat_age=age,
        accounts=tuple(account_health(session)),
        drafts=draft_counts(session),
        sent_today=sent_since(session, day_start),
        shared=shared,
        workers=tuple(leases.live_workers(session, now=db_now)) if db_now else (),
        owners=tuple(leases.account_leases(session, now=db_now)) if db_now else (),
    )
