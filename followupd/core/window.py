"""Send windows such as ``"Mon-Fri 09:00-17:00"``: parsing, and the next moment a send may happen."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN_RE = re.compile(
    r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$"
)


class WindowError(ValueError):
    """The window text cannot be read; the message shows the expected form."""


@dataclass(frozen=True)
class Span:
    """Weekdays (0 = Monday) and a daily time range [start, end)."""

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class Window:
    """One or more spans, separated by ';' in the text form."""

    spans: tuple[Span, ...]

    def contains(self, local: datetime) -> bool:
        """Whether a local (window time zone) moment lies inside the window."""
        t = local.time().replace(tzinfo=None)
        return any(local.weekday() in s.days and s.start <= t < s.end for s in self.spans)


def parse_window(text: str) -> Window:
    """Read ``"Mon-Fri 09:00-17:00"``, ``"daily 08:00-20:00"`` or several spans joined by ``;``."""
    spans = tuple(_parse_span(part) for part in text.split(";") if part.strip())
    if not spans:
        raise WindowError(f"expected a window like 'Mon-Fri 09:00-17:00', got {text!r}")
    return Window(spans)


def _parse_span(text: str) -> Span:
    match = _SPAN_RE.match(text)
    if not match:
        raise WindowError(f"expected a window like 'Mon-Fri 09:00-17:00', got {text.strip()!r}")
    start, end = _parse_time(match["start"]), _parse_time(match["end"])
    if end <= start:
        raise WindowError(f"window {text.strip()!r} ends before it starts")
    return Span(_parse_days(match["days"]), start, end)


def _parse_time(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours > 23 or minutes > 59:
        raise WindowError(f"{text!r} is not a time of day (HH:MM, 00:00-23:59)")
    return time(hours, minutes)


def _parse_days(text: str) -> frozenset[int]:
    words = text.strip().lower()
    if words in ("daily", "every day", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in words.split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        if any(e not in _DAYS for e in ends) or len(ends) > 2:
            raise WindowError(
                f"unknown day(s) {part.strip()!r}; use Mon, Tue, Wed, Thu, Fri, Sat, Sun or 'daily'"
            )
        first, last = _DAYS.index(ends[0]), _DAYS.index(ends[-1])
        days.update(_DAYS.index(_DAYS[(first + i) % 7]) for i in range((last - first) % 7 + 1))
    return frozenset(days)


def next_open(
    window: Window, zone: tzinfo, *, now: datetime, holidays: Collection[date] = (), horizon_days: int = 21
) -> datetime | None:
    """The earliest moment at or after ``now`` inside the window and not on a holiday.

    None when there is no such moment within ``horizon_days``.

    ``now`` must be timezone-aware; the result is in ``zone``.
    """
    local = now.astimezone(zone)
    for offset in range(horizon_days + 1):
        day = (local + timedelta(days=offset)).date()
        if day in holidays:
            continue
        for span in sorted(window.spans, key=lambda s: s.start):
            if day.weekday() not in span.days:
                continue
            start = datetime.combine(day, span.start, zone)
            end = datetime.combine(day, span.end, zone)
            if end <= local:
                continue
            return max(start, local)
    return None
