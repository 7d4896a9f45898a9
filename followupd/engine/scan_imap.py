"""Scanning an IMAP account: skip unchanged folders by STATUS, fetch new headers in UID batches."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update

from followupd.config import AccountConfig
from followupd.engine.batch import BatchWriter, Cursor, Progress, ScanStats, read_cursor
from followupd.mail.imap import ImapSession
from followupd.mail.source import FolderInfo, FolderStatus
from followupd.store.db import Database
from followupd.store.models import Folder

log = logging.getLogger(__name__)


def scan_imap(
    db: Database,
    account: AccountConfig,
    session: ImapSession,
    writer: BatchWriter,
    stats: ScanStats,
    *,
    now: datetime,
    progress: Progress | None = None,
    meetings: bool = True,
) -> None:
    """Scan every folder of a connected IMAP session into the database (and, with ``meetings``, the meetings
    of what arrived: see engine/meetings_scan.py)."""
    assert account.imap is not None
    folders = session.folders(account.imap.folders)
    # Sent first: the user's own mail is what admits people, so contacts appear as early as possible.
    for folder in sorted(folders, key=lambda f: f.role != "sent"):
        scan_folder(
            db,
            session,
            writer,
            folder,
            stats,
            now=now,
            batch_size=account.imap.batch_size,
            progress=progress,
            meetings=meetings,
        )
    if meetings:
        from followupd.engine import meetings_scan  # icalendar and dateparser only when meetings are on

        meetings_scan.finish(db, writer, stats, now=now)


def unchanged(cursor: Cursor, status: FolderStatus) -> bool:
    """True when STATUS proves the folder gained nothing since the cursor was stored."""
    if cursor.uidvalidity != status.uidvalidity or cursor.uidnext != status.uidnext:
        return False
    return status.highestmodseq is None or cursor.highestmodseq == status.highestmodseq


def scan_folder(
    db: Database,
    session: ImapSession,
    writer: BatchWriter,
    folder: FolderInfo,
    stats: ScanStats,
    *,
    now: datetime,
    batch_size: int,
    progress: Progress | None = None,
    meetings: bool = False,
) -> None:
    """Bring one folder up to date.

    A UIDVALIDITY change rescans the folder; messages already stored are re-bound to it by Message-ID. With
    ``meetings``, the meetings pass then reads what it has not read yet (it keeps its own cursor).
    """
    status = session.status(folder.name)
    cursor = read_cursor(db, writer.account_id, folder)
    if unchanged(cursor, status):
        stats.folders_skipped += 1
        return
    last_uid = cursor.last_uid
    if cursor.uidvalidity is not None and cursor.uidvalidity != status.uidvalidity:
        log.warning(
            "%s: UIDVALIDITY changed (%s -> %s); rescanning it",
            folder.name,
            cursor.uidvalidity,
            status.uidvalidity,
        )
        stats.uidvalidity_resets.append(folder.name)
        last_uid = 0
    if cursor.uidvalidity != status.uidvalidity:
        _set_cursor(db, cursor.folder_id, uidvalidity=status.uidvalidity, last_uid=last_uid, uidnext=None)
    stats.folders_scanned += 1
    if status.messages and status.uidnext - 1 > last_uid:
        session.select(folder.name)
        last_uid = _fetch_new(
            session,
            writer,
            folder,
            folder_id=cursor.folder_id,
            last_uid=last_uid,
            stats=stats,
            now=now,
            batch_size=batch_size,
            progress=progress,
        )
    if meetings:
        from followupd.engine import meetings_scan

        meetings_scan.imap_folder(
            db,
            session,
            writer,
            folder,
            folder_id=cursor.folder_id,
            stats=stats,
            uidvalidity=status.uidvalidity,
            last_uid=last_uid,
            now=now,
        )
    _set_cursor(
        db,
        cursor.folder_id,
        uidnext=status.uidnext,
        highestmodseq=status.highestmodseq,
        messages=status.messages,
        last_scan_at=now,
    )


def _fetch_new(
    session: ImapSession,
    writer: BatchWriter,
    folder: FolderInfo,
    *,
    folder_id: int,
    last_uid: int,
    stats: ScanStats,
    now: datetime,
    batch_size: int,
    progress: Progress | None,
) -> int:
    uids = session.uids_after(last_uid)
    for index in range(0, len(uids), batch_size):
        chunk = uids[index : index + batch_size]
        # The chunk's UIDs are consecutive among the folder's, so one range fetches exactly them.
        raws = list(session.fetch_headers(chunk[0], chunk[-1]))
        new, created = writer.write(folder, folder_id, raws, now=now, cursor={"last_uid": chunk[-1]})
        stats.messages_seen += len(raws)
        stats.messages_new += new
        stats.contacts_new += created
        if progress is not None:
            progress(len(raws))
        last_uid = chunk[-1]
    return last_uid


def _set_cursor(db: Database, folder_id: int, **values: object) -> None:
    with db.write() as session:
        session.execute(update(Folder).where(Folder.id == folder_id).values(**values))
