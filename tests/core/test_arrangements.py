"""Plain-text arrangements: the gate, detection at a fixed message date, quote stripping, thread folding."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followupd.core.arrangements import (
    Arrangement,
    Kind,
    detect,
    is_candidate,
    resolve_thread,
    strip_quoted,
)
from followupd.core.meetings import MeetingStatus

PST = timezone(timedelta(hours=-8))
SENT = datetime(2026, 3, 4, 10, 0, tzinfo=PST)  # a Wednesday, 10:00 at -08:00
P, C, R, X = Kind.PROPOSAL, Kind.CONFIRMATION, Kind.RESCHEDULE, Kind.CANCEL

# (subject, text, expected kind or None, expected start as local "MM-DD HH:MM" at -08:00, or None)
TABLE: list[tuple[str, str, Kind | None, str | None]] = [
    # proposals
    ("Coffee?", "coffee next Tuesday at 3pm?", P, "03-10 15:00"),
    ("", "Could we do a call tomorrow at 10:30?", P, "03-05 10:30"),
    ("", "lunch on Friday?", P, "03-06 12:00"),  # a day without a time: the meal's hour, lower confidence
    ("", "Drinks on Saturday?", P, "03-07 18:00"),
    (
        "",
        "Are you free on the 12th for lunch?",
        P,
        "03-12 12:00",
    ),  # dateparser alone reads "12th" as December
    ("", "Let's do Tuesday or Wednesday at 3pm for a call", P, "03-10 12:00"),  # options: the first is taken
    ("", "Can we chat on 3/10 at 4pm?", P, "03-10 16:00"),
    ("", "Call at 4pm CET on Friday?", P, "03-06 07:00"),  # a zone in the text wins over the sender's
    ("", "Thursday, 5 March at 2 p.m. for coffee?", P, "03-05 14:00"),
    ("", "coffee tomorrow for 30 minutes?", P, "03-05 12:00"),  # the duration is not a time
    ("", "call Tuesday for an hour at 2pm?", P, "03-10 14:00"),  # "Tuesday" + "... at 2pm" joined
    ("", "Do you have time for a call this afternoon?", P, "03-04 15:00"),
    ("", "Are you available for a quick zoom at 11am tomorrow?", P, "03-05 11:00"),
    ("", "Can we talk on 2026-03-09 14:00?", P, "03-09 14:00"),
    ("Sync next week", "Happy to help. Are you around Monday?", P, "03-09 12:00"),  # meeting word in subject
    # confirmations, reschedules, cancellations
    ("Re: coffee?", "Tuesday works!", C, "03-10 12:00"),
    ("Re: coffee?", "Sounds good, see you then!", C, None),  # refers back to the proposal
    ("Re: drinks", "See you Thursday at 7pm!", C, "03-05 19:00"),
    ("Re: coffee", "Yes! Looking forward to it.", C, None),
    ("Re: coffee", "So sorry, I need to reschedule.", R, None),
    ("Re: coffee", "Something came up - can we move it to Thursday at 2pm?", R, "03-05 14:00"),
    ("Re: lunch", "Sorry, Friday doesn't work for me. How about Monday at noon?", R, "03-09 12:00"),
    ("Re: lunch", "Friday doesn't work for me, sorry.", R, None),
    ("Re: lunch", "I have to cancel, sorry.", X, None),
    # never a meeting
    ("", "the report takes 30 minutes", None, None),
    ("", "I was in Berlin on March 3", None, None),
    ("", "Great to meet you for coffee on Monday!", None, None),  # past tense
    ("", "Can we do a call on March 2 at 3pm?", None, None),  # in the past
    ("", "Could we meet today at 9am?", None, None),  # an hour ago
    ("", "How about lunch on June 30?", None, None),  # more than 60 days out
    ("", "My flight lands Tuesday at 3pm.", None, None),  # no meeting word
    ("", "The invoice is due on March 15.", None, None),
    ("", "we have 2 kids and 3 dogs, call me", None, None),  # "we" is not Wednesday
    (
        "Lunch",
        "Lunch sometime?\n\nBest,\nAlice\nAlice Example | Speaking at SaaStr, March 12 at 9am",
        None,
        None,
    ),
    ("Notes", "Lunch sometime?\n-- \nAlice | office hours Tuesday 3pm", None, None),
    (
        "Re: call",
        "Thanks!\n\nFrom: Bob\nSent: Tuesday, March 3, 2026 9:14 AM\nTo: Alice\nSubject: call\n\nCall at 10?",
        None,
        None,
    ),
    ("Webinar", "Join our webinar call on Tuesday at 3pm! Register now.", None, None),
    (
        "Re: coffee",
        "Got it.\n\nOn Tue, Mar 3, 2026 at 9:14 AM Bob <bob@example.com> wrote:\n> coffee Tuesday at 3pm?",
        None,
        None,
    ),
]


@pytest.mark.parametrize(("subject", "text", "kind", "start"), TABLE, ids=[row[1][:40] for row in TABLE])
def test_detect_table(subject: str, text: str, kind: Kind | None, start: str | None) -> None:
    found = detect(subject, text, sent_at=SENT)
    if kind is None:
        assert found is None
        return
    assert found is not None
    assert (
        found.kind,
        found.start_at.astimezone(PST).strftime("%m-%d %H:%M") if found.start_at else None,
    ) == (
        kind,
        start,
    )
    assert 0.0 < found.confidence <= 1.0
    assert found.reason


def test_table_is_big_enough_and_every_detected_row_passes_the_gate() -> None:
    assert len(TABLE) >= 25
    for subject, text, kind, _ in TABLE:
        if kind is not None:
            assert is_candidate(subject, text), text


def test_time_makes_a_proposal_surer_than_a_day_alone() -> None:
    timed = detect("", "coffee Friday at 10am?", sent_at=SENT)
    day_only = detect("", "coffee on Friday?", sent_at=SENT)
    assert timed is not None
    assert day_only is not None
    assert timed.confidence > day_only.confidence
    assert (timed.has_day, timed.has_time, day_only.has_time) == (True, True, False)
    assert "time assumed" in day_only.reason


def test_dates_are_read_in_the_senders_own_offset() -> None:
    berlin = datetime(2026, 3, 4, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    found = detect("", "Call tomorrow at 9am?", sent_at=berlin)
    assert found is not None
    assert found.start_at == datetime(2026, 3, 5, 8, 0, tzinfo=UTC)


def test_start_is_aware_utc() -> None:
    found = detect("", "coffee next Tuesday at 3pm?", sent_at=SENT)
    assert found is not None
    assert found.start_at == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)


def test_the_gate() -> None:
    assert is_candidate("Coffee next week?", "")
    assert is_candidate("Re: catch up", "Sounds great - see you then")
    assert is_candidate("", "Need to reschedule, sorry")
    assert not is_candidate("Quarterly report", "Attached is the report; it takes 30 minutes to read.")
    assert not is_candidate("", "Call me maybe")  # a meeting word alone
    assert not is_candidate("", "Tuesday at 3pm the build broke")  # a time alone


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_gate_and_detect_never_raise(subject: str, text: str) -> None:
    is_candidate(subject, text)
    found = detect(subject, text, sent_at=SENT)
    assert found is None or isinstance(found, Arrangement)


def test_dateparser_is_imported_lazily() -> None:
    code = "import sys, followupd.core.arrangements; print('dateparser' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- strip_quoted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Tuesday works!\n\nOn Tue, Mar 3, 2026 at 9:14 AM Bob <bob@example.com> wrote:\n> coffee?",
            "Tuesday works!",
        ),
        # Gmail wraps a long attribution line.
        ("Yes.\n\nOn Tue, Mar 3, 2026 at 9:14 AM Robert Example <\nrobert@example.com> wrote:\n> hi", "Yes."),
        ("Sure.\n\nOn 3 Mar 2026, at 09:14, Bob <bob@example.com> wrote:\n\n> hi", "Sure."),  # Apple Mail
        ("Ok\n\nOn Tue, 3 Mar 2026, 09:14 Bob, <bob@example.com> wrote:\n> hi", "Ok"),  # Android
        ("Fine.\n\n-----Original Message-----\nFrom: Bob\nSent: Tuesday, March 3, 2026 9:14 AM", "Fine."),
        (
            "Fine.\n\nFrom: Bob Example <bob@example.com>\nSent: Tuesday, March 3, 2026 9:14 AM\nTo: me",
            "Fine.",
        ),
        ("Fine.\n________________________________\nFrom: Bob", "Fine."),  # Outlook on the web
        ("See below\n---------- Forwarded message ---------\nFrom: x", "See below"),
        (
            "Inline:\n> your question\nmy answer\n> another\nsecond answer",
            "Inline:\nmy answer\nsecond answer",
        ),
        ("Tuesday works\n\nSent from my iPhone", "Tuesday works"),
        ("Tuesday works\n-- \nBob Example\nCEO", "Tuesday works"),
        ("Hi Bob,\nTuesday works.\n\nBest,\nAlice\n+1 555 0100", "Hi Bob,\nTuesday works."),
        # A "Thanks," line followed by real paragraphs is not a sign-off.
        ("Hi,\nThanks,\n" + "This is a long paragraph that goes on well past a signature line. " * 3, None),
    ],
)
def test_strip_quoted(text: str, expected: str | None) -> None:
    assert strip_quoted(text) == (text.strip() if expected is None else expected)


def test_strip_quoted_is_bounded() -> None:
    assert len(strip_quoted("word " * 100_000)) == 2_000
    assert len(strip_quoted("word " * 100, max_chars=50)) == 50


# --- resolve_thread


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=PST)


def arrangement(text: str, sent_at: datetime, subject: str = "Re: coffee") -> Arrangement:
    found = detect(subject, text, sent_at=sent_at)
    assert found is not None, text
    return found


PROPOSAL = arrangement("coffee next Tuesday at 3pm?", at(4), subject="coffee")
TUESDAY_3PM = datetime(2026, 3, 10, 23, 0, tzinfo=UTC)


def test_proposal_confirmed_by_the_other_party() -> None:
    meeting = resolve_thread(
        [(at(4), True, PROPOSAL), (at(4, 12), False, arrangement("Tuesday works!", at(4, 12)))]
    )
    assert meeting is not None
    assert (meeting.status, meeting.start_at, meeting.proposed_by_user) == (
        MeetingStatus.CONFIRMED,
        TUESDAY_3PM,
        True,
    )
    assert meeting.confidence >= 0.85
    assert "you proposed" in meeting.reason
    assert "they confirmed" in meeting.reason
    assert meeting.decided_at == at(4, 12)


def test_proposal_alone_is_tentative_and_less_sure() -> None:
    meeting = resolve_thread([(at(4), False, PROPOSAL)])
    assert meeting is not None
    assert meeting.status == MeetingStatus.TENTATIVE
    assert meeting.confidence < 0.6


def test_confirming_your_own_proposal_counts_for_nothing() -> None:
    meeting = resolve_thread(
        [(at(4), True, PROPOSAL), (at(4, 11), True, arrangement("See you then!", at(4, 11)))]
    )
    assert meeting is not None
    assert meeting.status == MeetingStatus.TENTATIVE


def test_items_are_folded_in_time_order() -> None:
    confirmation = arrangement("Sounds good, see you then", at(5))
    meeting = resolve_thread([(at(5), False, confirmation), (at(4), True, PROPOSAL)])
    assert meeting is not None
    assert meeting.status == MeetingStatus.CONFIRMED


def test_confirmation_picks_one_of_several_options() -> None:
    options = arrangement("Coffee Tuesday at 3pm or Wednesday?", at(4), subject="coffee")
    pick = arrangement("Wednesday works for me", at(4, 12))
    meeting = resolve_thread([(at(4), True, options), (at(4, 12), False, pick)])
    assert meeting is not None
    assert meeting.start_at == datetime(2026, 3, 11, 23, 0, tzinfo=UTC)  # Wednesday, at the proposal's 3pm


def test_reschedule_then_new_time_then_confirmation() -> None:
    confirmed = [(at(4), True, PROPOSAL), (at(4, 12), False, arrangement("Tuesday works!", at(4, 12)))]
    later = [*confirmed, (at(6), False, arrangement("So sorry, I need to reschedule.", at(6)))]
    meeting = resolve_thread(later)
    assert meeting is not None
    assert (meeting.status, meeting.start_at) == (MeetingStatus.TENTATIVE, None)
    assert "reschedule" in meeting.reason
    later += [(at(6, 11), False, arrangement("Could we do Thursday at 2pm instead?", at(6, 11)))]
    later += [(at(6, 12), True, arrangement("Perfect, see you Thursday", at(6, 12)))]
    meeting = resolve_thread(later)
    assert meeting is not None
    assert (meeting.status, meeting.start_at) == (
        MeetingStatus.CONFIRMED,
        datetime(2026, 3, 12, 22, 0, tzinfo=UTC),
    )


def test_cancel() -> None:
    items = [(at(4), True, PROPOSAL), (at(5), False, arrangement("I have to cancel, sorry.", at(5)))]
    meeting = resolve_thread(items)
    assert meeting is not None
    assert meeting.status == MeetingStatus.CANCELLED
    assert meeting.start_at == TUESDAY_3PM


def test_nothing_to_resolve() -> None:
    assert resolve_thread([]) is None
    assert resolve_thread([(at(4), False, arrangement("Sounds good, see you then!", at(4)))]) is None
    assert resolve_thread([(at(4), False, arrangement("I need to reschedule", at(4)))]) is None
    vague = Arrangement(Kind.PROPOSAL, None, 0.4, "coffee next week")
    assert resolve_thread([(at(4), True, vague)]) is None


def test_confirmation_with_a_day_but_no_proposal_here() -> None:
    meeting = resolve_thread([(at(4), False, arrangement("See you Thursday at 7pm!", at(4)))])
    assert meeting is not None
    assert meeting.status == MeetingStatus.CONFIRMED
    assert 0.5 <= meeting.confidence < 0.8


def test_curly_apostrophes_as_typed_on_phones() -> None:
    assert is_candidate("Re: lunch", "Friday doesn\u2019t work for me")
    found = detect("Re: lunch", "Friday doesn\u2019t work for me", sent_at=SENT)
    assert found is not None
    assert (found.kind, found.start_at) == (Kind.RESCHEDULE, None)


def test_a_proposal_asks_or_names_a_clock_time() -> None:
    assert detect("", "I'll call you tomorrow", sent_at=SENT) is None
    found = detect("", "I'll call you tomorrow at 3pm", sent_at=SENT)
    assert found is not None
    assert found.kind == Kind.PROPOSAL


def test_list_tags_in_subjects_are_not_dates() -> None:
    assert detect("[PATCH 3/6] drivers: free the irq", "Is this available in the tree?", sent_at=SENT) is None


def test_a_cancelled_contract_is_not_a_meeting_moved_to_today() -> None:
    found = detect("The contract", "We need to cancel this contract. Please start today.", sent_at=SENT)
    assert found is not None
    assert (found.kind, found.start_at) == (Kind.CANCEL, None)


def test_half_hour_offsets() -> None:
    india = datetime(2026, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    found = detect("", "Call tomorrow at 4pm?", sent_at=india)
    assert found is not None
    assert found.start_at == datetime(2026, 3, 5, 10, 30, tzinfo=UTC)


def test_restating_the_agreed_time_keeps_it_confirmed() -> None:
    confirmed = [(at(4), True, PROPOSAL), (at(4, 12), False, arrangement("Tuesday works!", at(4, 12)))]
    again = arrangement("Great - coffee next Tuesday at 3pm?", at(5), subject="coffee")
    meeting = resolve_thread([*confirmed, (at(5), True, again)])
    assert meeting is not None
    assert (meeting.status, meeting.start_at) == (MeetingStatus.CONFIRMED, TUESDAY_3PM)
