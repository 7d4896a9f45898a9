"""The daemon's event loop: account watchers (threads) scan; this loop plans, sends, reloads and stops.

- Plan: after every scan that found new mail, and every ``plan_interval``; in a worker thread (it is database
  work), one at a time.
- Send: every ``send_interval`` and after each plan, with the sender's async entry point; the sender decides
  which drafts are due and inside the send window.
- Health: a heartbeat row every 30 s (``followupd status`` reads it); ``WATCHDOG=1`` to systemd at half its
  interval, from this loop, and only while no account thread or work step is stuck.
- SIGTERM/SIGINT: stop taking work, let an in-flight send finish (at most ``send_grace`` seconds; a second
  signal abandons it at once) and end the send pass before its next draft (``shutdown.SendGate``), stop
  the threads, write the summary. An abandoned send leaves its draft SENDING, which the next start resolves as
  UNKNOWN: a draft is never sent twice.
- SIGHUP: re-read the config; an invalid one is reported and the running config kept. Watchers whose
  account (or the scan/daemon settings) changed are restarted; paused ones retry at once.
- PostgreSQL: several daemons (workers) share the accounts through leases (``ownership``); this one watches,
  plans and sends only for the accounts it owns, and its scans' batches are fenced by the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, cast

from followupd import __version__, instance
from followupd.config import AccountConfig, Config
from followupd.daemon import ownership, reload, steps
from followupd.daemon.shutdown import SendGate, SendStopped, Summary
from followupd.daemon.watcher import STUCK_AFTER, AccountWatcher
from followupd.engine.batch import ScanStats
from followupd.errors import FollowupdError
from followupd.sdnotify import Notifier
from followupd.store import status_repo
from followupd.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonOptions:
    """Timings that are not in the config (the CLI exposes some for tests and operators)."""

    send_interval: float = 60.0
    send_grace: float = 20.0
    stop_timeout: float = 10.0
    heartbeat: float = status_repo.HEARTBEAT_INTERVAL.total_seconds()


class Daemon:
    """``await Daemon(...).run()`` serves until SIGTERM/SIGINT and returns the summary line."""

    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        clock: steps.Clock,
        notifier: Notifier,
        options: DaemonOptions | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.notifier = notifier
        self.options = options or DaemonOptions()
        self.summary = Summary()
        self.started_at = clock()
        self.worker_id = steps.worker_id(self.started_at)
        self._started = time.monotonic()
        self._watchers: dict[str, AccountWatcher] = {}
        self._send: steps.AsyncUnit | None = None
        self._resolve: steps.AsyncUnit | None = None
        self._reason = ""
        self._plan_wanted = True
        self._work_busy_since: float | None = None
        self._reload_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._poke = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._claimed: set[str] = set()
        self.shares = (
            ownership.Shares(db, self.worker_id, lease=config.daemon.lease) if instance.shared(db) else None
        )
        self._keeper = None if self.shares is None else ownership.Keeper(self, self.shares, self._send_lock)

    async def run(self) -> str:
        """Serve until stopped; returns the one-line summary. Raises when the loop itself breaks."""
        self._loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self.request_stop, signum.name)
        self._loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            await self._start()
            work = asyncio.create_task(self._work(), name="followupd-work")
            health = asyncio.create_task(self._health(), name="followupd-health")
            if self._keeper is not None:
                health = asyncio.create_task(ownership.together(health, self._keeper.run(self._stopping)))
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({work, health, stopping}, return_when=asyncio.FIRST_COMPLETED)
            broken = None if self._stopping.is_set() else next(t for t in (work, health) if t.done())
            if broken is not None:
                self._reason = "internal error"
                self.request_stop("internal error")
            await self._shutdown(work, health)
            stopping.cancel()
            if broken is not None:
                broken.result()  # re-raise what ended the loop
            return self.summary.line(self._reason, time.monotonic() - self._started)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self._loop.remove_signal_handler(signum)
            for watcher in self._watchers.values():
                watcher.stop()

    # ---------------------------------------------------------------------------------- start and stop

    async def _start(self) -> None:
        try:
            self._send = steps.send_due_async()
            self._resolve = steps.resolve_unknown_async()
            if self.shares is None:  # several workers: per account, when claimed
                await asyncio.to_thread(steps.recover_sending, self.db)  # SENDING -> UNKNOWN, logged there
        except steps.SenderMissingError as exc:
            log.error("%s", exc)
        lease = self.config.daemon.lease if self.shares is not None else None
        await asyncio.to_thread(
            steps.register, self.db, self.worker_id, now=self.started_at, lease=lease, shared=bool(lease)
        )
        if self._stopping.is_set():  # SIGTERM during start-up
            return
        if self._keeper is not None:
            await self._keeper.round()  # claims this worker's share and starts its watchers
        else:
            for account in self.config.accounts:
                self._start_watcher(self.config, account)
        log.info(
            "followupd %s running: %d account(s), database %s",
            __version__,
            len(self._watchers),
            self.db.safe_url,
        )
        self.notifier.ready(self._status_text())

    def request_stop(self, reason: str) -> None:
        """Stop taking new work (signal handler). A second request abandons an in-flight send."""
        if self._stopping.is_set():
            log.warning("%s again: not waiting for the send in flight", reason)
            self._hurry.set()
            return
        log.info("%s: stopping", reason)
        self._reason = self._reason or reason
        self._stopping.set()
        self._poke.set()
        for watcher in self._watchers.values():
            watcher.stop()
        self.notifier.stopping("stopping")

    async def _shutdown(self, work: asyncio.Task[None], health: asyncio.Task[None]) -> None:
        # The work loop ends by itself after its current step; a send pass ends after the draft in flight
        # (see _SendGate). Wait for that, at most send_grace seconds, or until a second signal.
        hurry = asyncio.create_task(self._hurry.wait())
        done, _ = await asyncio.wait(
            {work, hurry}, timeout=self.options.send_grace, return_when=asyncio.FIRST_COMPLETED
        )
        hurry.cancel()
        if work not in done:
            log.warning(
                "the send in flight did not finish; abandoning it (its draft stays SENDING and is resolved as"
                " UNKNOWN at the next start, never resent blindly)"
            )
            work.cancel()
        health.cancel()
        await asyncio.gather(work, health, hurry, return_exceptions=True)
        if self._reload_task is not None:
            await asyncio.gather(self._reload_task, return_exceptions=True)
        await asyncio.to_thread(self._stop_watchers, list(self._watchers.values()))
        if self._keeper is not None:
            await self._keeper.close()
        self.summary.sent = await asyncio.to_thread(steps.sent_since, self.db, self.started_at)
        line = self.summary.line(self._reason, time.monotonic() - self._started)
        try:
            await asyncio.to_thread(self._write, status_repo.stop_worker, status=line)
        except FollowupdError as exc:
            log.error("cannot record the shutdown: %s", exc)

    def _stop_watchers(self, watchers: list[AccountWatcher]) -> None:
        """Stop and join threads (blocking; run in a worker thread). A thread that does not end is cut off."""
        for watcher in watchers:
            watcher.stop()
        deadline = time.monotonic() + self.options.stop_timeout
        for watcher in watchers:
            if not watcher.join(max(0.0, deadline - time.monotonic())):
                watcher.interrupt()
                if not watcher.join(2.0):
                    log.warning("%s: its thread did not stop; leaving it behind", watcher.name)
                    continue
            watcher.close()

    # ------------------------------------------------------------------------------------ the work loop

    async def _work(self) -> None:
        await self._step(self._resolve_unknown)
        next_plan = next_send = time.monotonic()
        while not self._stopping.is_set():
            if self._claimed:
                await self._step(self._resolve_unknown)
            if self._plan_wanted or time.monotonic() >= next_plan:
                self._plan_wanted = False
                await self._step(self._plan)
                next_plan = time.monotonic() + self.config.daemon.plan_interval.total_seconds()
                next_send = time.monotonic()  # new drafts may be due
            if self._stopping.is_set():
                break
            if time.monotonic() >= next_send:
                await self._step(self._send_due)
                next_send = time.monotonic() + self.options.send_interval
            self._poke.clear()
            delay = min(next_plan, next_send) - time.monotonic()
            if delay > 0 and not self._plan_wanted and not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), delay)

    async def _step(self, unit: Any) -> None:
        """Run one unit of work; its failure is logged and counted, and the loop carries on."""
        self._work_busy_since = time.monotonic()
        try:
            await unit()
        except SendStopped:
            log.info("stopping: no further drafts are sent in this run")
        except FollowupdError as exc:
            self.summary.errors += 1
            log.error("%s failed: %s", unit.__name__.strip("_"), exc)
        except Exception:  # the daemon logs a failed unit and carries on with the next
            self.summary.errors += 1
            log.exception("%s failed with an internal error", unit.__name__.strip("_"))
        finally:
            self._work_busy_since = None
        self.notifier.status(self._status_text())

    async def _plan(self) -> None:
        from followupd.engine.plan import plan_once

        result = await asyncio.to_thread(
            plan_once, self.db, self.config, now=self.clock(), accounts=self._accounts()
        )
        self.summary.plans += 1
        self.summary.queued += len(result.queued)
        self.summary.superseded += result.superseded
        if result.queued or result.superseded:
            log.info("plan: %d draft(s) queued, %d superseded", len(result.queued), result.superseded)

    async def _send_due(self) -> None:
        async with self._send_lock:  # a surplus account is released only between send passes
            await self._send_owned(self._accounts())

    async def _send_owned(self, accounts: list[str] | None) -> None:
        if self._send is None:
            return
        if self.config.send.drafts_folder:
            # A draft the user sent from their mail client must be SENT here before the sender looks at it.
            from followupd.engine.drafts_folder import sync_drafts_folder

            owned = self._owned_config()
            synced = await asyncio.to_thread(sync_drafts_folder, self.db, owned, now=self.clock())
            for account, error in synced.errors.items():
                log.warning("%s: %s; not sending until the Drafts folder can be checked", account, error)
            if synced.errors:
                return
        gate = cast(Database, SendGate(self.db, self._stopping))
        report = await self._send(gate, self.config, now=self.clock(), accounts=accounts)
        sent = await asyncio.to_thread(steps.sent_since, self.db, self.started_at)
        if sent != self.summary.sent:
            log.info("sent %d draft(s) since start", sent)
        self.summary.sent = sent
        self.summary.errors += len(getattr(report, "errors", ()))

    async def _resolve_unknown(self) -> None:
        """Drafts whose send was interrupted: found in Sent -> SENT; otherwise left UNKNOWN for the user."""
        if self._resolve is None:
            return
        accounts = self._accounts()
        if self.shares is not None:  # only the accounts claimed since the last time
            accounts, self._claimed = sorted(self._claimed), set()
            if not accounts:
                return
        for resolution in await self._resolve(self.db, self.config, now=self.clock(), accounts=accounts):
            log.info("draft %s: %s (%s)", resolution.draft_id, resolution.state, resolution.reason)

    # ----------------------------------------------------------------------------------------- health

    async def _health(self) -> None:
        ping = self.notifier.watchdog_interval
        next_beat = next_ping = time.monotonic()
        complained = False
        while True:
            now = time.monotonic()
            if ping is not None and now >= next_ping:
                stuck = self._stuck(now)
                if stuck is None:
                    self.notifier.watchdog()
                    complained = False
                elif not complained:
                    log.error("%s is stuck: no longer feeding the systemd watchdog", stuck)
                    complained = True
                next_ping = now + ping
            if now >= next_beat:
                try:
                    await asyncio.to_thread(self._write, status_repo.heartbeat, status=self._status_text())
                except FollowupdError as exc:
                    log.warning("heartbeat not written: %s", exc)
                next_beat = now + self.options.heartbeat
            wake = min(next_beat, next_ping) if ping is not None else next_beat
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    def _stuck(self, now: float) -> str | None:
        for watcher in self._watchers.values():
            if watcher.stuck(now):
                return f"account {watcher.name}"
        busy = self._work_busy_since
        if busy is not None and now - busy > STUCK_AFTER:
            return "the plan/send loop"
        return None

    def _write(self, action: Any, *, status: str) -> None:
        with self.db.write() as session:
            action(session, self.worker_id, now=self.clock(), status=status)

    def _status_text(self) -> str:
        modes = Counter(w.mode for w in self._watchers.values())
        accounts = ", ".join(f"{n} {mode}" for mode, n in sorted(modes.items())) or "none"
        return (
            f"accounts: {accounts}; {self.summary.messages_new} new message(s),"
            f" {self.summary.queued} draft(s) queued, {self.summary.sent} sent since start"
        )

    # ------------------------------------------------------------------- owned accounts (PostgreSQL)

    def _accounts(self) -> list[str] | None:
        """The accounts this worker plans and sends for: None (all) on SQLite, the owned ones otherwise."""
        return None if self.shares is None else sorted(self.shares.owned)

    def _owned_config(self) -> Config:
        owned = self._accounts()
        if owned is None:
            return self.config
        return replace(self.config, accounts=tuple(a for a in self.config.accounts if a.name in owned))

    def running(self) -> set[str]:
        """Accounts whose watcher thread is alive (ownership.Host)."""
        return {name for name, w in self._watchers.items() if not w.join(0)}

    def start_accounts(self, names: Collection[str]) -> None:
        """Start (or replace an ended) watcher for each owned account (ownership.Host)."""
        if self._stopping.is_set():
            return
        for account in self.config.accounts:
            if account.name in names:
                ended = self._watchers.pop(account.name, None)
                if ended is not None:
                    ended.close()
                self._start_watcher(self.config, account)

    def drop_accounts(self, names: Collection[str]) -> None:
        """Stop these watchers at once; they are joined in the background (ownership.Host)."""
        dropped = [self._watchers.pop(n) for n in names if n in self._watchers]
        for watcher in dropped:
            watcher.stop()
        if dropped:
            asyncio.get_running_loop().run_in_executor(None, self._stop_watchers, dropped)

    async def stop_accounts(self, names: Collection[str]) -> None:
        """Stop these watchers and wait for them (ownership.Host)."""
        stopped = [self._watchers.pop(n) for n in names if n in self._watchers]
        await asyncio.to_thread(self._stop_watchers, stopped)

    def claimed(self, names: Collection[str]) -> None:
        """Newly claimed: settle their UNKNOWN drafts and plan (ownership.Host)."""
        self._claimed |= set(names)
        self._plan_wanted = True
        self._poke.set()

    # ------------------------------------------------------------------------------- watchers' reports

    def _start_watcher(self, config: Config, account: AccountConfig) -> None:
        fence = None if self.shares is None else ownership.make_fence(self.worker_id)
        watcher = AccountWatcher(self.db, config, account, self, clock=self.clock, fence=fence)
        self._watchers[account.name] = watcher
        watcher.start()

    def scanned(self, account: str, stats: ScanStats) -> None:
        """Hook for watcher threads: a scan finished."""
        self._from_thread(self._on_scanned, stats)

    def failed(self, account: str, error: FollowupdError) -> None:
        """Hook for watcher threads: a scan or connection failed."""
        self._from_thread(self._on_failed)

    def _from_thread(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is exiting
            loop.call_soon_threadsafe(callback, *args)

    def _on_scanned(self, stats: ScanStats) -> None:
        self.summary.scans += 1
        self.summary.messages_new += stats.messages_new
        self.summary.contacts_new += stats.contacts_new
        if stats.messages_new and not self._stopping.is_set():
            self._plan_wanted = True
            self._poke.set()
        self.notifier.status(self._status_text())

    def _on_failed(self) -> None:
        self.summary.scan_errors += 1
        self.notifier.status(self._status_text())

    # ----------------------------------------------------------------------------------------- reload

    def request_reload(self) -> None:
        """Re-read the config (SIGHUP handler)."""
        if self._stopping.is_set() or self._loop is None:
            return
        if self._reload_task is not None and not self._reload_task.done():
            log.info("SIGHUP: a reload is already running")
            return
        self._reload_task = self._loop.create_task(reload.reload(self))
