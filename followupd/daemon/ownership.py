"""Several workers on one PostgreSQL database: which worker scans, plans and sends for which account.

SQLite keeps one daemon per database (``followupd.instance``). On PostgreSQL every ``followupd run`` is a
*worker* that owns some of the configured accounts through leases (``followupd.store.leases``), all in the
database's clock:

- A round (:meth:`Shares.round`, every third of ``[daemon] lease``) renews the worker's own liveness lease
  and the leases of its accounts, counts the live workers, and works out this worker's fair share (at most
  ``ceil(accounts / live workers)``, the shares adding up to the number of accounts). Below it, the worker
  claims free or expired accounts; above it, it gives the surplus back (the daemon stops those watchers
  first). An account whose row names someone else was taken over: its watcher is stopped at once.
- A newly claimed account may have been left mid-send by a dead worker: its SENDING drafts become UNKNOWN
  and are looked for in Sent, for that account only.
- :class:`Holding` is the one-shot version for ``run --once`` and ``send``: claim the free accounts, keep
  their leases renewed from a thread while the command works, release them at the end. One-shot commands
  have no liveness lease, so the daemons do not shrink their shares for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from sqlalchemy.orm import Session

from followupd.config import AccountConfig, Config
from followupd.daemon import steps
from followupd.engine.batch import Fence
from followupd.errors import FollowupdError
from followupd.store import leases
from followupd.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Round:
    """What one round decided: accounts newly claimed, lost to a takeover, and to be given back."""

    claimed: tuple[leases.Claimed, ...] = ()
    lost: tuple[str, ...] = ()
    surplus: tuple[str, ...] = ()
    owned: frozenset[str] = field(default_factory=frozenset)
    live_workers: int = 1


def make_fence(worker_id: str) -> Fence:
    """The batch writer's fence for ``worker_id`` (see ``followupd.engine.batch``)."""

    def fence(session: Session, account_id: int) -> None:
        leases.fence(session, worker_id, account_id)

    return fence


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (signal 0: nothing is sent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def free_dead_workers(db: Database, worker_id: str) -> None:
    """Workers on this machine whose process is gone give up their accounts now, not when their lease ends:
    a daemon that systemd restarts after a crash carries on at once instead of waiting up to a lease."""
    with db.write() as session:
        dead = leases.expire_dead(session, socket.gethostname(), pid_alive, me=worker_id)
    for gone in dead:
        log.info("worker %s on this machine is gone: its accounts are free now", gone)


class Shares:
    """A daemon's accounts on a shared database. Blocking: call from a worker thread."""

    def __init__(self, db: Database, worker_id: str, *, lease: timedelta) -> None:
        self.db = db
        # Its own connection pool: with dozens of account threads writing batches, a renewal waiting for a
        # pooled connection (up to the pool's 30 s timeout) would let the lease run out under load.
        self._lease_db = Database(db.url)
        self.worker_id = worker_id
        self.lease = lease
        self.owned: frozenset[str] = frozenset()
        self._ensured: frozenset[str] = frozenset()
        self._lock = threading.Lock()  # a round and a release never interleave

    @property
    def interval(self) -> float:
        """Seconds between rounds: a third of the lease, so two renewals can fail before it expires."""
        return self.lease.total_seconds() / 3

    def round(self, configured: Sequence[AccountConfig]) -> Round:
        """Renew, then claim up to the fair share or name the surplus to give back (see the module doc)."""
        with self._lock:
            return self._round(configured)

    def _round(self, configured: Sequence[AccountConfig]) -> Round:
        names = {a.name for a in configured}
        if names - self._ensured:
            with self._lease_db.write() as session:
                leases.ensure_accounts(session, [(a.name, a.email) for a in configured])
            self._ensured = frozenset(names)
        free_dead_workers(self._lease_db, self.worker_id)
        with self._lease_db.write() as session:
            now = leases.renew_worker(session, self.worker_id, lease=self.lease)
            mine = set(leases.renew(session, self.worker_id, lease=self.lease))
            live = [w.id for w in leases.live_workers(session, now=now)]
        lost = sorted(self.owned - mine)
        share = leases.fair_share(len(names), live, self.worker_id)
        kept = sorted(mine & names)
        surplus = sorted(mine - names) + kept[share:]
        claimed: list[leases.Claimed] = []
        if len(kept) < share:
            with self._lease_db.write() as session:
                claimed = leases.claim(
                    session, self.worker_id, sorted(names), lease=self.lease, limit=share - len(kept)
                )
        self.owned = frozenset(mine | {c.name for c in claimed})
        for name in lost:
            log.warning("%s: lease lost to another worker; stopped scanning and sending for it", name)
        for item in claimed:
            taken = f" (taken over from {item.previous}, whose lease had ended)" if item.previous else ""
            log.info("%s: claimed%s", item.name, taken)
        return Round(tuple(claimed), tuple(lost), tuple(surplus), self.owned, max(1, len(set(live))))

    def release(self, names: Collection[str]) -> None:
        """Give ``names`` back (their watchers have stopped)."""
        with self._lock, self._lease_db.write() as session:
            released = leases.release(session, self.worker_id, names)
            self.owned = self.owned - set(names)
        if released:
            log.info("released %s to other workers", ", ".join(released))

    def close(self) -> None:
        """The worker stops: release every account and end its liveness lease."""
        try:
            with self._lock, self._lease_db.write() as session:
                leases.release(session, self.worker_id)
                leases.end_worker(session, self.worker_id)
            self.owned = frozenset()
        finally:
            self._lease_db.dispose()


class Holding:
    """Accounts claimed by a one-shot command for its duration; a context manager.

    On entry every free account of ``configured`` is claimed (``names``); the others are in ``skipped`` with
    their owner. A thread renews the leases every third of ``lease`` until exit, which releases them.
    """

    def __init__(
        self, db: Database, worker_id: str, configured: Sequence[AccountConfig], *, lease: timedelta
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.configured = tuple(configured)
        self.lease = lease
        self.names: list[str] = []
        self.skipped: list[leases.AccountLease] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="followupd-leases", daemon=True)

    def __enter__(self) -> Self:
        wanted = [a.name for a in self.configured]
        with self.db.write() as session:
            leases.ensure_accounts(session, [(a.name, a.email) for a in self.configured])
        free_dead_workers(self.db, self.worker_id)
        with self.db.write() as session:
            claimed = leases.claim(session, self.worker_id, wanted, lease=self.lease)
        self.names = [n for n in wanted if n in {c.name for c in claimed}]
        with self.db.read() as session:
            now = leases.database_now(session)
            held = set(self.names)
            self.skipped = [
                item
                for item in leases.account_leases(session, now=now)
                if item.name in wanted and item.name not in held
            ]
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join(10.0)
        try:
            with self.db.write() as session:
                leases.release(session, self.worker_id)
        except FollowupdError as error:  # the leases expire by themselves
            log.warning("could not release the accounts: %s", error)

    def accounts(self) -> list[AccountConfig]:
        """The configured accounts this command holds."""
        return [a for a in self.configured if a.name in self.names]

    def _renew(self) -> None:
        while not self._done.wait(self.lease.total_seconds() / 3):
            try:
                with self.db.write() as session:
                    kept = set(leases.renew(session, self.worker_id, lease=self.lease))
            except FollowupdError as error:
                log.warning("could not renew the account leases: %s", error)
                continue
            for name in sorted(set(self.names) - kept):
                log.warning("%s: lease lost to another worker; its batches are refused from now on", name)
            self.names = [n for n in self.names if n in kept]


async def together(health: asyncio.Task[None], rounds: Coroutine[Any, Any, None]) -> None:
    """A task and the lease rounds as one: either ending (or failing) ends both."""
    task = asyncio.create_task(rounds, name="followupd-leases")
    try:
        done, _ = await asyncio.wait({health, task}, return_when=asyncio.FIRST_COMPLETED)
        for finished in done:
            finished.result()
    finally:
        health.cancel()
        task.cancel()
        await asyncio.gather(health, task, return_exceptions=True)


class Host(Protocol):
    """What :class:`Keeper` needs of the daemon (called on the event loop)."""

    config: Config

    def running(self) -> set[str]:
        """Accounts whose watcher thread is alive."""
        ...

    def start_accounts(self, names: Collection[str]) -> None:
        """Start watchers for these (configured, owned) accounts."""
        ...

    def drop_accounts(self, names: Collection[str]) -> None:
        """Ask these watchers to stop now, without waiting (their lease is lost)."""
        ...

    async def stop_accounts(self, names: Collection[str]) -> None:
        """Stop these watchers and wait until they ended."""
        ...

    def claimed(self, names: Collection[str]) -> None:
        """These accounts were just claimed: settle their interrupted sends and plan soon."""
        ...


class Keeper:
    """The daemon's side of :class:`Shares`: a round every third of the lease, applied to the watchers.

    Surplus accounts are given back by a task of their own (stop the watchers, then wait for the send in
    flight to end under ``send_lock``, then release), so a slow watcher never delays a renewal.
    """

    def __init__(self, host: Host, shares: Shares, send_lock: asyncio.Lock) -> None:
        self.host = host
        self.shares = shares
        self.send_lock = send_lock
        self._giving_back: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Rounds until ``stopping`` is set (the first one is :meth:`round`, awaited by the start-up)."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.shares.interval)
            if not stopping.is_set():
                await self.round()

    async def round(self) -> None:
        """One round; a database failure is logged and the next round tries again."""
        try:
            result = await asyncio.to_thread(self.shares.round, self.host.config.accounts)
        except FollowupdError as exc:
            log.warning("lease round failed (retrying in %.0f s): %s", self.shares.interval, exc)
            return
        if result.lost:
            self.host.drop_accounts(result.lost)
        surplus = set(result.surplus) - self._giving_back
        if surplus:
            self._giving_back |= surplus
            task = asyncio.create_task(self._give_back(sorted(surplus)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        names = [c.name for c in result.claimed]
        if names:
            try:
                recovered = await asyncio.to_thread(steps.recover_sending, self.shares.db, names)
            except steps.SenderMissingError:
                recovered = []
            except FollowupdError as exc:
                log.error("cannot settle the interrupted sends of %s: %s", ", ".join(names), exc)
                recovered = []
            if recovered:
                log.warning("%d draft(s) left SENDING are now UNKNOWN: %s", len(recovered), ", ".join(names))
            self.host.claimed(names)
        configured = {a.name for a in self.host.config.accounts}
        wanted = (self.shares.owned & configured) - self._giving_back - set(result.lost)
        missing = wanted - self.host.running()
        if missing:
            self.host.start_accounts(sorted(missing))

    async def close(self) -> None:
        """Wait for give-backs in progress, then release everything and end the liveness lease."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.to_thread(self.shares.close)
        except FollowupdError as exc:  # the leases expire by themselves
            log.error("cannot release the accounts: %s", exc)

    async def _give_back(self, names: list[str]) -> None:
        try:
            await self.host.stop_accounts(names)
            async with self.send_lock:
                await asyncio.to_thread(self.shares.release, names)
        except FollowupdError as exc:
            log.warning("cannot release %s yet: %s", ", ".join(names), exc)
        finally:
            self._giving_back -= set(names)
