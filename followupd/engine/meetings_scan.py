"""The meetings pass: after a folder's headers are stored, its invites and plain-text arrangements.

It runs beside the header scan, never inside it, so the hot path stays as it is.

IMAP (:func:`imap_folder`): the folder's ``meetings_cursor`` (``"<uidvalidity>:<uid>"``) says up to which UID
the pass has read; everything after it, up to the scan's ``last_uid``, is read now. Asking every message for
its BODYSTRUCTURE would make the server parse every body (on a first scan that costs as much as the header
scan), so the structure is fetched only for messages that can matter: those whose top-level Content-Type is
multipart or a calendar (one server-side ``SEARCH HEADER Content-Type``) and that are not list or bulk mail
(on Gmail, whose SEARCH does not cover every header, all that are not list or bulk mail), and recent
person-to-person messages (arrangements). The raw structures are read off the socket; a byte
check picks those that may hold a calendar, and only then are they parsed. Then only the calendar parts, and
the first 2 KB of the text part of the arrangement candidates, are fetched. A broken connection leaves the
cursor where it was, so the next scan reads the same messages again (folding an invite twice is harmless).

Local stores (:class:`LocalPass`): each stored batch is looked at through its headers' Content-Type, and only
messages that can hold a calendar or are recent person-to-person mail are read whole (bounded to 1 MB).

Either way, every finding is stored in one write transaction, never held across I/O
(:func:`followupd.engine.meetings_apply.apply`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from followupd.core.mime import CALENDAR_TYPES, PartRef, calendar_parts, decode_part, text_part, walk_message
from followupd.core.phrases import MAX_TEXT_CHARS
from followupd.engine import meetings_apply
from followupd.engine.batch import BatchWriter, ScanStats
from followupd.engine.meetings_apply import Findings, arrangement, invite_events, is_text_candidate
from followupd.mail import parts
from followupd.mail.imap import ImapSession
from followupd.mail.local import LocalSource
from followupd.mail.local_bodies import BodyReader, content_type
from followupd.mail.source import FolderInfo, RawMessage
from followupd.store.db import Database
from followupd.store.models import Folder, Message

log = logging.getLogger(__name__)

TEXT_PREFIX = 2_048  # bytes of a text part fetched for arrangement detection
MAX_CALENDAR_BYTES = 2_000_000  # a calendar part bigger than this is an exported calendar, not an invite
MAX_CALENDARS = 3  # calendar parts read per message (Google sends the same one twice)
_CALENDAR_BYTES = (b"text/calendar", b"application/ics", b".ics")


# --- IMAP


def imap_folder(
    db: Database,
    session: ImapSession,
    writer: BatchWriter,
    folder: FolderInfo,
    *,
    folder_id: int,
    stats: ScanStats,
    uidvalidity: int,
    last_uid: int,
    now: datetime,
) -> None:
    """Read the folder's messages the pass has not read yet (up to ``last_uid``) and store their meetings."""
    done = _cursor(db, folder_id, uidvalidity)
    if done >= last_uid:
        return
    session.select(folder.name)
    findings = _imap_findings(db, session, folder_id, first_uid=done + 1, last_uid=last_uid, now=now)
    meetings_apply.apply(
        db, writer, stats, findings, now=now, cursor=(folder_id, f"{uidvalidity}:{last_uid}")
    )
    meetings_apply.finish(db, writer, stats, now=now)


def finish(db: Database, writer: BatchWriter, stats: ScanStats, *, now: datetime) -> None:
    """At the end of an account's scan: meetings that ended meanwhile touch their contacts."""
    meetings_apply.finish(db, writer, stats, now=now)


def _cursor(db: Database, folder_id: int, uidvalidity: int) -> int:
    with db.read() as session:
        value = session.scalar(select(Folder.meetings_cursor).where(Folder.id == folder_id)) or ""
    validity, _, uid = value.partition(":")
    return int(uid) if validity == str(uidvalidity) and uid.isdigit() else 0


def _imap_findings(
    db: Database, session: ImapSession, folder_id: int, *, first_uid: int, last_uid: int, now: datetime
) -> Findings:
    structured = parts.search_structured(session, first_uid, last_uid)
    eligible, recent = _candidates(db, folder_id, structured, first_uid=first_uid, last_uid=last_uid, now=now)
    if structured is None:  # the server's answer cannot be trusted: every eligible message may hold one
        structured = eligible
    invites: dict[int, list[PartRef]] = {}
    texts: dict[int, PartRef] = {}
    raws = parts.fetch_structures_of(session, (structured & eligible) | recent)
    for uid, raw in raws.items():
        calendar = uid in structured and parts.may_have_calendar(raw)
        if not calendar and uid not in recent:
            continue
        simple = None if calendar else parts.plain_text_part(raw)
        structure = None if simple else parts.parse_structure(raw)
        chosen = _calendar_refs(calendar_parts(structure)) if calendar else []
        if chosen:
            invites[uid] = chosen
        elif uid in recent and (ref := simple or text_part(structure)) is not None:
            texts[uid] = ref
    log.debug(
        "meetings pass: %d candidates, %d structures read, %d with calendars, %d texts",
        len(eligible | recent),
        len(raws),
        len(invites),
        len(texts),
    )
    calendar_data = parts.fetch_parts(
        session, {uid: [r.part for r in refs] for uid, refs in invites.items()}, limit=MAX_CALENDAR_BYTES
    )
    text_data = parts.fetch_parts(session, {uid: [r.part] for uid, r in texts.items()}, limit=TEXT_PREFIX)
    stored = meetings_apply.stored_messages(db, folder_id, sorted({*invites, *texts}))
    findings = Findings()
    for uid, refs in invites.items():
        calendars = [_decode(calendar_data.get((uid, r.part)), r) for r in refs]
        if uid in stored and (events := invite_events(stored[uid], [c for c in calendars if c])):
            findings.invites.append((stored[uid], events))
    for uid, ref in texts.items():
        text = _decode(text_data.get((uid, ref.part)), ref)
        if uid in stored and text and (found := arrangement(stored[uid], text)) is not None:
            findings.texts.append((stored[uid], found))
    return findings


def _candidates(
    db: Database, folder_id: int, structured: set[int] | None, *, first_uid: int, last_uid: int, now: datetime
) -> tuple[set[int], set[int]]:
    """Of the ``structured`` messages (None: all of the range), those that may carry an invite (all but list
    and bulk mail, and bounces); and the range's person-to-person messages recent enough to look for
    arrangements in."""
    eligible: set[int] = set()
    with db.read() as session:
        if structured is None:
            query = select(Message.uid, Message.reason).where(
                Message.folder_id == folder_id, Message.uid >= first_uid, Message.uid <= last_uid
            )
            eligible.update(
                uid
                for uid, reason in session.execute(query)
                if uid and meetings_apply.may_carry_invite(reason)
            )
        ordered = sorted(structured or ())
        for start in range(0, len(ordered), 900):
            query = select(Message.uid, Message.reason).where(
                Message.folder_id == folder_id, Message.uid.in_(ordered[start : start + 900])
            )
            eligible.update(
                uid
                for uid, reason in session.execute(query)
                if uid and meetings_apply.may_carry_invite(reason)
            )
        recent = session.scalars(
            select(Message.uid).where(
                Message.folder_id == folder_id,
                Message.uid >= first_uid,
                Message.uid <= last_uid,
                Message.automated.is_(False),
                Message.date_at >= now - meetings_apply.LOOKBACK,
            )
        )
        return eligible, {uid for uid in recent if uid is not None}


def _calendar_refs(refs: Sequence[PartRef]) -> list[PartRef]:
    """The calendar parts worth fetching: text/calendar ones when there are any (Google repeats them as an
    invite.ics attachment), never huge ones, at most :data:`MAX_CALENDARS`."""
    small = [r for r in refs if r.size is None or r.size <= MAX_CALENDAR_BYTES]
    inline = [r for r in small if r.content_type == "text/calendar"]
    return (inline or small)[:MAX_CALENDARS]


def _decode(data: bytes | None, ref: PartRef) -> str:
    return decode_part(data, ref.encoding, ref.charset) if data else ""


# --- local stores


class LocalPass:
    """The meetings pass over a local store, one stored batch at a time."""

    def __init__(
        self, db: Database, source: LocalSource, writer: BatchWriter, stats: ScanStats, now: datetime
    ):
        self.db, self.writer, self.stats, self.now = db, writer, stats, now
        self._bodies = BodyReader(source)

    def after_batch(self, folder: FolderInfo, folder_id: int, raws: Sequence[RawMessage]) -> None:
        """Look at a batch the scan has just stored; store the meetings found in one transaction."""
        kinds = {raw.uid: content_type(raw.headers) for raw in raws}
        maybe = [uid for uid, kind in kinds.items() if _may_hold_meeting(kind)]
        if not maybe:
            return
        findings = Findings()
        for uid, stored in meetings_apply.stored_messages(self.db, folder_id, maybe).items():
            kind = kinds[uid]
            multipart = kind.startswith("multipart/")
            calendar_kind = (multipart or kind in CALENDAR_TYPES) and meetings_apply.may_carry_invite(
                stored.reason
            )
            text_kind = is_text_candidate(stored, self.now) and (kind == "text/plain" or multipart)
            if not calendar_kind and not text_kind:
                continue
            raw = self._bodies.read(folder.name, uid)
            if raw is None or (not text_kind and not _has_calendar_bytes(raw)):
                continue
            calendars, text = walk_message(raw)
            if calendar_kind and (events := invite_events(stored, calendars)):
                findings.invites.append((stored, events))
            elif (
                text_kind and text and (found := arrangement(stored, text[: MAX_TEXT_CHARS * 2])) is not None
            ):
                findings.texts.append((stored, found))
        if findings.invites or findings.texts:
            meetings_apply.apply(self.db, self.writer, self.stats, findings, now=self.now)

    def finish(self) -> None:
        """At the end of the scan: meetings that ended meanwhile touch their contacts."""
        meetings_apply.finish(self.db, self.writer, self.stats, now=self.now)


def _may_hold_meeting(kind: str) -> bool:
    return kind.startswith("multipart/") or kind in CALENDAR_TYPES or kind == "text/plain"


def _has_calendar_bytes(raw: bytes) -> bool:
    lowered = raw.lower()
    return any(mark in lowered for mark in _CALENDAR_BYTES)
