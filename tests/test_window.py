"""Send windows: parsing and the next moment a send may happen."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from followupd.core.window import WindowError, next_open, parse_window

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Wednesday 10:00 Berlin: inside the window, now.
        (datetime(2026, 3, 4, 9, 0, tzinfo=UTC), datetime(2026, 3, 4, 10, 0, tzinfo=BERLIN)),
        # Wednesday 18:00 Berlin: after hours, next morning.
        (datetime(2026, 3, 4, 17, 0, tzinfo=UTC), datetime(2026, 3, 5, 9, 0, tzinfo=BERLIN)),
        # Friday evening: Monday morning.
        (datetime(2026, 3, 6, 17, 0, tzinfo=UTC), datetime(2026, 3, 9, 9, 0, tzinfo=BERLIN)),
        # Saturday: Monday.
        (datetime(2026, 3, 7, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 9, 0, tzinfo=BERLIN)),
    ],
)
def test_next_open_weekdays(now: datetime, expected: datetime) -> None:
    window = parse_window("Mon-Fri 09:00-17:00")
    assert next_open(window, BERLIN, now=now) == expected


def test_holidays_are_skipped() -> None:
    window = parse_window("Mon-Fri 09:00-17:00")
    now = datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
    got = next_open(window, BERLIN, now=now, holidays={date(2026, 12, 24), date(2026, 12, 25)})
    assert got == datetime(2026, 12, 28, 9, 0, tzinfo=BERLIN)


def test_several_spans_and_wrapping_day_ranges() -> None:
    window = parse_window("Mon-Fri 09:00-12:00; Sat 10:00-11:00")
    assert next_open(window, UTC, now=datetime(2026, 3, 6, 13, 0, tzinfo=UTC)) == datetime(
        2026, 3, 7, 10, 0, tzinfo=UTC
    )
    assert parse_window("Fri-Mon 09:00-10:00").spans[0].days == frozenset({4, 5, 6, 0})
    assert parse_window("daily 08:00-20:00").spans[0].days == frozenset(range(7))


@pytest.mark.parametrize(
    "text", ["", "Mon-Fri", "Mon-Fri 9-5", "Funday 09:00-10:00", "Mon 10:00-09:00", "Mon 25:00-26:00"]
)
def test_bad_windows(text: str) -> None:
    with pytest.raises(WindowError):
        parse_window(text)


def test_contains() -> None:
    window = parse_window("Mon-Fri 09:00-17:00")
    assert window.contains(datetime(2026, 3, 4, 16, 59, tzinfo=BERLIN))
    assert not window.contains(datetime(2026, 3, 4, 17, 0, tzinfo=BERLIN))
