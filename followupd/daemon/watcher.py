"""One thread per account keeps its mail scanned, so one slow or failing account never stops the others.

IMAP with IDLE: connect, catch up fully (every folder), then IDLE on the primary folder (INBOX; All Mail on
Gmail, where INBOX mail is scanned through All Mail). New mail (EXISTS) scans that folder at once; every
``poll_interval`` all folders are scanned; IDLE is re-issued every ``idle_renew`` (at most 10 minutes). Any
connection problem ends the session: reconnect with exponential backoff and jitter, and catch up fully again.
IMAP without IDLE and local Maildir/mbox accounts are polled every ``poll_interval``. A refused login (or a
refusal to log in without TLS) is not retried for an hour, or until the config is reloaded: hammering a
server with a wrong password gets accounts locked. A secret that cannot be read (a locked password store)
backs off like a network error, so unlocking it is noticed within minutes.

imapclient is blocking, so all of this runs in the account's own thread. The daemon talks to it only through
:meth:`AccountWatcher.stop`, :meth:`~AccountWatcher.retry_now` and the thread-safe ``hooks``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from followupd import secrets
from followupd.config import AccountConfig, Config
from followupd.daemon.steps import Clock
from followupd.engine.batch import BatchWriter, Fence, ScanStats, admission_policy, fenced, start_account
from followupd.errors import (
    AuthenticationError,
    FollowupdError,
    InsecureTransportError,
    LeaseLostError,
    MailError,
)
from followupd.mail.idle import IdleEvent, Idler, Waker, drop_connection, guard
from followupd.mail.imap import ImapSession
from followupd.mail.source import FolderInfo
from followupd.store import status_repo
from followupd.store.db import Database

log = logging.getLogger(__name__)

MAX_IDLE = 600.0
"""RFC 2177: re-issue IDLE at least every 29 minutes; many NATs and servers want 10."""
MAX_CALL = 30.0
"""The longest a SELECT/IDLE/DONE/LOGOUT may take before the watchdog drops the connection."""
AUTH_PAUSE = 3600.0
BACKOFF_CAP = 300.0
MAX_RESCANS_BEFORE_IDLE = 5
"""How often in a row the watcher scans INBOX again because mail arrived since its last scan, before IDLE."""
SETTLE_CHECK = 2.0
"""Seconds of the first IDLE after a scan, before UIDNEXT is compared again (mail between SELECT and IDLE)."""
STUCK_AFTER = 900.0
"""A step that has shown no progress for this long is stuck: the systemd watchdog is no longer fed."""


class Hooks(Protocol):
    """How a watcher reports to the daemon. Called from the watcher's thread; must be thread-safe."""

    def scanned(self, account: str, stats: ScanStats) -> None: ...

    def failed(self, account: str, error: FollowupdError) -> None: ...


@dataclass(frozen=True)
class Timing:
    """The watcher's intervals, in seconds."""

    poll_interval: float
    idle_renew: float
    call_bound: float
    """Watchdog bound of one IDLE-related call (SELECT, IDLE, DONE, LOGOUT)."""

    @classmethod
    def of(cls, config: Config, account: AccountConfig) -> Timing:
        daemon = config.daemon
        timeout = account.imap.timeout.total_seconds() if account.imap is not None else 60.0
        return cls(
            poll_interval=max(1.0, daemon.poll_interval.total_seconds()),
            idle_renew=min(MAX_IDLE, max(1.0, daemon.idle_renew.total_seconds())),
            call_bound=min(MAX_CALL, max(5.0, timeout)),
        )


class _Stopped(Exception):  # noqa: N818 — a signal to unwind, not an error
    """The watcher was asked to stop; unwinds a scan between batches."""


class AccountWatcher:
    """The thread that keeps one account scanned. ``mode`` says what it is doing (for status lines)."""

    def __init__(
        self,
        db: Database,
        config: Config,
        account: AccountConfig,
        hooks: Hooks,
        *,
        clock: Clock,
        fence: Fence | None = None,
    ):
        self.name = account.name
        self.account = account
        self.config = config
        self.timing = Timing.of(config, account)
        self.mode = "starting"
        self._db = db
        self._hooks = hooks
        self._clock = clock
        self._stop = threading.Event()
        self._waker = Waker()
        self._busy_since: float | None = time.monotonic()
        self._client: Any = None
        self._failures = 0
        self._writer: BatchWriter | None = None
        self._fence = fence
        self._thread = threading.Thread(target=self._run, name=f"followupd-{self.name}", daemon=True)

    # ------------------------------------------------------------------------------ control (any thread)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish: a wait ends at once, a scan at its next batch."""
        self._stop.set()
        self._waker.wake()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def interrupt(self) -> None:
        """Drop the IMAP connection under a thread that does not stop (it then fails and ends)."""
        client = self._client
        if client is not None:
            drop_connection(client)

    def retry_now(self) -> None:
        """End a backoff or authentication pause early (after a config reload)."""
        if self.mode in ("backoff", "login refused"):
            self._waker.wake()

    def stuck(self, now: float) -> bool:
        """True when the current step has made no progress for STUCK_AFTER seconds."""
        since = self._busy_since
        return since is not None and now - since > STUCK_AFTER

    def close(self) -> None:
        """Release the wake pipe (after the thread ended)."""
        if not self._thread.is_alive():
            self._waker.close()

    # ------------------------------------------------------------------------------------ the thread

    def _run(self) -> None:
        fence = fenced(self._fence) if self._fence is not None else contextlib.nullcontext()
        with contextlib.suppress(_Stopped), fence:
            while not self._stop.is_set():
                self._guarded_cycle()
        if self.mode != "lease lost":
            self.mode = "stopped"
        self._busy_since = None

    def _guarded_cycle(self) -> None:
        try:
            self._cycle()
        except (AuthenticationError, InsecureTransportError) as exc:
            self._fail(exc)
            self.mode = "login refused"
            log.error(
                "%s: not retrying for %.0f minutes (or until the config is reloaded)",
                self.name,
                AUTH_PAUSE / 60,
            )
            self._pause(AUTH_PAUSE)
        except LeaseLostError as exc:
            # Another worker owns the account now (or will): end the thread; the daemon's next lease round
            # starts a new one if the lease turns out to be still ours.
            log.warning("%s", exc.message)
            self.mode = "lease lost"
            self._stop.set()
        except FollowupdError as exc:
            self._fail(exc)
            self._backoff()
        except _Stopped:
            raise
        except Exception as exc:  # a bug must not silently end the account's thread
            log.exception("%s: unexpected error", self.name)
            self._fail(FollowupdError(f"internal error: {type(exc).__name__}: {exc}"))
            self._backoff()

    def _cycle(self) -> None:
        self._busy()
        if self._writer is None:
            account_id = start_account(self._db, self.account)
            self._writer = BatchWriter(
                self._db, account_id, self.account.addresses, admission_policy(self.config)
            )
        if self.account.imap is None:
            self._scan_local()
            self.mode = "polling"
            self._pause(self.timing.poll_interval)
            return
        if not self._serve_imap():
            self.mode = "polling"
            self._pause(self.timing.poll_interval)

    def _scan_local(self) -> None:
        from followupd.engine.scan import scan_account

        self.mode = "scanning"
        stats = scan_account(
            self._db, self.config, self.account, now=self._clock(), progress=self._progress, sleep=self._pause
        )
        self._scanned(stats)

    def _serve_imap(self) -> bool:
        """One IMAP session: catch up, then IDLE until something breaks. False when the server has no IDLE."""
        imap = self.account.imap
        assert imap is not None
        self.mode = "connecting"
        password = secrets.resolve(imap, what=f"accounts[{self.name}].imap")
        with ImapSession(imap, password) as session:
            self._client = session.client
            try:
                folders = session.folders(imap.folders)
                self._scan_imap(session, folders)  # a full catch-up after every (re)connect
                self._failures = 0
                primary = next((f for f in folders if f.role in ("inbox", "all")), None)
                if not session.info.has_idle or primary is None:
                    return False
                self._idle(session, primary, folders)
            finally:
                self._client = None
                self._logout(session)
        return True

    def _idle(self, session: ImapSession, primary: FolderInfo, folders: list[FolderInfo]) -> None:
        idler = Idler(session.client, bound=self.timing.call_bound)
        try:
            self._idle_loop(session, idler, primary, folders)
        finally:
            if idler.idling:  # leave IDLE so that LOGOUT is understood (fails fast on a dead connection)
                with contextlib.suppress(MailError):
                    idler.done()

    def _idle_loop(
        self, session: ImapSession, idler: Idler, primary: FolderInfo, folders: list[FolderInfo]
    ) -> None:
        next_poll = time.monotonic() + self.timing.poll_interval
        rescans = 0
        announced = False
        settle = True  # the first IDLE after a SELECT ends soon, to compare UIDNEXT again (see below)
        while True:
            self._busy()
            stored = self._stored_uidnext(primary.name)
            uidnext = idler.start(primary.name)
            # Mail that arrived between the last scan and this SELECT raises no IDLE notification: scan
            # again, and check again after that scan (mail keeps arriving during scans). Bounded, so a server
            # whose UIDNEXT never settles still gets its IDLE; the next poll catches anything left.
            if rescans < MAX_RESCANS_BEFORE_IDLE and uidnext is not None and uidnext != stored:
                idler.done()
                self._scan_imap(session, [primary])
                rescans += 1
                continue
            rescans = 0
            if not announced:  # once per connection, when IDLE is really on
                log.info("%s: watching %s with IDLE", self.name, primary.name)
                announced = True
            self.mode = "idle"
            self._busy_since = None
            # Mail that lands between the SELECT and the start of IDLE is not reported either (Dovecot only
            # finds it at its periodic check, 30 s by default): after a scan, the first IDLE is short and the
            # loop compares UIDNEXT again. Cheap (one EXAMINE), and only after mail came in.
            span = SETTLE_CHECK if settle else self.timing.idle_renew
            settle = False
            wake_at = min(time.monotonic() + span, next_poll)
            event = idler.wait(max(0.0, wake_at - time.monotonic()), self._waker)
            self._busy()
            idler.done()
            if self._stop.is_set():
                raise _Stopped
            if time.monotonic() >= next_poll:
                self._scan_imap(session, folders)
                next_poll = time.monotonic() + self.timing.poll_interval
                settle = True
            elif event is IdleEvent.NEW_MAIL:
                self._scan_imap(session, [primary])
                settle = True

    def _scan_imap(self, session: ImapSession, folders: list[FolderInfo]) -> None:
        from followupd.engine.scan_imap import scan_folder

        imap = self.account.imap
        assert imap is not None
        assert self._writer is not None
        self.mode = "scanning"
        self._busy()
        stats = ScanStats(self.name)
        now = self._clock()
        # Sent first: the user's own mail is what admits people (as scan_imap does).
        for folder in sorted(folders, key=lambda f: f.role != "sent"):
            scan_folder(
                self._db,
                session,
                self._writer,
                folder,
                stats,
                now=now,
                batch_size=imap.batch_size,
                progress=self._progress,
                meetings=self.config.scan.meetings,
            )
        if self.config.scan.meetings:
            from followupd.engine import meetings_scan

            meetings_scan.finish(self._db, self._writer, stats, now=now)
        self._scanned(stats)

    def _stored_uidnext(self, folder: str) -> int | None:
        with self._db.read() as session:
            return status_repo.folder_uidnext(session, self.name, folder)

    def _logout(self, session: ImapSession) -> None:
        if session.client is None:
            return
        with contextlib.suppress(MailError), guard(session.client, self.timing.call_bound, "IMAP LOGOUT"):
            session.close()

    # --------------------------------------------------------------------------------------- helpers

    def _scanned(self, stats: ScanStats) -> None:
        with self._db.write() as session:
            status_repo.record_scan(session, self.name, now=self._clock())
        level = logging.INFO if stats.messages_new else logging.DEBUG
        log.log(level, "%s", stats.summary())
        self._hooks.scanned(self.name, stats)

    def _fail(self, exc: FollowupdError) -> None:
        log.warning("%s: %s", self.name, exc)
        try:
            with self._db.write() as session:
                status_repo.record_scan(session, self.name, now=self._clock(), error=str(exc))
        except FollowupdError as db_exc:
            log.error("%s: cannot record the error: %s", self.name, db_exc)
        self._hooks.failed(self.name, exc)

    def _backoff(self) -> None:
        self._failures += 1
        delay = min(BACKOFF_CAP, 2.0 ** (self._failures - 1)) * random.uniform(0.5, 1.5)  # noqa: S311
        self.mode = "backoff"
        log.info("%s: retrying in %.1f s", self.name, delay)
        self._pause(delay)

    def _pause(self, seconds: float) -> None:
        """Sleep, interruptibly: raises _Stopped when asked to stop."""
        self._busy_since = None
        self._waker.wait(seconds)
        if self._stop.is_set():
            raise _Stopped
        self._busy()

    def _progress(self, _count: int) -> None:
        self._busy()
        if self._stop.is_set():
            raise _Stopped

    def _busy(self) -> None:
        self._busy_since = time.monotonic()
