"""Invites nobody on this project wrote: ../shared/corpus beside the checkout, skipped when it is absent.

Runs walk_message + parse_calendar over every file of bluemind-imip (real invitation mails and calendar
exports from Google, Outlook/Exchange, Office 365/Teams, Zoom, Lotus Domino, Android, iPhone) and
nylas-sync-engine (invites, RSVPs, Meetup, bogus SEQUENCE). The files are read in place, never copied.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from followupd.core.meetings import (
    InviteEvent,
    MeetingStatus,
    latest_states,
    occurrences,
    parse_calendar,
)
from followupd.core.mime import walk_message

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus"
SOURCES = ("bluemind-imip", "nylas-sync-engine")

# Every file in these folders that carries calendar data is a real invite, reply or export written by a
# calendar program; each should give at least one event. 95% leaves room for files whose calendars
# legitimately hold none (BlueMind's task invites put a VTODO inline, which is not a meeting) without hiding a
# parser regression. Measured when this test was written: 137 of 137 files (100%); per calendar part, 68 of
# 71 parts in the .eml files, the three misses being exactly those VTODO parts.
MIN_YIELD = 0.95

pytestmark = pytest.mark.corpus


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    return sorted(p for source in SOURCES for p in (CORPUS / source).rglob("*") if p.is_file())


def calendars_of(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.suffix.lower() == ".ics":
        return [raw.decode("utf-8", "replace")]
    calendars, _ = walk_message(raw)
    return calendars


def events_of(relative: str) -> list[InviteEvent]:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"{relative} not in corpus")
    return [event for text in calendars_of(path) for event in parse_calendar(text)]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_every_file_parses_without_exception_and_invites_yield_events() -> None:
    files = corpus_files()
    with_calendar = 0
    with_events = 0
    empty: list[str] = []
    for path in files:
        calendars = calendars_of(path)
        if not calendars:
            continue
        with_calendar += 1
        if any(parse_calendar(text) for text in calendars):
            with_events += 1
        else:
            empty.append(str(path.relative_to(CORPUS)))
    assert with_calendar >= 100, f"only {with_calendar} calendar-carrying files found: corpus layout changed?"
    assert with_events / with_calendar >= MIN_YIELD, empty


def test_mail_without_calendar_data_gives_none() -> None:
    corpus_files()
    assert calendars_of(CORPUS / "bluemind-imip/resource-lmtp-filter-tests/mailWithoutImip.eml") == []


def test_outlook_cancel_with_a_display_name_tzid() -> None:
    (event,) = events_of("bluemind-imip/imip-parser-tests/outlook.invite.cancel.eml")
    assert (event.method, event.uid, event.sequence) == ("CANCEL", "A93D8AAF-53FE-40D1-990B-C056E13727F2", 1)
    # DTSTART;TZID="Sarajevo, Skopje, Warsaw, Zagreb":20120528T150000 - resolved by its VTIMEZONE (+02:00).
    assert event.start_at == utc(2012, 5, 28, 13, 0)


def test_outlook_new_update_cancel_sequence_folds_to_cancelled() -> None:
    events = [
        e
        for name in ("outlook.invite.new.eml", "outlook.invite.cancel.eml", "outlook.invite.update.eml")
        for e in events_of(f"bluemind-imip/imip-parser-tests/{name}")
    ]
    (state,) = latest_states(events).values()
    assert state.status == MeetingStatus.CANCELLED  # the update (SEQUENCE 1) arrives late; the CANCEL 1 holds


def test_google_request() -> None:
    # Google sends the calendar twice: inline text/calendar and an invite.ics attachment.
    inline, attached = events_of("bluemind-imip/imip-parser-tests/google.invite.new.eml")
    assert inline == attached
    event = inline
    assert (event.method, event.uid) == ("REQUEST", "c77u5rfv1m7rpujcicpimfip1g@google.com")
    assert (event.start_at, event.end_at) == (utc(2012, 5, 30, 9, 0), utc(2012, 5, 30, 12, 0))
    assert event.organizer is not None
    assert event.organizer.email == "tcataldo@gmail.com"


def test_teams_invite_with_windows_zone_name() -> None:
    (event,) = events_of("bluemind-imip/imip-parser-tests/outlook-teams-invite.eml")
    assert event.method == "REQUEST"
    assert event.start_at == utc(2021, 4, 2, 13, 30)  # 15:30 Romance Standard Time, summer time


def test_zoom_weekly_meeting_expands_across_the_dst_change() -> None:
    events = events_of("bluemind-imip/imip-parser-tests/zoom.vtimezone.eml")
    (state,) = latest_states(events).values()
    spans = occurrences(state, start=utc(2020, 9, 1), horizon=timedelta(days=120))
    starts = [start for start, _ in spans]
    assert starts[0] == utc(2020, 9, 17, 17, 30)  # 13:30 at -04:00
    assert starts[-1] == utc(2020, 12, 17, 18, 30)  # 13:30 at -05:00 after November 1
    assert len(starts) == 14


def test_google_and_icloud_cancellations() -> None:
    for first, second in (
        ("google_cancelled1.ics", "google_cancelled2.ics"),
        ("icloud_cancelled1.ics", "icloud_cancelled2.ics"),
    ):
        folder = "nylas-sync-engine/events-fixtures-ics"
        events = events_of(f"{folder}/{first}") + events_of(f"{folder}/{second}")
        (state,) = latest_states(events).values()
        assert state.status == MeetingStatus.CANCELLED, first
        (reversed_state,) = latest_states(events[::-1]).values()
        assert reversed_state == state


def test_bogus_sequence_and_uid_on_the_calendar() -> None:
    (bogus,) = events_of("nylas-sync-engine/events-fixtures-ics/bogus_sequence_number.ics")
    assert bogus.sequence == 1407317367304  # Google's millisecond timestamp, kept as is
    (meetup,) = events_of("nylas-sync-engine/events-fixtures-ics/meetup_infinite.ics")
    assert meetup.uid == "nih2h78am1cb1uqetgfkslrfrc@meetup.com"
