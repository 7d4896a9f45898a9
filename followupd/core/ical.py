"""iCalendar text -> :class:`InviteEvent` values: lenient parsing and time-zone resolution.

This is the parsing half of :mod:`followupd.core.meetings`, which re-exports everything public here; import
from there. Times come out as aware UTC.

Time zones: a TZID is resolved as an IANA name, then a Windows name (Outlook), then a vendor-prefixed
"globally unique" id (``/freeassociation.sourceforge.net/Europe/Paris``), then the VTIMEZONE carried in the
same calendar, then the caller's ``default_tz``. The calendar's own VTIMEZONE is read here rather than through
icalendar's process-wide cache, because that cache keeps the first definition it sees of a name such as
Outlook's "Customized Time Zone", which differs from sender to sender.
"""

from __future__ import annotations

import enum
import hashlib
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from icalendar import Calendar, vRecur
from icalendar.timezone import tzp
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from followupd.core.types import Address

MAX_CALENDAR_CHARS = 2_000_000  # an invite is a few kilobytes; even with an inline image it stays far below
MAX_EVENTS = 200  # an exported calendar attached to a mail can hold thousands of VEVENTs
MAX_NESTING = 10  # deepest BEGIN nesting kept when repairing; VCALENDAR > VEVENT > VALARM is three
MAX_DATES = 1_000  # EXDATE/RDATE values kept per event

_CONTENT_LINE = re.compile(r"^[A-Za-z0-9-]+[;:]")
_FOLD = re.compile(r"\r?\n[ \t]")
_TZID_PARAM = re.compile(r';TZID=(?:"[^"]*"|[^;:\r\n]*)', re.IGNORECASE)
_EVENT_COMPONENTS = frozenset({"VCALENDAR", "VEVENT"})
_READ_COMPONENTS = _EVENT_COMPONENTS | {"VTIMEZONE", "STANDARD", "DAYLIGHT"}
_ZONE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,3}$")
# Meeting rooms and equipment are invited like people but are not contacts.
_NOT_PEOPLE = frozenset({"ROOM", "RESOURCE"})


class MeetingStatus(enum.StrEnum):
    """Whether a meeting is on: confirmed, tentative (proposed or STATUS:TENTATIVE), or cancelled."""

    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


class Method(enum.StrEnum):
    """iTIP methods (RFC 5546). Unknown values are read as PUBLISH: informational."""

    PUBLISH = "PUBLISH"
    REQUEST = "REQUEST"
    REPLY = "REPLY"
    ADD = "ADD"
    CANCEL = "CANCEL"
    REFRESH = "REFRESH"
    COUNTER = "COUNTER"
    DECLINECOUNTER = "DECLINECOUNTER"


_METHODS = frozenset(m.value for m in Method)


@dataclass(frozen=True, slots=True)
class Attendee:
    """An invited person and their answer (PARTSTAT: NEEDS-ACTION, ACCEPTED, DECLINED, TENTATIVE, ...)."""

    address: Address
    partstat: str = "NEEDS-ACTION"


@dataclass(frozen=True, slots=True)
class InviteEvent:
    """One VEVENT as sent in one message. Times are aware UTC; ``zone`` is the zone its recurrence follows.

    ``rrule`` is the RRULE text with UNTIL normalised to UTC, ready for dateutil with an aware DTSTART.
    """

    uid: str
    recurrence_id: datetime | None
    method: str
    sequence: int
    summary: str
    start_at: datetime
    end_at: datetime
    all_day: bool
    status: MeetingStatus
    organizer: Address | None
    attendees: tuple[Attendee, ...]
    rrule: str | None
    dtstamp: datetime | None
    exdates: tuple[datetime, ...] = ()
    rdates: tuple[datetime, ...] = ()
    zone: tzinfo = UTC

    @property
    def key(self) -> tuple[str, datetime | None]:
        """What identifies the meeting across messages: UID and, for one changed occurrence, RECURRENCE-ID."""
        return self.uid, self.recurrence_id


def parse_calendar(text: str, *, default_tz: tzinfo = UTC) -> list[InviteEvent]:
    """Parse the VEVENTs of a calendar text; never raises, returns [] for garbage.

    Lenient: a missing END:VCALENDAR (Exchange) or END:VEVENT is supplied, lines that are not content lines
    are dropped. METHOD comes from the VCALENDAR (default PUBLISH). Floating times are read in ``default_tz``
    (pass the offset of the message's Date); all-day events span local midnights in ``default_tz``. VEVENTs
    without a usable DTSTART are skipped; a missing UID is replaced by a stable digest.
    """
    if not text or len(text) > MAX_CALENDAR_CHARS:
        return []
    components = _components(text)
    events: list[InviteEvent] = []
    for component in components:
        method = _method(component.get("METHOD"))
        zones = _Zones(component, default_tz)
        vevents = component.walk("VEVENT")[: MAX_EVENTS - len(events)]
        # Meetup puts the UID on the VCALENDAR; usable only when there is one event to give it to.
        fallback_uid = str(component.get("UID") or "") if len(vevents) == 1 else ""
        for vevent in vevents:
            event = _event(vevent, method, zones, fallback_uid)
            if event is not None:
                events.append(event)
    return events


def _components(text: str) -> list[Any]:
    """Parse the repaired text; when icalendar still fails, retry without time zones, then without TZIDs.

    The last retry reads every time as floating (the message's own zone): a meeting at a slightly wrong hour
    is worth more than no meeting.
    """
    attempts = (
        (text, _READ_COMPONENTS),
        (text, _EVENT_COMPONENTS),
        (_TZID_PARAM.sub("", text), _EVENT_COMPONENTS),
    )
    for source, kept in attempts:
        repaired = _repair(source, kept)
        try:
            with warnings.catch_warnings():
                # icalendar warns when it guesses a vendor-prefixed TZID; TZIDs are resolved here anyway.
                warnings.filterwarnings("ignore", category=UserWarning, module=r"icalendar")
                return list(Calendar.from_ical(repaired, multiple=True)) if repaired else []
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError, OSError):
            # What icalendar raises on hostile input, found by fuzzing: AttributeError for a VTIMEZONE with
            # two TZIDs; OSError because any TZID goes to zoneinfo, which reads "Europe" as a directory of
            # the zone database and a 300-character TZID as a file name that is too long.
            continue
    return []


def _repair(text: str, kept: frozenset[str]) -> str:
    """Unfold, then keep only well-formed lines of the components we read, inside balanced BEGIN/END blocks.

    Components we never read (VALARM, VTODO, X-...) are dropped whole: a bad TRIGGER in an alarm must not
    cost the meeting. Blocks left open (Exchange's missing END:VCALENDAR) are closed at the end.
    """
    out: list[str] = []
    stack: list[str] = []
    skip = 0  # nesting depth inside a dropped component
    for line in _FOLD.sub("", text).replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not _CONTENT_LINE.match(line):
            continue
        head, _, value = line.partition(":")
        head, name = head.upper(), value.strip().upper()
        if skip and not (head == "END" and name in stack):
            skip += (head == "BEGIN") - (head == "END")
            continue
        skip = 0
        if head == "BEGIN" and (name not in kept or len(stack) >= MAX_NESTING):
            skip = 1
        elif head == "END":
            _close(name, stack, out)
        elif head == "BEGIN" or stack:
            stack.extend([name] if head == "BEGIN" else [])
            out.append(line)
    out.extend(f"END:{name}" for name in reversed(stack))
    return "\r\n".join(out) + "\r\n" if out else ""


def _close(name: str, stack: list[str], out: list[str]) -> None:
    """Close ``name`` and anything opened inside it and left open; an END without a BEGIN is dropped."""
    while name in stack:
        closed = stack.pop()
        out.append(f"END:{closed}")
        if closed == name:
            return


def _method(value: object) -> Method:
    name = str(value or "").strip().upper()
    return Method(name) if name in _METHODS else Method.PUBLISH


class _Zones:
    """Resolves TZIDs for one calendar, caching per calendar only."""

    def __init__(self, calendar: Any, default_tz: tzinfo) -> None:
        self._calendar = calendar
        self.default = default_tz
        self._cache: dict[str, tzinfo] = {}

    def zone(self, tzid: str | None) -> tzinfo:
        """The zone named by a TZID parameter; floating values (no TZID) use the default zone."""
        if not tzid:
            return self.default
        if tzid not in self._cache:
            self._cache[tzid] = _named_zone(tzid) or self._own_zone(tzid) or self.default
        return self._cache[tzid]

    def _own_zone(self, tzid: str) -> tzinfo | None:
        for component in self._calendar.walk("VTIMEZONE"):
            if str(component.get("TZID", "")) == tzid:
                try:
                    return tzp.create_timezone(component)
                except (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError):
                    return None
        return None

    def place(self, value: date, tzid: str | None) -> tuple[datetime, tzinfo]:
        """An iCalendar date or date-time as (aware UTC instant, zone it was written in)."""
        if not isinstance(value, datetime):
            zone = self.default
            return datetime.combine(value, time(), zone).astimezone(UTC), zone
        if tzid:
            zone = self.zone(tzid)
            # icalendar may already have attached a zone from its global cache; keep only the wall time.
            return value.replace(tzinfo=zone).astimezone(UTC), zone
        if value.tzinfo is not None:
            return value.astimezone(UTC), UTC
        return value.replace(tzinfo=self.default).astimezone(UTC), self.default


def _named_zone(tzid: str) -> tzinfo | None:
    """IANA, Windows, or vendor-prefixed zone names; None when the name is none of these."""
    clean = tzid.strip().strip('"').strip("/")
    candidates = [clean, WINDOWS_TO_OLSON.get(clean, "")]
    parts = clean.split("/")
    candidates.extend("/".join(parts[i:]) for i in range(1, len(parts)))
    for key in candidates:
        if key.upper() in {"UTC", "GMT", "Z"}:
            return UTC
        if _ZONE_KEY.match(key) and len(key) <= 64:
            try:
                return ZoneInfo(key)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                continue
    return None


def _event(vevent: Any, method: Method, zones: _Zones, fallback_uid: str) -> InviteEvent | None:
    start_prop = _first(vevent, "DTSTART")
    start_value = _date_value(start_prop)
    if start_value is None:
        return None
    try:
        start_at, zone = zones.place(start_value, _tzid(start_prop))
        end_at = _end(vevent, start_value, start_at, zone, zones)
        recurrence = _first(vevent, "RECURRENCE-ID")
        recurrence_value = _date_value(recurrence)
        organizer = _address(_first(vevent, "ORGANIZER"))
        summary = str(_first(vevent, "SUMMARY") or "").strip()[:500]
        return InviteEvent(
            uid=_uid(vevent) or fallback_uid or _digest(vevent, summary, start_at),
            recurrence_id=zones.place(recurrence_value, _tzid(recurrence))[0] if recurrence_value else None,
            method=method,
            sequence=_sequence(_first(vevent, "SEQUENCE")),
            summary=summary,
            start_at=start_at,
            end_at=end_at,
            all_day=not isinstance(start_value, datetime),
            status=_status(_first(vevent, "STATUS")),
            organizer=organizer,
            attendees=_attendees(vevent.get("ATTENDEE")),
            rrule=_rrule(_first(vevent, "RRULE"), start_at.astimezone(zone), zone),
            dtstamp=_dtstamp(_first(vevent, "DTSTAMP")),
            exdates=_date_list(vevent.get("EXDATE"), zones),
            rdates=_date_list(vevent.get("RDATE"), zones),
            zone=zone,
        )
    except (ValueError, OverflowError, TypeError):
        # Dates at the edge of the representable range, or values icalendar kept in a shape we do not use.
        return None


def _end(vevent: Any, start_value: date, start_at: datetime, zone: tzinfo, zones: _Zones) -> datetime:
    end_prop = _first(vevent, "DTEND")
    end_value = _date_value(end_prop)
    if end_value is not None and isinstance(end_value, datetime) == isinstance(start_value, datetime):
        end_at = zones.place(end_value, _tzid(end_prop))[0]
    else:
        duration = getattr(_first(vevent, "DURATION"), "dt", None)
        if isinstance(duration, timedelta):
            # Nominal duration in the event's own zone: "P1D" stays one calendar day across DST.
            end_at = (start_at.astimezone(zone) + duration).astimezone(UTC)
        else:
            end_at = start_at + (timedelta(days=1) if not isinstance(start_value, datetime) else timedelta())
    if end_at <= start_at and not isinstance(start_value, datetime):
        return start_at + timedelta(days=1)
    return max(end_at, start_at)


def _first(component: Any, name: str) -> Any:
    value = component.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _date_value(prop: Any) -> date | None:
    try:
        value = getattr(prop, "dt", None)
    except ValueError:  # icalendar's BrokenCalendarProperty: the value did not parse
        return None
    if isinstance(value, tuple) and value:  # RDATE periods: (start, end or duration)
        value = value[0]
    return value if isinstance(value, date) else None


def _tzid(prop: Any) -> str | None:
    params = getattr(prop, "params", None) or {}
    tzid = params.get("TZID")
    return str(tzid) if tzid else None


def _date_list(values: Any, zones: _Zones) -> tuple[datetime, ...]:
    found: list[datetime] = []
    for value in values if isinstance(values, list) else [values] if values is not None else []:
        tzid = _tzid(value)
        for item in getattr(value, "dts", [])[:MAX_DATES]:
            instant = _date_value(item)
            if instant is not None and len(found) < MAX_DATES:
                found.append(zones.place(instant, _tzid(item) or tzid)[0])
    return tuple(sorted(set(found)))


def _uid(vevent: Any) -> str:
    return str(_first(vevent, "UID") or "").strip()[:2000]


def _digest(vevent: Any, summary: str, start_at: datetime) -> str:
    """A stand-in UID: updates cannot be matched without one, but re-reading the same message stays stable."""
    seed = f"{summary}|{start_at.isoformat()}|{_first(vevent, 'ORGANIZER') or ''}"
    return "followupd-" + hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()[:32]


def _sequence(value: Any) -> int:
    try:
        number = int(str(value).strip()) if value is not None else 0
    except ValueError:
        return 0
    # Google has been seen sending millisecond timestamps as SEQUENCE; keep them, but inside a 64-bit column.
    return min(max(number, 0), 2**63 - 1)


def _status(value: Any) -> MeetingStatus:
    name = str(value or "").strip().upper()
    if name == "CANCELLED":
        return MeetingStatus.CANCELLED
    return MeetingStatus.TENTATIVE if name == "TENTATIVE" else MeetingStatus.CONFIRMED


def _dtstamp(prop: Any) -> datetime | None:
    value = _date_value(prop)
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _address(value: Any) -> Address | None:
    if value is None:
        return None
    email = str(value).strip()
    if email.lower().startswith("mailto:"):
        email = email[7:]
    email = email.strip().strip("<>").lower()
    if email.count("@") != 1 or any(c.isspace() for c in email) or len(email) > 320:
        return None
    params = getattr(value, "params", None) or {}
    return Address(email, str(params.get("CN", "")).strip().strip('"'))


def _attendees(values: Any) -> tuple[Attendee, ...]:
    found: dict[str, Attendee] = {}
    for value in values if isinstance(values, list) else [values] if values is not None else []:
        params = getattr(value, "params", None) or {}
        address = _address(value)
        if address is None or str(params.get("CUTYPE", "")).upper() in _NOT_PEOPLE:
            continue
        partstat = str(params.get("PARTSTAT", "NEEDS-ACTION")).strip().upper() or "NEEDS-ACTION"
        found.setdefault(address.email, Attendee(address, partstat))
    return tuple(found.values())


def _rrule(value: Any, local_start: datetime, zone: tzinfo) -> str | None:
    """The RRULE with UNTIL made an aware UTC instant (what dateutil needs with an aware DTSTART), or None."""
    if not isinstance(value, vRecur) or not value.get("FREQ"):
        return None
    rule: Any = vRecur(value)  # icalendar leaves to_ical() unannotated
    until = rule.get("UNTIL")
    if until:
        rule["UNTIL"] = [_until_utc(until[0], zone)]
    try:
        text = str(rule.to_ical().decode("ascii", "replace"))
        rrulestr(text, dtstart=local_start)  # validate once here, so expansion never meets a broken rule
    except (ValueError, TypeError, OverflowError, KeyError):
        return None
    return text


def _until_utc(until: date, zone: tzinfo) -> datetime:
    if not isinstance(until, datetime):
        # A date UNTIL includes that whole day (RFC 5545 3.3.10).
        return datetime.combine(until, time(23, 59, 59), zone).astimezone(UTC)
    if until.tzinfo is None:
        return until.replace(tzinfo=zone).astimezone(UTC)
    return until.astimezone(UTC)
