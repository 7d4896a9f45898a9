"""Scanning a local Maildir or mbox: skip unchanged folders by fingerprint, store new messages in batches.

The folder's ``local_state`` column holds ``"<fingerprint>\\n<source state>"``. While a scan is under way the
fingerprint part is empty, so an interrupted scan is resumed from the source state rather than skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from followupd.engine.batch import BatchWriter, Progress, ScanStats, known_uids, read_cursor
from followupd.mail.local import LocalSource
from followupd.mail.source import FolderInfo, RawMessage
from followupd.store.db import Database

if TYPE_CHECKING:
    from followupd.engine.meetings_scan import LocalPass

BATCH = 2000


def scan_local(
    db: Database,
    source: LocalSource,
    writer: BatchWriter,
    stats: ScanStats,
    *,
    now: datetime,
    progress: Progress | None = None,
    meetings: bool = True,
) -> None:
    """Bring every folder of a local source up to date (and, with ``meetings``, learn the meetings of what
    arrived: see engine/meetings_scan.py)."""
    found = None
    if meetings:
        from followupd.engine.meetings_scan import LocalPass  # icalendar and dateparser only when on

        found = LocalPass(db, source, writer, stats, now)
    for folder in sorted(source.folders(), key=lambda f: f.role != "sent"):
        _scan_folder(db, source, writer, folder, stats, now=now, progress=progress, meetings=found)
    if found is not None:
        found.finish()


def _scan_folder(
    db: Database,
    source: LocalSource,
    writer: BatchWriter,
    folder: FolderInfo,
    stats: ScanStats,
    *,
    now: datetime,
    progress: Progress | None,
    meetings: LocalPass | None = None,
) -> None:
    cursor = read_cursor(db, writer.account_id, folder)
    fingerprint = source.fingerprint(folder.name)  # taken first, so changes made while reading show next time
    stored_print, _, state = (cursor.local_state or "").partition("\n")
    if cursor.local_state is not None and stored_print == fingerprint:
        stats.folders_skipped += 1
        return
    stats.folders_scanned += 1
    known = known_uids(db, cursor.folder_id)
    pending: list[RawMessage] = []
    for raw, item_state in source.messages(folder.name, state=state or None, known=known.__contains__):
        pending.append(raw)
        state = item_state
        if len(pending) >= BATCH:
            _flush(
                writer,
                folder,
                pending,
                folder_id=cursor.folder_id,
                local_state="\n" + state,
                stats=stats,
                now=now,
                progress=progress,
                meetings=meetings,
            )
            pending = []
    _flush(
        writer,
        folder,
        pending,
        folder_id=cursor.folder_id,
        local_state=fingerprint + "\n" + state,
        stats=stats,
        now=now,
        progress=progress,
        meetings=meetings,
    )


def _flush(
    writer: BatchWriter,
    folder: FolderInfo,
    raws: list[RawMessage],
    *,
    folder_id: int,
    local_state: str,
    stats: ScanStats,
    now: datetime,
    progress: Progress | None,
    meetings: LocalPass | None = None,
) -> None:
    new, created = writer.write(
        folder, folder_id, raws, now=now, cursor={"local_state": local_state, "last_scan_at": now}
    )
    if meetings is not None and raws:
        meetings.after_batch(folder, folder_id, raws)
    stats.messages_seen += len(raws)
    stats.messages_new += new
    stats.contacts_new += created
    if progress is not None and raws:
        progress(len(raws))
