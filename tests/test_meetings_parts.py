"""The meetings pass's pure pieces: raw BODYSTRUCTURE reading, calendar slimming, the stored iTIP state."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from followupd.core.meetings import latest_states, occurrences, parse_calendar
from followupd.core.mime import calendar_parts, text_part, walk_message
from followupd.engine.meetings_apply import slim_calendar
from followupd.mail import parts
from followupd.store.meeting_json import dump_state, load_state, load_zone, zone_name
from tests.core import test_mime

FIXTURES = Path(__file__).parent / "fixtures" / "ics"
STRUCTURES = {name: getattr(test_mime, name) for name in dir(test_mime) if name.isupper()}
STRUCTURES = {name: value for name, value in STRUCTURES.items() if isinstance(value, bytes)}


def answer(structure: bytes, uid: int = 7) -> bytes:
    return b"3 FETCH (UID %d BODYSTRUCTURE " % uid + structure + b")\r\n"


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_own_structure_parser_agrees_with_imapclients(name: str) -> None:
    raw = STRUCTURES[name]
    theirs = parse_fetch_response([b"1 (UID 7 BODYSTRUCTURE " + raw + b")"])[7][b"BODYSTRUCTURE"]
    mine = parts.parse_structure(answer(raw))
    assert calendar_parts(mine) == calendar_parts(theirs)
    assert text_part(mine) == text_part(theirs)


def test_literals_escapes_and_garbage() -> None:
    with_literal = answer(
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)'
        b'("application" "octet-stream" ("name" {10}\r\nEin"l\r\n.ics) NIL NIL "base64" 100 NIL'
        b' ("attachment" ("filename" {9}\r\nEin"l.ics)) NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)'
    )
    assert parts.may_have_calendar(with_literal)
    [ref] = calendar_parts(parts.parse_structure(with_literal))
    assert (ref.part, ref.filename) == ("2", 'Ein"l.ics')
    escaped = answer(b'("text" "plain" ("name" "a \\"q\\" \\\\b") NIL NIL "7bit" 1 1 NIL NIL NIL NIL)')
    assert parts.parse_structure(escaped) == (
        b"text",
        b"plain",
        (b"name", b'a "q" \\b'),
        None,
        None,
        b"7bit",
        1,
        1,
        None,
        None,
        None,
        None,
    )
    assert parts.parse_structure(answer(b"(" * 500 + b")" * 500)) is None  # hostile nesting
    assert parts.parse_structure(b"garbage") is None
    assert parts.parse_structure(answer(b'("text" "pl')) is None


@given(st.binary(max_size=300))
def test_structure_parser_never_raises(data: bytes) -> None:
    parts.parse_structure(answer(data))
    parts.plain_text_part(answer(data))


def test_plain_text_shortcut_matches_the_full_parser() -> None:
    shapes = [
        b'("text" "plain" ("charset" "windows-1252") NIL NIL "quoted-printable" 178 4 NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8" "FORMAT" "flowed") NIL NIL "8BIT" 178 4 NIL NIL NIL NIL)',
        b'("text" "plain" NIL NIL NIL "7bit" 178 4 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "utf-8") NIL NIL "base64" 178 4)',
    ]
    for shape in shapes:
        quick = parts.plain_text_part(answer(shape))
        assert quick is not None and quick == text_part(parts.parse_structure(answer(shape))), shape
    attachment = b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 1 1 NIL ("attachment" NIL) NIL NIL)'
    assert parts.plain_text_part(answer(attachment)) is None  # left to the full parser
    assert parts.plain_text_part(answer(test_mime.GMAIL)) is None


def test_uid_ranges() -> None:
    assert parts._ranges([1, 2, 3, 7, 9, 10]) == ["1:3", "7", "9:10"]
    assert parts._ranges([]) == []
    assert parts._ranges([5]) == ["5"]


def _fixture_calendars() -> dict[str, str]:
    found = {}
    for path in sorted(FIXTURES.iterdir()):
        if path.suffix == ".ics":
            found[path.name] = path.read_text(encoding="utf-8")
        else:
            calendars, _ = walk_message(path.read_bytes())
            found.update((f"{path.name}#{i}", text) for i, text in enumerate(calendars))
    return found


@pytest.mark.parametrize("name", sorted(_fixture_calendars()))
def test_slimmed_calendars_give_the_same_events(name: str) -> None:
    text = _fixture_calendars()[name]
    full, slim = parse_calendar(text), parse_calendar(slim_calendar(text))
    # Zones the calendar defines itself are rebuilt, so compare them by their offsets, not by identity.
    assert [_comparable(e) for e in full] == [_comparable(e) for e in slim]
    assert len(slim_calendar(text)) <= len(text) + len(text.splitlines()) + 2


def _comparable(event: object) -> tuple[object, ...]:
    values = {k: getattr(event, k) for k in event.__slots__}  # type: ignore[attr-defined]
    zone = values.pop("zone")
    return (*values.values(), zone.utcoffset(datetime(2026, 1, 15)), zone.utcoffset(datetime(2026, 7, 15)))


def test_slimming_drops_descriptions_and_named_time_zones() -> None:
    google = (FIXTURES / "google_request.ics").read_text(encoding="utf-8")
    slim = slim_calendar(google)
    assert "DESCRIPTION" not in slim and "BEGIN:VTIMEZONE" not in slim and "\nX-" not in slim
    custom = (FIXTURES / "outlook_custom_tz_eastern.ics").read_text(encoding="utf-8")
    assert "BEGIN:VTIMEZONE" in slim_calendar(custom)  # "Customized Time Zone" is defined only there


@pytest.mark.parametrize(
    "name",
    [
        "apple_weekly_exdate.ics",
        "outlook_custom_tz_eastern.ics",
        "zoom_custom_tzid.ics",
        "meetup_weekly_forever.ics",
        "google_reply_declined.ics",
        "icloud_all_day.ics",
    ],
)
def test_stored_state_round_trips(name: str) -> None:
    for state in latest_states(parse_calendar((FIXTURES / name).read_text(encoding="utf-8"))).values():
        loaded = load_state(dump_state(state))
        assert loaded is not None
        assert (loaded.event.uid, loaded.start_at, loaded.end_at, loaded.status) == (
            state.event.uid,
            state.start_at,
            state.end_at,
            state.status,
        )
        assert loaded.attendees == state.attendees and loaded.replies == state.replies
        start = datetime(2026, 3, 1, tzinfo=UTC)
        window = timedelta(days=400)
        assert occurrences(loaded, start=start, horizon=window) == occurrences(
            state, start=start, horizon=window
        )


def test_zones_by_name_and_bad_json() -> None:
    at = datetime(2026, 3, 10, tzinfo=UTC)
    custom = parse_calendar((FIXTURES / "outlook_custom_tz_eastern.ics").read_text(encoding="utf-8"))[0].zone
    assert zone_name(custom, at) == "America/New_York"  # matched week by week over 2026
    assert zone_name(UTC, at) == "UTC" and load_zone("UTC") is UTC
    assert load_zone("offset:3600").utcoffset(at) == timedelta(hours=1)
    assert load_state(None) is None and load_state("{not json") is None and load_state('{"v": 99}') is None


def test_hostile_answers_are_read_to_their_end_and_dropped() -> None:
    many = b"* 1 FETCH (UID 1 BODYSTRUCTURE (" + b'"x" {1}\r\na' * (parts.MAX_LITERALS + 5) + b"))\r\n"
    huge = b"* 2 FETCH (UID 2 BODYSTRUCTURE (" + b"{%d}\r\n" % 3_000_000 + b"y" * 3_000_000 + b"))\r\n"
    fine = b'* 3 FETCH (UID 3 BODYSTRUCTURE ("text" "calendar" NIL NIL NIL "7bit" 1 1 NIL NIL NIL NIL))\r\n'
    stream = io.BytesIO(many + huge + fine + b"T1 OK done\r\n")
    first = stream.readline()
    assert parts._read_answer(stream.readline, stream.read, first) is None
    assert parts._read_answer(stream.readline, stream.read, stream.readline()) is None
    kept = parts._read_answer(stream.readline, stream.read, stream.readline())
    assert kept is not None and parts.may_have_calendar(kept)
    assert stream.readline() == b"T1 OK done\r\n"  # still in step with the server
