"""Shared machinery of a scan: cursors, and the batch writer that stores messages with the cursor that
covers them.

Each batch is one write transaction holding the batch's messages, the aggregates they change and the folder
cursor that covers them, so a crash at any point loses nothing and duplicates nothing. Network I/O happens
between transactions, never inside one.

With several workers on one PostgreSQL database, a batch's transaction first runs the writer's *fence*
(``followupd.store.leases.fence``): a worker whose lease on the account was lost cannot commit a batch, and a
takeover cannot slip in between the fence and the commit. The fence is given to the writer, or set for the
current thread with :func:`fenced` (``run --once`` and ``send``, whose scans create their own writers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from followupd.config import AccountConfig, Config
from followupd.core.classify import AdmissionPolicy
from followupd.core.digest import digest, synthetic_message_id
from followupd.core.headers import parse_headers
from followupd.mail.source import FolderInfo, RawMessage
from followupd.store import contacts_refresh, scan_repo
from followupd.store.db import Database
from followupd.store.models import Folder, Message

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
Fence = Callable[[Session, int], None]
"""Called first inside a batch's write transaction with the account id; raises to refuse the batch."""

_FENCE: ContextVar[Fence | None] = ContextVar("followupd_batch_fence", default=None)


@contextmanager
def fenced(fence: Fence) -> Iterator[None]:
    """Batch writers created inside this block (in this thread) run ``fence`` before every batch."""
    token = _FENCE.set(fence)
    try:
        yield
    finally:
        _FENCE.reset(token)


@dataclass
class ScanStats:
    """What one scan of one account did."""

    account: str
    folders_scanned: int = 0
    folders_skipped: int = 0
    messages_seen: int = 0
    messages_new: int = 0
    contacts_new: int = 0
    uidvalidity_resets: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI and the log."""
        return (
            f"{self.account}: {self.messages_new} new message(s), {self.contacts_new} new contact(s);"
            f" {self.folders_scanned} folder(s) scanned, {self.folders_skipped} unchanged"
        )


@dataclass(frozen=True)
class Cursor:
    """A copy of a folder's sync state, read in its own short transaction."""

    folder_id: int
    uidvalidity: int | None
    uidnext: int | None
    highestmodseq: int | None
    last_uid: int
    local_state: str | None


class BatchWriter:
    """Parses a batch of raw messages and stores it, with the cursor, in one transaction."""

    def __init__(
        self,
        db: Database,
        account_id: int,
        own: frozenset[str],
        policy: AdmissionPolicy,
        *,
        fence: Fence | None = None,
    ) -> None:
        self.db = db
        self.account_id = account_id
        self.own = own
        self.policy = policy
        self.fence = fence if fence is not None else _FENCE.get()

    def write(
        self,
        folder: FolderInfo,
        folder_id: int,
        raws: list[RawMessage],
        *,
        now: datetime,
        cursor: dict[str, object],
    ) -> tuple[int, int]:
        """Store ``raws`` and set ``cursor`` columns on the folder. Returns (new messages, new contacts)."""
        parsed = [
            (
                r.uid,
                parse_headers(r.headers, fallback_date=r.internal_at or now),
                r.headers,
                r.internal_at or now,
            )
            for r in raws
        ]
        ids = [meta.message_id or synthetic_message_id(raw) for _uid, meta, raw, _at in parsed]
        with self.db.write() as session:
            if self.fence is not None:
                self.fence(session, self.account_id)
            existing = scan_repo.existing_message_ids(session, self.account_id, ids)
            fresh = [item for item, mid in zip(parsed, ids, strict=True) if mid not in existing]
            scan_repo.rebind(
                session,
                self.account_id,
                folder_id,
                {mid: item[0] for item, mid in zip(parsed, ids, strict=True) if mid in existing},
            )
            dig = digest(fresh, own=self.own, sent_folder=folder.role == "sent")
            scan_repo.write_digest(session, self.account_id, folder_id, dig)
            created = contacts_refresh.update_contacts(
                session,
                self.account_id,
                list(dig.addresses),
                own=self.own | dig.learned_own,
                policy=self.policy,
            )
            session.execute(update(Folder).where(Folder.id == folder_id).values(**cursor))
        return len(dig.messages), created


def admission_policy(config: Config) -> AdmissionPolicy:
    """The core's admission policy from the [scan.admission] config."""
    adm = config.scan.admission
    return AdmissionPolicy(
        admit_if_user_wrote_to=adm.user_wrote_to,
        admit_if_answered=adm.answered,
        admit_if_wrote_directly=adm.wrote_directly,
        admit_meeting_attendees=adm.meeting_attendees,
    )


def read_cursor(db: Database, account_id: int, folder: FolderInfo) -> Cursor:
    """The folder's cursor (the row is created on first sight)."""
    with db.write() as session:
        row = scan_repo.ensure_folder(session, account_id, folder.name, folder.role)
        return Cursor(row.id, row.uidvalidity, row.uidnext, row.highestmodseq, row.last_uid, row.local_state)


def known_uids(db: Database, folder_id: int) -> set[int]:
    """UIDs already stored for a folder (used by local sources to skip what they already gave us)."""
    with db.read() as session:
        return {
            u
            for (u,) in session.execute(select(Message.uid).where(Message.folder_id == folder_id))
            if u is not None
        }


def batched(items: Iterable[RawMessage], size: int) -> Iterator[list[RawMessage]]:
    """Lists of at most ``size`` items."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def start_account(db: Database, account: AccountConfig) -> int:
    """The account's row id (created on first scan)."""
    with db.write() as session:
        return scan_repo.ensure_account(session, account.name, account.email)
