"""What the meetings pass found, turned into meetings: detection on fetched text, then one write transaction.

The pass (:mod:`followupd.engine.meetings_scan`) gathers :class:`Stored` messages with their calendar texts or
plain-text prefixes; :func:`invite_events` and :func:`arrangement` run the pure core on them; :func:`apply`
stores everything in one write transaction (meetings, arrangements, people met and admitted, contacts'
touch, the pass's cursor); :func:`finish` accounts for meetings that ended since the last scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import exists, select, update

from followupd.core import arrangements as text_core
from followupd.core.ical import _named_zone  # the core resolves these TZIDs without the VTIMEZONE
from followupd.core.meetings import InviteEvent, parse_calendar
from followupd.engine.batch import BatchWriter, ScanStats
from followupd.store import arrangements_repo, meeting_people, meetings_repo
from followupd.store.db import Database
from followupd.store.meetings_repo import Change
from followupd.store.models import Folder, Message

LOOKBACK = timedelta(days=60)
"""Plain-text arrangements are looked for only in messages this recent. Words arrange meetings at most 60 days
ahead (``core.arrangements.MAX_AHEAD``) and the after-meeting follow-up expires a week after the meeting, so
an older arrangement can rarely feed a follow-up; and the bound keeps the first scan of a big mailbox cheap,
as dateparser costs milliseconds per message. Invites are read whatever their age."""

_CHUNK = 900
# What core.ical reads of a calendar (VCALENDAR, VEVENT, and the VTIMEZONE it resolves itself).
_READ_PROPERTIES = frozenset({
    "BEGIN", "END", "METHOD", "UID", "DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "ORGANIZER", "ATTENDEE",
    "SUMMARY", "SEQUENCE", "STATUS", "RRULE", "RDATE", "EXDATE", "DTSTAMP", "TZID", "TZOFFSETFROM",
    "TZOFFSETTO", "TZNAME",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store knows of a message the pass looks at."""

    uid: int
    message_id: str
    thread_key: str
    subject: str
    date_at: datetime
    tz_offset: int | None
    direction: str
    sender: str
    recipients: str
    automated: bool
    reason: str = ""

    @property
    def sent_at(self) -> datetime:
        """The Date in the sender's own offset (what "tomorrow at 3pm" is relative to)."""
        return self.date_at.astimezone(self.zone)

    @property
    def zone(self) -> timezone:
        """The sender's UTC offset (floating calendar times are read in it)."""
        return timezone(timedelta(minutes=self.tz_offset)) if self.tz_offset else UTC


@dataclass
class Findings:
    """Invite events and arrangements found in one batch of messages."""

    invites: list[tuple[Stored, list[InviteEvent]]] = field(default_factory=list)
    texts: list[tuple[Stored, text_core.Arrangement]] = field(default_factory=list)


STORED_COLUMNS = (
    Message.uid,
    Message.message_id,
    Message.thread_key,
    Message.subject,
    Message.date_at,
    Message.tz_offset,
    Message.direction,
    Message.sender,
    Message.recipients,
    Message.automated,
    Message.reason,
)


def stored_messages(db: Database, folder_id: int, uids: Sequence[int]) -> dict[int, Stored]:
    """uid -> Stored for the folder's messages with these uids (read in one short transaction)."""
    found: dict[int, Stored] = {}
    with db.read() as session:
        for start in range(0, len(uids), _CHUNK):
            chunk = list(uids[start : start + _CHUNK])
            rows = session.execute(
                select(*STORED_COLUMNS).where(Message.folder_id == folder_id, Message.uid.in_(chunk))
            )
            for row in rows:
                date_at = row.date_at if row.date_at.tzinfo else row.date_at.replace(tzinfo=UTC)
                found[row.uid] = Stored(
                    row.uid,
                    row.message_id,
                    row.thread_key,
                    row.subject or "",
                    date_at,
                    row.tz_offset,
                    row.direction,
                    row.sender or "",
                    row.recipients or "",
                    bool(row.automated),
                    row.reason or "",
                )
    return found


BULK_REASONS = ("list-id", "list-unsubscribe", "precedence:", "bounce:")
"""Classification reasons of mail sent through lists and bulk senders, and of bounces: an .ics there announces
an event to many (PUBLISH), it does not arrange a meeting with the user. Google's own invitations say
Auto-Submitted and stay eligible."""


def may_carry_invite(reason: str) -> bool:
    """Whether a message classified for ``reason`` is worth looking into for an invitation."""
    return not reason.startswith(BULK_REASONS)


def is_text_candidate(stored: Stored, now: datetime) -> bool:
    """A person-to-person message recent enough for its words to arrange a meeting still worth following."""
    return not stored.automated and stored.date_at >= now - LOOKBACK


def invite_events(stored: Stored, calendars: Sequence[str]) -> list[InviteEvent]:
    """The VEVENTs of a message's calendar parts (floating times read in the sender's offset)."""
    return [
        event for text in calendars for event in parse_calendar(slim_calendar(text), default_tz=stored.zone)
    ]


def slim_calendar(text: str) -> str:
    """The calendar without what the core never reads, so that icalendar (~35 us a line) parses less.

    Kept: component lines and the properties :func:`followupd.core.meetings.parse_calendar` reads, with their
    folded continuations. Dropped: DESCRIPTION, X-ALT-DESC (Outlook's HTML copy), LOCATION, vendors'
    properties, and each VTIMEZONE whose TZID the core resolves by name anyway (IANA, Windows and
    vendor-prefixed names come before the calendar's own definition). Parsing the result gives the same
    events as parsing the text.
    """
    lines = text.splitlines()
    dropped = _named_zone_blocks(lines)
    kept: list[str] = []
    keep = True
    for index, line in enumerate(lines):
        if line[:1] in (" ", "\t"):  # a folded continuation of the line before
            if keep:
                kept.append(line)
            continue
        keep = index not in dropped and _property(line) in _READ_PROPERTIES
        if keep:
            kept.append(line)
    return "\r\n".join(kept) + "\r\n"


def _property(line: str) -> str:
    return line.split(":", 1)[0].split(";", 1)[0].strip().upper()


def _named_zone_blocks(lines: list[str]) -> set[int]:
    """Line numbers of the VTIMEZONE blocks whose TZID is resolved by name."""
    dropped: set[int] = set()
    start: int | None = None
    tzid = ""
    for index, line in enumerate(lines):
        upper = line.strip().upper()
        if upper == "BEGIN:VTIMEZONE":
            start, tzid = index, ""
        elif start is not None and _property(line) == "TZID":
            tzid = line.split(":", 1)[-1].strip()
        elif start is not None and upper == "END:VTIMEZONE":
            if tzid and _named_zone(tzid) is not None:
                dropped.update(range(start, index + 1))
            start = None
    return dropped


def arrangement(stored: Stored, text: str) -> text_core.Arrangement | None:
    """What the message's own words say about a meeting: the cheap gate first, then dateparser."""
    if not text_core.is_candidate(stored.subject, text):
        return None
    return text_core.detect(stored.subject, text, sent_at=stored.sent_at)


def apply(
    db: Database,
    writer: BatchWriter,
    stats: ScanStats,
    findings: Findings,
    *,
    now: datetime,
    cursor: tuple[int, str] | None = None,
) -> Change:
    """Store the findings, admit the people met, refresh their contacts and set the cursor: all or nothing."""
    own, account_id = writer.own, writer.account_id
    change = Change()
    with db.write() as session:
        with_calendar = [stored.message_id for stored, _ in findings.invites]
        for start in range(0, len(with_calendar), _CHUNK):
            session.execute(
                update(Message)
                .where(
                    Message.account_id == account_id,
                    Message.message_id.in_(with_calendar[start : start + _CHUNK]),
                )
                .values(has_calendar=True)
            )
        seen = [
            meetings_repo.Seen(event, stored.thread_key, stored.date_at)
            for stored, events in sorted(findings.invites, key=lambda item: item[0].date_at)
            for event in events
        ]
        if seen:
            change.add(meetings_repo.record_invites(session, account_id, seen, own=own, now=now))
        said = [
            arrangements_repo.Said(
                stored.message_id, stored.thread_key, stored.date_at, stored.direction == "out", found
            )
            for stored, found in findings.texts
        ]
        arrangements_repo.save(session, account_id, said)
        if said:
            change.add(
                arrangements_repo.resolve(session, account_id, [s.thread_key for s in said], own=own, now=now)
            )
        stats.contacts_new += meeting_people.mark_met(
            session, account_id, change.met, own=own, policy=writer.policy
        )
        meeting_people.touch_contacts(session, account_id, change.emails)
        if cursor is not None:
            session.execute(update(Folder).where(Folder.id == cursor[0]).values(meetings_cursor=cursor[1]))
    return change


def finish(db: Database, writer: BatchWriter, stats: ScanStats, *, now: datetime) -> None:
    """Meetings that ended since the last scan touch their contacts; contacts admitted during this scan get
    the meetings they had already attended. A read-only check when there is nothing to do."""
    account_id = writer.account_id
    with db.read() as session:
        due = session.scalar(select(exists().where(meetings_repo.ended(account_id, now))))
    if not due and not stats.contacts_new:
        return
    with db.write() as session:
        emails = meetings_repo.refresh_ended(session, account_id, own=writer.own, now=now)
        if stats.contacts_new:
            meeting_people.touch_all(session, account_id)
        elif emails:
            meeting_people.touch_contacts(session, account_id, emails)
