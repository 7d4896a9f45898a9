"""iCalendar invites: lenient parsing, time zones, the order-independent reducer, and recurrence expansion."""

from __future__ import annotations

import time as clock
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followupd.core.meetings import (
    MAX_OCCURRENCES,
    Attendee,
    InviteEvent,
    MeetingState,
    MeetingStatus,
    Method,
    apply_invite,
    latest_states,
    occurrences,
    parse_calendar,
)
from followupd.core.mime import walk_message
from followupd.core.types import Address

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ics"
PST = timezone(timedelta(hours=-8))
GOOGLE_UID = "4k2j9x7q1m3n5p8r0t6v@google.com"
OUTLOOK_UID = (
    "040000008200E00074C5B7101A82E00800000000A0B1C2D3E4F5A601000000000000000"
    "010000000F1E2D3C4B5A69788796A5B4C3D2E1F00"
)
SAM = Address("sam@example.net", "Sam Example")
TUESDAY = datetime(2026, 3, 10, 22, tzinfo=UTC)
MARCH_1 = datetime(2026, 3, 1, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def one(name: str, *, default_tz: timezone = UTC) -> InviteEvent:
    events = parse_calendar((FIXTURES / name).read_text(), default_tz=default_tz)
    assert len(events) == 1, events
    return events[0]


# --- parsing: one fixture per client shape


def test_google_request_with_vtimezone() -> None:
    event = one("google_request.ics")
    assert (event.method, event.uid, event.sequence, event.recurrence_id) == ("REQUEST", GOOGLE_UID, 0, None)
    # 15:00 in Los Angeles, two days after the switch to daylight time (PDT, -7).
    assert (event.start_at, event.end_at) == (utc(2026, 3, 10, 22, 0), utc(2026, 3, 10, 22, 30))
    assert event.summary == "Coffee: Dana / Sam"
    assert event.status == MeetingStatus.CONFIRMED
    assert event.organizer == Address("dana@example.org", "Dana Organizer")
    # Addresses are lower-cased; the CN is kept as written.
    assert event.attendees == (
        Attendee(Address("dana@example.org", "Dana Organizer"), "ACCEPTED"),
        Attendee(Address("sam@example.net", "sam@example.net"), "NEEDS-ACTION"),
    )
    assert event.dtstamp == datetime(2026, 3, 4, 18, 1, 2, tzinfo=UTC)
    assert not event.all_day
    assert event.rrule is None


def test_google_update_and_cancel() -> None:
    update = one("google_update.ics")
    assert (update.sequence, update.start_at) == (1, utc(2026, 3, 11, 23, 0))
    cancel = one("google_cancel.ics")
    assert (cancel.method, cancel.sequence, cancel.status) == ("CANCEL", 2, MeetingStatus.CANCELLED)


def test_outlook_windows_tzid_and_missing_end_vcalendar() -> None:
    text = (FIXTURES / "outlook_request_no_end.ics").read_text()
    assert "END:VCALENDAR" not in text
    event = one("outlook_request_no_end.ics")
    assert event.uid == OUTLOOK_UID  # folded over two lines in the file
    assert (event.method, event.sequence) == ("REQUEST", 0)
    assert event.start_at == utc(2026, 3, 10, 9, 0)  # 10:00 W. Europe Standard Time (CET, +1)
    assert str(event.zone) == "Europe/Berlin"
    # The meeting room is invited as a RESOURCE: not a contact.
    assert [a.address.email for a in event.attendees] == ["sam@example.net"]
    assert event.organizer == Address("jonas.beispiel@example.de", "Jonas Beispiel")


def test_customized_time_zone_is_read_from_each_calendar_not_a_global_cache() -> None:
    # Outlook calls any non-standard zone "Customized Time Zone"; two senders, two different definitions.
    berlin = one("outlook_cancel_custom_tz.ics")
    eastern = one("outlook_custom_tz_eastern.ics")
    assert berlin.start_at == utc(2026, 3, 10, 9, 0)  # 10:00 at +01:00
    assert eastern.start_at == utc(2026, 3, 10, 14, 0)  # 10:00 at -04:00 (US daylight time from Mar 8)
    assert one("outlook_cancel_custom_tz.ics").start_at == utc(2026, 3, 10, 9, 0)  # and again, after eastern
    assert (berlin.method, berlin.status, berlin.sequence) == ("CANCEL", MeetingStatus.CANCELLED, 1)


def test_zoom_via_exchange_with_a_made_up_tzid() -> None:
    event = one("zoom_custom_tzid.ics")
    assert event.start_at == utc(2026, 3, 9, 17, 30)  # 13:30 at -04:00
    assert event.summary == "Zoom: intro call"


def test_replies() -> None:
    accepted = one("outlook_reply_accepted.ics")
    assert accepted.method == "REPLY"
    assert accepted.attendees == (Attendee(SAM, "ACCEPTED"),)
    declined = one("google_reply_declined.ics")
    assert declined.attendees == (Attendee(SAM, "DECLINED"),)


def test_apple_weekly_with_exdate() -> None:
    event = one("apple_weekly_exdate.ics")
    assert event.rrule == "FREQ=WEEKLY;UNTIL=20260428T075959Z"
    assert event.exdates == (utc(2026, 3, 31, 8, 0),)  # 10:00 Berlin summer time
    assert event.start_at == utc(2026, 3, 17, 9, 0)


def test_all_day_spans_local_midnights_of_the_message_zone() -> None:
    event = one("icloud_all_day.ics", default_tz=PST)
    assert event.all_day
    assert (event.start_at, event.end_at) == (utc(2026, 3, 12, 8, 0), utc(2026, 3, 14, 8, 0))


def test_floating_time_uses_the_message_offset_and_method_defaults_to_publish() -> None:
    event = one("floating_publish.ics", default_tz=PST)
    assert event.method == "PUBLISH"
    assert event.start_at == utc(2026, 3, 13, 2, 30)  # 18:30 at -08:00
    assert one("floating_publish.ics").start_at == utc(2026, 3, 12, 18, 30)


def test_vendor_prefixed_tzid_calendar_uid_and_a_broken_alarm() -> None:
    # No warning escapes (pytest turns warnings into errors); the VALARM's invalid TRIGGER costs nothing.
    event = one("meetup_weekly_forever.ics")
    assert event.uid == "weekly-python-night@meetup.example.com"  # from the VCALENDAR: the VEVENT has none
    assert event.start_at == utc(2020, 1, 8, 0, 0)  # 19:00 New York standard time
    assert event.rrule == "FREQ=WEEKLY;BYDAY=TU"


def test_teams_base64_invite_end_to_end() -> None:
    calendars, _ = walk_message((FIXTURES / "teams_invite.eml").read_bytes())
    (event,) = parse_calendar(calendars[0])
    assert event.start_at == utc(2026, 3, 5, 17, 0)  # 09:00 Pacific Standard Time
    assert event.organizer == Address("alex@contoso.example", "Alex Teams")


def test_gmail_sends_the_same_event_twice_and_folding_both_is_harmless() -> None:
    calendars, _ = walk_message((FIXTURES / "gmail_invite.eml").read_bytes())
    events = [e for text in calendars for e in parse_calendar(text)]
    assert len(events) == 2
    states = latest_states(events)
    assert list(states) == [(GOOGLE_UID, None)]
    assert states[(GOOGLE_UID, None)] == apply_invite(None, events[0])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        (FIXTURES / "garbage.ics").read_text(),
        "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:not-a-date\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "BEGIN:VEVENT\r\n" * 5_000,
        "BEGIN:VCALENDAR\r\n" + "X-JUNK:" + "a" * 100_000,
    ],
)
def test_garbage_gives_no_events(text: str) -> None:
    assert parse_calendar(text) == []


def test_lenient_repairs() -> None:
    lines = [
        "junk before the calendar",
        "BEGIN:VCALENDAR",
        "METHOD:request",
        "this line is not a content line",
        "BEGIN:VEVENT",
        "UID:lenient-1",
        "DTSTART:20260310T100000Z",
        "DURATION:PT45M",
        "SEQUENCE:not-a-number",
        "ATTENDEE;PARTSTAT=accepted:not-an-address",
        "ATTENDEE:MAILTO:Kim@Example.COM",
        "END:VTODO",
    ]
    (event,) = parse_calendar("\n".join(lines))  # bare LF, END:VEVENT and END:VCALENDAR both missing
    assert (event.method, event.sequence) == ("REQUEST", 0)
    assert event.end_at == utc(2026, 3, 10, 10, 45)
    assert event.attendees == (Attendee(Address("kim@example.com"), "NEEDS-ACTION"),)


def test_missing_uid_gets_a_stable_stand_in() -> None:
    text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20260310T100000Z\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n"
    first, second = parse_calendar(text)[0], parse_calendar(text)[0]
    assert first.uid == second.uid
    assert first.uid.startswith("followupd-")


def test_dates_at_the_edge_of_the_calendar_are_skipped_not_raised() -> None:
    text = (
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:year-one-new-york\nDTSTART;TZID=America/New_York:00010101T000000\n"
        "END:VEVENT\nBEGIN:VEVENT\nUID:year-zero-in-utc\nDTSTART;TZID=Asia/Tokyo:00010101T000000\nEND:VEVENT\n"
        "BEGIN:VEVENT\nUID:past-9999\nDTSTART:99991231T230000Z\nDURATION:P30D\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    assert [e.uid for e in parse_calendar(text)] == ["year-one-new-york"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parse_never_raises_on_any_text(text: str) -> None:
    assert isinstance(parse_calendar(text), list)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_parse_never_raises_on_damaged_invites(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.ics"))))
    lines = (FIXTURES / name).read_text().splitlines()
    kept = data.draw(st.lists(st.sampled_from(range(len(lines))), unique=True, max_size=len(lines)))
    damaged = [lines[i] for i in sorted(kept)]
    truncate = data.draw(st.booleans())
    if damaged and truncate:
        index = data.draw(st.integers(0, len(damaged) - 1))
        damaged[index] = damaged[index][: data.draw(st.integers(0, len(damaged[index])))]
    assert isinstance(parse_calendar("\r\n".join(damaged)), list)


# --- the reducer


def event(
    method: Method | str = Method.REQUEST,
    sequence: int = 0,
    *,
    start: datetime = TUESDAY,
    dtstamp: datetime | None = MARCH_1,
    attendees: tuple[Attendee, ...] = (Attendee(SAM),),
    uid: str = "u1",
    status: MeetingStatus = MeetingStatus.CONFIRMED,
) -> InviteEvent:
    return InviteEvent(
        uid=uid,
        recurrence_id=None,
        method=method,
        sequence=sequence,
        summary="Coffee",
        start_at=start,
        end_at=start + timedelta(minutes=30),
        all_day=False,
        status=status,
        organizer=Address("dana@example.org"),
        attendees=attendees,
        rrule=None,
        dtstamp=dtstamp,
    )


def fold(*events: InviteEvent) -> MeetingState:
    state: MeetingState | None = None
    for item in events:
        state = apply_invite(state, item)
    assert state is not None
    return state


def test_request_then_update_then_cancel_from_fixtures() -> None:
    state = fold(one("google_request.ics"), one("google_update.ics"))
    assert (state.status, state.start_at) == (MeetingStatus.CONFIRMED, utc(2026, 3, 11, 23))
    state = apply_invite(state, one("google_cancel.ics"))
    assert state.status == MeetingStatus.CANCELLED


def test_higher_sequence_wins_whatever_the_order() -> None:
    old, new = event(sequence=0), event(sequence=1, start=utc(2026, 3, 12, 9), dtstamp=utc(2026, 2, 1))
    assert fold(old, new).start_at == fold(new, old).start_at == utc(2026, 3, 12, 9)


def test_equal_sequence_later_dtstamp_wins() -> None:
    first = event(dtstamp=utc(2026, 3, 1))
    second = event(start=utc(2026, 3, 12, 9), dtstamp=utc(2026, 3, 2))
    assert fold(first, second).start_at == fold(second, first).start_at == utc(2026, 3, 12, 9)


def test_stale_cancel_does_not_cancel() -> None:
    state = fold(event(Method.REQUEST, 1), event(Method.CANCEL, 0, dtstamp=utc(2026, 3, 9)))
    assert state.status == MeetingStatus.CONFIRMED


def test_cancel_at_the_current_sequence_cancels_and_stays_cancelled() -> None:
    request, cancel = event(Method.REQUEST, 1, dtstamp=utc(2026, 3, 5)), event(Method.CANCEL, 1)
    assert fold(request, cancel).status == MeetingStatus.CANCELLED
    assert (
        fold(cancel, request).status == MeetingStatus.CANCELLED
    )  # a late copy of the request revives nothing


def test_reply_records_the_answer_without_moving_the_meeting() -> None:
    request = one("outlook_request_no_end.ics")
    reply = replace(one("outlook_reply_accepted.ics"), start_at=utc(2030, 1, 1))
    state = fold(request, reply)
    assert state.start_at == request.start_at
    assert state.attendees == (Attendee(Address("sam@example.net", "Sam Example"), "ACCEPTED"),)
    assert state.event.method == "REQUEST"


def test_answers_to_an_older_version_do_not_hold_after_an_update() -> None:
    declined = event(Method.REPLY, 0, attendees=(Attendee(SAM, "DECLINED"),))
    updated = event(Method.REQUEST, 1, start=utc(2026, 3, 13, 9))
    state = fold(event(Method.REQUEST, 0), declined, updated)
    assert state.attendees == (Attendee(SAM, "NEEDS-ACTION"),)
    accepted = event(Method.REPLY, 1, attendees=(Attendee(SAM, "ACCEPTED"),))
    assert apply_invite(state, accepted).attendees == (Attendee(SAM, "ACCEPTED"),)


def test_reply_only_meeting_for_organizers_who_invite_from_a_calendar_app() -> None:
    state = fold(one("google_reply_declined.ics"))
    assert state.event.method == "REPLY"
    assert state.start_at == utc(2026, 3, 10, 23)
    assert state.attendees == (Attendee(Address("sam@example.net", "Sam Example"), "DECLINED"),)
    # The organizer's own REQUEST, seen later, takes over the times but keeps the answer.
    state = apply_invite(state, one("google_request.ics"))
    assert state.start_at == utc(2026, 3, 10, 22)
    assert ("sam@example.net", "DECLINED") in [(a.address.email, a.partstat) for a in state.attendees]


def test_publish_is_informational_and_any_request_outranks_it() -> None:
    published = event(Method.PUBLISH, 5, start=utc(2026, 3, 20, 9))
    state = fold(published)
    assert state.status == MeetingStatus.CONFIRMED
    assert fold(published, event(Method.REQUEST, 0)).start_at == utc(2026, 3, 10, 22)
    assert fold(event(Method.REQUEST, 0), published).start_at == utc(2026, 3, 10, 22)


def test_counter_changes_nothing_once_the_meeting_exists() -> None:
    counter = event(Method.COUNTER, 3, start=utc(2026, 3, 20, 9))
    assert fold(event(), counter).start_at == utc(2026, 3, 10, 22)


def test_tentative_status_and_key_mismatch() -> None:
    assert fold(event(status=MeetingStatus.TENTATIVE)).status == MeetingStatus.TENTATIVE
    with pytest.raises(ValueError, match="does not belong"):
        apply_invite(fold(event()), event(uid="other"))


def events_of_one_uid() -> st.SearchStrategy[list[InviteEvent]]:
    def build(
        sequences: list[int], methods: list[str], hours: list[int], answers: list[str]
    ) -> list[InviteEvent]:
        return [
            event(
                method,
                seq,
                start=utc(2026, 3, 10, hour),
                dtstamp=utc(2026, 3, 1, hour),
                attendees=(Attendee(SAM, answer),),
            )
            for seq, method, hour, answer in zip(sequences, methods, hours, answers, strict=False)
        ]

    size = st.shared(st.integers(1, 6))
    return st.builds(
        build,
        size.flatmap(lambda n: st.lists(st.integers(0, 50), min_size=n, max_size=n, unique=True)),
        size.flatmap(
            lambda n: st.lists(
                st.sampled_from(["REQUEST", "CANCEL", "REPLY", "PUBLISH"]), min_size=n, max_size=n
            )
        ),
        size.flatmap(lambda n: st.lists(st.integers(0, 23), min_size=n, max_size=n)),
        size.flatmap(
            lambda n: st.lists(st.sampled_from(["ACCEPTED", "DECLINED", "TENTATIVE"]), min_size=n, max_size=n)
        ),
    )


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_arrival_order_converges(data: st.DataObject) -> None:
    events = data.draw(events_of_one_uid())
    shuffled = data.draw(st.permutations(events))
    assert fold(*shuffled) == fold(*events)


def test_same_event_twice_is_idempotent() -> None:
    request = one("google_request.ics")
    assert fold(request, request) == fold(request)


# --- occurrences


def test_weekly_keeps_local_time_across_dst_and_skips_exdate() -> None:
    state = fold(one("apple_weekly_exdate.ics"))
    spans = occurrences(state, start=utc(2026, 3, 1), horizon=timedelta(days=90))
    starts = [s for s, _ in spans]
    # 10:00 Berlin: 09:00 UTC in winter time, 08:00 UTC from March 29; March 31 excluded; UNTIL ends April 28.
    assert starts == [
        utc(2026, 3, 17, 9),
        utc(2026, 3, 24, 9),
        utc(2026, 4, 7, 8),
        utc(2026, 4, 14, 8),
        utc(2026, 4, 21, 8),
    ]
    assert all(end - start == timedelta(minutes=30) for start, end in spans)


def test_infinite_weekly_rule_is_bounded_and_fast() -> None:
    state = fold(one("meetup_weekly_forever.ics"))
    began = clock.perf_counter()
    spans = occurrences(state, start=utc(2026, 3, 1), horizon=timedelta(days=28))
    assert clock.perf_counter() - began < 0.5  # fast-forwarded, not stepped through since 2020
    # 19:00 New York: 00:00 UTC in standard time, 23:00 UTC from March 8 (US daylight time).
    assert [s for s, _ in spans] == [
        utc(2026, 3, 4),
        utc(2026, 3, 10, 23),
        utc(2026, 3, 17, 23),
        utc(2026, 3, 24, 23),
    ]


def test_hostile_rules_are_capped() -> None:
    base = event()
    every_second = replace(base, rrule="FREQ=SECONDLY;COUNT=100000000", start_at=utc(1970, 1, 1))
    assert occurrences(fold(every_second), start=utc(2026, 1, 1), horizon=timedelta(days=1)) == []
    dense = replace(base, rrule="FREQ=MINUTELY", start_at=utc(2026, 3, 1))
    assert len(occurrences(fold(dense), start=utc(2026, 3, 1), horizon=timedelta(days=30))) == MAX_OCCURRENCES


def test_single_meeting_and_cancelled_meeting() -> None:
    state = fold(event())
    start, horizon = utc(2026, 3, 1), timedelta(days=30)
    assert occurrences(state, start=start, horizon=horizon) == [
        (utc(2026, 3, 10, 22), utc(2026, 3, 10, 22, 30))
    ]
    assert occurrences(state, start=utc(2026, 3, 11), horizon=timedelta(days=1)) == []
    assert occurrences(fold(event(), event(Method.CANCEL)), start=start, horizon=horizon) == []


def test_overrides_move_or_cancel_one_occurrence() -> None:
    master = fold(replace(event(), rrule="FREQ=DAILY;COUNT=3"))
    moved = fold(replace(event(sequence=1, start=utc(2026, 3, 11, 23)), recurrence_id=utc(2026, 3, 11, 22)))
    dropped = fold(replace(event(Method.CANCEL, 1), recurrence_id=utc(2026, 3, 12, 22)))
    spans = occurrences(master, start=utc(2026, 3, 1), horizon=timedelta(days=30), overrides=[moved, dropped])
    assert [s for s, _ in spans] == [utc(2026, 3, 10, 22), utc(2026, 3, 11, 23)]


def test_rdate_alone_keeps_dtstart() -> None:
    state = fold(replace(event(), rdates=(utc(2026, 3, 17, 22),)))
    spans = occurrences(state, start=utc(2026, 3, 1), horizon=timedelta(days=30))
    assert [s for s, _ in spans] == [utc(2026, 3, 10, 22), utc(2026, 3, 17, 22)]


def test_all_day_recurrence_uses_the_date_until() -> None:
    text = (
        "BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:allday-weekly\nDTSTART;VALUE=DATE:20260302\n"
        "RRULE:FREQ=WEEKLY;UNTIL=20260316\nEXDATE;VALUE=DATE:20260309\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    (parsed,) = parse_calendar(text, default_tz=PST)
    spans = occurrences(fold(parsed), start=utc(2026, 3, 1), horizon=timedelta(days=60))
    assert [s.astimezone(PST).date() for s, _ in spans] == [date(2026, 3, 2), date(2026, 3, 16)]


def calendar(*vevents: str, method: str = "REQUEST", extra: str = "") -> str:
    body = "".join(f"BEGIN:VEVENT\r\n{v.strip()}\r\nEND:VEVENT\r\n" for v in vevents)
    return f"BEGIN:VCALENDAR\r\nMETHOD:{method}\r\n{extra}{body}END:VCALENDAR\r\n"


@pytest.mark.parametrize(
    ("tzid", "expected"),
    [
        ("Romance Standard Time", utc(2026, 3, 10, 9)),  # Windows name, no VTIMEZONE sent
        ("Europe/Paris", utc(2026, 3, 10, 9)),
        ('"Europe/Paris"', utc(2026, 3, 10, 9)),
        ("UTC", utc(2026, 3, 10, 10)),
        ("GMT", utc(2026, 3, 10, 10)),
        ("No Such Zone", utc(2026, 3, 10, 18)),  # unknown, no VTIMEZONE: read in the message's zone (-08:00)
        ("../../etc/passwd", utc(2026, 3, 10, 18)),
        ("Europe", utc(2026, 3, 10, 18)),  # a directory of the zone database, not a zone
        ("x" * 300, utc(2026, 3, 10, 18)),  # too long for a file name
    ],
)
def test_tzid_resolution_without_vtimezone(tzid: str, expected: datetime) -> None:
    (parsed,) = parse_calendar(calendar(f"UID:tz\r\nDTSTART;TZID={tzid}:20260310T100000"), default_tz=PST)
    assert parsed.start_at == expected


def test_end_in_another_zone_and_default_durations() -> None:
    text = calendar(
        "UID:a\r\nDTSTART;TZID=Europe/Berlin:20260310T100000\r\nDTEND;TZID=America/New_York:20260310T060000",
        "UID:b\r\nDTSTART:20260310T100000Z",
        "UID:c\r\nDTSTART;VALUE=DATE:20260310",
        "UID:d\r\nDTSTART:20260310T100000Z\r\nDTEND:20260310T090000Z",  # ends before it starts
    )
    spans = {e.uid: (e.start_at, e.end_at) for e in parse_calendar(text)}
    assert spans["a"] == (utc(2026, 3, 10, 9), utc(2026, 3, 10, 10))
    assert spans["b"] == (utc(2026, 3, 10, 10), utc(2026, 3, 10, 10))  # RFC 5545: no DTEND, no duration
    assert spans["c"] == (utc(2026, 3, 10), utc(2026, 3, 11))  # all day: one day
    assert spans["d"] == (utc(2026, 3, 10, 10), utc(2026, 3, 10, 10))


def test_several_calendars_and_the_event_cap() -> None:
    two = calendar("UID:one\r\nDTSTART:20260310T100000Z") + calendar("UID:two\r\nDTSTART:20260311T100000Z")
    assert [e.uid for e in parse_calendar(two)] == ["one", "two"]
    many = calendar(*(f"UID:{i}\r\nDTSTART:20260310T100000Z" for i in range(300)), method="PUBLISH")
    assert len(parse_calendar(many)) == 200
    assert parse_calendar("BEGIN:VCALENDAR\r\n" + "X" * 2_000_001) == []


def test_attendees_are_deduplicated_and_rooms_dropped() -> None:
    text = calendar(
        "UID:att\r\nDTSTART:20260310T100000Z\r\n"
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:kim@example.com\r\n"
        "ATTENDEE;PARTSTAT=DECLINED:MAILTO:KIM@example.com\r\n"
        "ATTENDEE;CUTYPE=ROOM:mailto:room@example.com\r\n"
        "ATTENDEE:mailto:two@@example.com\r\n"
        "ORGANIZER:not an address"
    )
    (parsed,) = parse_calendar(text)
    assert parsed.attendees == (Attendee(Address("kim@example.com"), "ACCEPTED"),)
    assert parsed.organizer is None


def test_a_broken_rrule_leaves_a_single_meeting() -> None:
    (parsed,) = parse_calendar(calendar("UID:r\r\nDTSTART:20260310T100000Z\r\nRRULE:FREQ=SOMETIMES;COUNT=x"))
    assert parsed.rrule is None
    assert occurrences(fold(parsed), start=utc(2026, 3, 1), horizon=timedelta(days=30)) == [
        (utc(2026, 3, 10, 10), utc(2026, 3, 10, 10))
    ]


def test_a_changed_occurrence_is_its_own_meeting() -> None:
    text = calendar(
        "UID:series\r\nDTSTART:20260310T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3",
        "UID:series\r\nRECURRENCE-ID:20260311T100000Z\r\nDTSTART:20260311T150000Z\r\nSEQUENCE:1",
    )
    states = latest_states(parse_calendar(text))
    assert set(states) == {("series", None), ("series", utc(2026, 3, 11, 10))}
    master, moved = states[("series", None)], states[("series", utc(2026, 3, 11, 10))]
    spans = occurrences(master, start=utc(2026, 3, 1), horizon=timedelta(days=30), overrides=[moved])
    assert [s for s, _ in spans] == [utc(2026, 3, 10, 10), utc(2026, 3, 11, 15), utc(2026, 3, 12, 10)]
    assert len(occurrences(master, start=utc(2026, 3, 1), horizon=timedelta(days=30), limit=2)) == 2


def test_a_vtimezone_icalendar_chokes_on_costs_only_the_zone() -> None:
    # Found by fuzzing: two TZIDs in one VTIMEZONE make icalendar raise AttributeError.
    text = calendar(
        "UID:two-tzids\r\nDTSTART;TZID=Customized Time Zone:20260310T100000",
        extra="BEGIN:VTIMEZONE\r\nTZID:Customized Time Zone\r\nTZID:Other\r\nEND:VTIMEZONE\r\n",
    )
    (parsed,) = parse_calendar(text, default_tz=PST)
    assert parsed.start_at == utc(2026, 3, 10, 18)  # no usable zone: the message's own offset
