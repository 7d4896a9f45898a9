"""What the daemon and ``followupd run --once`` share: the clock, the sender's entry points, and one cycle.

The sender (``followupd.engine.send``) is imported on first use, so a build without it still scans and plans;
its absence is reported once, clearly, instead of as an ImportError deep in a loop.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from followupd.config import AccountConfig, Config
from followupd.errors import FollowupdError
from followupd.store import status_repo
from followupd.store.db import Database

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
AsyncUnit = Callable[..., Awaitable[Any]]


class SenderMissingError(FollowupdError):
    """This installation has no sender module; drafts cannot go out."""


def make_clock(fixed: datetime | None = None) -> Clock:
    """The wall clock (aware UTC); with ``fixed``, one that starts there and runs at real speed (tests)."""
    if fixed is None:
        return lambda: datetime.now(UTC)
    start = time.monotonic()
    return lambda: fixed + timedelta(seconds=time.monotonic() - start)


def worker_id(now: datetime) -> str:
    """A name for this daemon run: host, pid and start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{now:%Y%m%dT%H%M%SZ}"


def _send_module() -> Any:
    try:
        from followupd.engine import send
    except ImportError as exc:
        raise SenderMissingError(
            f"sending is not available: {exc}",
            hint="followupd.engine.send is missing from this installation; scanning and planning still work.",
        ) from None
    return send


def send_due_async() -> AsyncUnit:
    """``followupd.engine.send.send_due_async`` (SenderMissingError when there is no sender)."""
    fn: AsyncUnit = _send_module().send_due_async
    return fn


def recover_sending(db: Database, accounts: Collection[str] | None = None) -> list[int]:
    """Resolve drafts left SENDING by a previous run as UNKNOWN (never resent blindly). Needs the lock, or
    (several workers) the leases of ``accounts``; None: every account."""
    ids: list[int] = _send_module().recover_sending(db, accounts=accounts)
    return ids


def resolve_unknown_async() -> AsyncUnit:
    """``followupd.engine.send.resolve_unknown_async``: look for UNKNOWN drafts in Sent, never resend."""
    fn: AsyncUnit = _send_module().resolve_unknown_async
    return fn


def send_due(db: Database, config: Config, *, now: datetime, accounts: Collection[str] | None = None) -> Any:
    """Send the due approved drafts (of ``accounts``; None: all) once (blocking)."""
    return _send_module().send_due(db, config, now=now, accounts=accounts)


def register(
    db: Database, wid: str, *, now: datetime, lease: timedelta | None = None, shared: bool = False
) -> None:
    """Write this run's ``workers`` row; earlier runs that never stopped are marked as crashed (``shared``:
    only those whose liveness lease expired; ``lease``: this worker's; see ``register_worker``)."""
    with db.write() as session:
        crashed = status_repo.register_worker(
            session, wid, pid=os.getpid(), host=socket.gethostname(), now=now, lease=lease, shared=shared
        )
    if crashed:
        log.warning("the previous daemon run ended without stopping (crash or kill)")


def sent_since(db: Database, since: datetime) -> int:
    """Drafts sent at or after ``since``."""
    with db.read() as session:
        return status_repo.sent_since(session, since)


@dataclass
class CycleReport:
    """What ``run --once`` did."""

    accounts: int = 0
    messages_new: int = 0
    contacts_new: int = 0
    queued: int = 0
    superseded: int = 0
    sent: int = 0
    errors: dict[str, FollowupdError] = field(default_factory=dict)

    def line(self) -> str:
        """The one-line summary."""
        failed = f"; failed: {', '.join(sorted(self.errors))}" if self.errors else ""
        return (
            f"followupd: one cycle done: {self.accounts} account(s) scanned,"
            f" {self.messages_new} new message(s), {self.contacts_new} new contact(s),"
            f" {self.queued} draft(s) queued, {self.superseded} superseded, {self.sent} sent{failed}"
        )

    @property
    def exit_code(self) -> int:
        return max((e.exit_code for e in self.errors.values()), default=0)


def run_cycle(
    db: Database, config: Config, *, clock: Clock, accounts: Collection[str] | None = None
) -> CycleReport:
    """One full cycle: recover, scan every account, plan, send what is due. The caller holds the lock, or
    (several workers on PostgreSQL) the leases of ``accounts``, and then only those are touched.

    Failing accounts are reported and the rest still happen; a failing plan or send is reported under the
    names ``plan`` / ``send`` (accounts that could not send under their own names).
    """
    from followupd.engine.plan import plan_once
    from followupd.engine.scan import scan_once

    report = CycleReport()
    started = clock()
    try:
        recover_sending(db, accounts)
        _send_module().resolve_unknown(db, config, now=clock(), accounts=accounts)
    except SenderMissingError as exc:
        log.error("%s", exc)
        report.errors["send"] = exc
    scanned = config if accounts is None else replace(config, accounts=_only(config, accounts))
    scan = scan_once(db, scanned, now=clock())
    report.accounts = len(scan.accounts)
    report.messages_new, report.contacts_new = scan.messages_new, scan.contacts_new
    report.errors.update(scan.errors)
    try:
        planned = plan_once(db, config, now=clock(), accounts=accounts)
        report.queued, report.superseded = len(planned.queued), planned.superseded
    except FollowupdError as exc:
        log.error("plan failed: %s", exc)
        report.errors["plan"] = exc
    if "send" not in report.errors:
        try:
            sent = send_due(db, config, now=clock(), accounts=accounts)
            report.errors.update(getattr(sent, "errors", {}))
        except FollowupdError as exc:
            log.error("send failed: %s", exc)
            report.errors["send"] = exc
    report.sent = sent_since(db, started)
    return report


def _only(config: Config, names: Collection[str]) -> tuple[AccountConfig, ...]:
    return tuple(a for a in config.accounts if a.name in names)
