"""A meeting's iTIP state as JSON, kept on its row so later messages can be folded into it.

:func:`dump_state` and :func:`load_state` round-trip a :class:`followupd.core.meetings.MeetingState` (the
winning event and the attendees' latest replies). Times are ISO 8601 UTC. The event's zone matters only for
expanding a recurrence across DST: IANA zones and fixed offsets are kept exactly; a zone defined by the
calendar itself (Outlook's "Customized Time Zone", Zoom's "GMT -0500 (Standard) / GMT -0400 (Daylight)") is
stored as the IANA zone whose offsets match it week by week over the event's year, or, when none does, as its
fixed offset at the event's start.
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from followupd.core.meetings import Attendee, InviteEvent, MeetingState, MeetingStatus, Reply
from followupd.core.types import Address

VERSION = 1
# Looked at in this order: the zones people mostly mean first, so a match reads as the reader expects.
_PREFERRED = ("Europe/London", "Europe/Berlin", "Europe/Helsinki", "America/New_York", "America/Chicago",
              "America/Denver", "America/Phoenix", "America/Los_Angeles", "Asia/Kolkata", "Asia/Shanghai",
              "Asia/Tokyo", "Australia/Sydney")  # fmt: skip
_REGIONS = ("Europe/", "America/", "Asia/", "Australia/", "Pacific/", "Africa/", "Atlantic/", "Indian/",
            "Antarctica/")  # fmt: skip
_SAMPLES = 53  # weekly offsets compared over a year: tells apart zones that switch to DST on other days


def dump_state(state: MeetingState) -> str:
    """The state as compact JSON."""
    return json.dumps(
        {"v": VERSION, "event": _dump_event(state.event), "replies": [_dump_reply(r) for r in state.replies]},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def load_state(text: str | None) -> MeetingState | None:
    """The state stored by :func:`dump_state`; None for missing or unreadable JSON (the next message rebuilds
    it)."""
    if not text:
        return None
    try:
        data = json.loads(text)
        if data.get("v") != VERSION:
            return None
        event = _load_event(data["event"])
        replies = tuple(_load_reply(item) for item in data.get("replies", []))
    except (ValueError, KeyError, TypeError, IndexError, zoneinfo.ZoneInfoNotFoundError):
        return None
    return MeetingState(event, replies)


def zone_name(zone: tzinfo, at: datetime) -> str:
    """A name :func:`load_zone` turns back into an equivalent zone: an IANA key, ``UTC`` or ``offset:<s>``."""
    key = getattr(zone, "key", None)
    if isinstance(zone, zoneinfo.ZoneInfo) and isinstance(key, str):
        return key
    if zone is UTC:
        return "UTC"
    if not isinstance(zone, timezone):
        match = _matching_zone(_offsets(zone, at.year))
        if match is not None:
            return match
    offset = zone.utcoffset(at.replace(tzinfo=None)) or timedelta()
    return f"offset:{int(offset.total_seconds())}"


def load_zone(name: str) -> tzinfo:
    """The zone named by :func:`zone_name`."""
    if name == "UTC":
        return UTC
    if name.startswith("offset:"):
        return timezone(timedelta(seconds=int(name[7:])))
    return zoneinfo.ZoneInfo(name)


# --- events


def _dump_event(event: InviteEvent) -> dict[str, Any]:
    return {
        "uid": event.uid,
        "rid": _iso(event.recurrence_id),
        "method": str(event.method),
        "seq": event.sequence,
        "summary": event.summary,
        "start": _iso(event.start_at),
        "end": _iso(event.end_at),
        "all_day": event.all_day,
        "status": event.status.value,
        "org": [event.organizer.email, event.organizer.name] if event.organizer else None,
        "att": [[a.address.email, a.address.name, a.partstat] for a in event.attendees],
        "rrule": event.rrule,
        "stamp": _iso(event.dtstamp),
        "ex": [_iso(d) for d in event.exdates],
        "rd": [_iso(d) for d in event.rdates],
        "zone": zone_name(event.zone, event.start_at),
    }


def _load_event(data: dict[str, Any]) -> InviteEvent:
    org = data.get("org")
    return InviteEvent(
        uid=str(data["uid"]),
        recurrence_id=_time(data.get("rid")),
        method=str(data["method"]),
        sequence=int(data["seq"]),
        summary=str(data.get("summary", "")),
        start_at=_required(data["start"]),
        end_at=_required(data["end"]),
        all_day=bool(data.get("all_day", False)),
        status=MeetingStatus(data["status"]),
        organizer=Address(str(org[0]), str(org[1])) if org else None,
        attendees=tuple(Attendee(Address(str(e), str(n)), str(p)) for e, n, p in data.get("att", [])),
        rrule=data.get("rrule"),
        dtstamp=_time(data.get("stamp")),
        exdates=tuple(_required(d) for d in data.get("ex", [])),
        rdates=tuple(_required(d) for d in data.get("rd", [])),
        zone=load_zone(str(data.get("zone", "UTC"))),
    )


def _dump_reply(reply: Reply) -> list[Any]:
    return [reply.address.email, reply.address.name, reply.partstat, reply.sequence, _iso(reply.dtstamp)]


def _load_reply(item: list[Any]) -> Reply:
    email, name, partstat, sequence, stamp = item
    return Reply(Address(str(email), str(name)), str(partstat), int(sequence), _time(stamp))


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _required(value: object) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError("a required time is missing")
    return parsed


# --- zones defined by the calendar itself


def _offsets(zone: tzinfo, year: int) -> tuple[int, ...]:
    start = datetime(year, 1, 1, 12, tzinfo=UTC)
    found = []
    for week in range(_SAMPLES):
        instant = start + timedelta(weeks=week)
        try:
            offset = instant.astimezone(zone).utcoffset()
        except (ValueError, OverflowError, TypeError):
            return ()
        found.append(int(offset.total_seconds()) if offset is not None else 0)
    return (year, *found)


@functools.lru_cache(maxsize=64)
def _matching_zone(signature: tuple[int, ...]) -> str | None:
    """The first IANA zone (by name) with the same weekly offsets, or None. Cached per offset pattern."""
    if not signature:
        return None
    year = signature[0]
    for key in _candidates():
        zone = zoneinfo.ZoneInfo(key)
        if _offsets(zone, year) == signature:
            return key
    return None


@functools.lru_cache(maxsize=1)
def _candidates() -> tuple[str, ...]:
    known = zoneinfo.available_timezones()
    rest = sorted((_REGIONS.index(k.split("/")[0] + "/"), k) for k in known if k.startswith(_REGIONS))
    return tuple(dict.fromkeys([*(k for k in _PREFERRED if k in known), *(k for _, k in rest)]))
