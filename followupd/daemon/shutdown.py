"""What stopping needs: the gate that ends a send pass after its draft in flight, and the summary line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from followupd.store import status_repo
from followupd.store.db import Database


@dataclass
class Summary:
    """Counters for the status line and the one-line summary at shutdown."""

    scans: int = 0
    messages_new: int = 0
    contacts_new: int = 0
    scan_errors: int = 0
    plans: int = 0
    queued: int = 0
    superseded: int = 0
    sent: int = 0
    errors: int = 0
    reloads: int = 0

    def line(self, reason: str, elapsed: float) -> str:
        """``followupd stopped (SIGTERM) after 3m05s: ...``"""
        return (
            f"followupd stopped ({reason}) after {duration(elapsed)}: {self.scans} scan(s),"
            f" {self.messages_new} new message(s), {self.contacts_new} new contact(s),"
            f" {self.queued} draft(s) queued, {self.sent} sent, {self.scan_errors + self.errors} error(s)"
        )


class SendStopped(Exception):  # noqa: N818 — a signal to unwind, not an error
    """The daemon is stopping and the sender tried to start on another draft."""


class SendGate:
    """The database as the sender sees it: once the daemon is stopping, the sender may finish the draft it
    has in flight (record its outcome), but a new write transaction while no draft is SENDING -- the claim of
    the next draft -- is refused, which ends the pass. The sender claims drafts on the event loop's thread, so
    nothing can slip in between the check and the claim."""

    def __init__(self, db: Database, stopping: asyncio.Event) -> None:
        self._db = db
        self._stopping = stopping

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """``Database.write``, or SendStopped when stopping and no draft is in flight."""
        if self._stopping.is_set():
            with self._db.read() as session:
                if not status_repo.sending_count(session):
                    raise SendStopped
        with self._db.write() as session:
            yield session


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h10m``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
