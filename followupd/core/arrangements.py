"""Meetings agreed in words: "coffee next Tuesday at 3pm?" followed by "Tuesday works!".

Cheapest first, because this runs over every person-to-person message of a first scan:

1. :func:`is_candidate` - word sets and a few precompiled patterns over subject and text prefix, a few
   microseconds; most mail stops here (it lives in :mod:`followupd.core.phrases`, with the patterns).
2. :func:`detect` - quotes and signature stripped, the message classified by phrase (proposal, confirmation,
   reschedule, cancel); dateparser runs only on short windows around concrete day or time cues.
3. :func:`resolve_thread` - a thread's arrangements folded into one meeting, with a confidence and a reason.

English only. dateparser is imported lazily: it costs ~0.2 s to import and the CLI's start-up matters.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from followupd.core.meetings import MeetingStatus
from followupd.core.phrases import (
    ASK,
    BULK,
    CANCEL,
    CLOCK,
    DAY,
    DECLINE,
    HEADER_LINE,
    MAX_TEXT_CHARS,
    MEETING,
    OLD_TIME,
    PAST,
    RESCHEDULE,
    SPECIFIC,
    STRONG_CONFIRM,
    WEAK_CONFIRM,
    is_candidate,
    strip_quoted,
)

__all__ = [
    "MAX_TEXT_CHARS",
    "Arrangement",
    "Kind",
    "ThreadMeeting",
    "detect",
    "is_candidate",
    "resolve_thread",
    "strip_quoted",
]

MAX_AHEAD = timedelta(days=60)  # further out than this is not a meeting being arranged by mail
PAST_SLACK = timedelta(minutes=15)  # "call now at 10:00?" sent at 10:05 is still an arrangement
MAX_SENTENCES = 4  # sentences handed to dateparser per message
WINDOW = 48  # characters kept either side of a day/time cue: "next Tuesday at 3pm for half an hour" fits
DEFAULT_HOUR = 12  # a date without a time is placed at midday: at most half a day off either way

_F = re.IGNORECASE
_TAG = re.compile(r"\[[^\]]*\]")
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|fwd?|aw|sv)\s*:", _F)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_THE_NTH = re.compile(r"\bthe (\d{1,2})(?:st|nd|rd|th)\b", _F)
_MERIDIEM = re.compile(r"\b([ap])\.m\.", _F)
_PART_OF_DAY = {"morning": 9, "afternoon": 15, "evening": 18, "tonight": 19}
_MEAL_HOUR = {"breakfast": 8, "brunch": 11, "lunch": 12, "dinner": 19, "drinks": 18}
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")  # fmt: skip


class Kind(enum.StrEnum):
    """What a message does to an arrangement."""

    PROPOSAL = "proposal"
    CONFIRMATION = "confirmation"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Arrangement:
    """What one message says about a meeting. ``start_at`` is aware UTC or None when no day was named.

    ``has_day``/``has_time``: whether the text named the day and the clock time (else they were inferred:
    dateparser's "today or tomorrow" for a bare time, :data:`DEFAULT_HOUR` or a meal's hour for a bare day).
    """

    kind: Kind
    start_at: datetime | None
    confidence: float
    reason: str
    has_day: bool = False
    has_time: bool = False


@dataclass(frozen=True, slots=True)
class ThreadMeeting:
    """The meeting a thread arranged: status, start (None while a new time is being found), and why."""

    status: MeetingStatus
    start_at: datetime | None
    confidence: float
    reason: str
    proposed_by_user: bool
    decided_at: datetime


def detect(subject: str, text: str, *, sent_at: datetime) -> Arrangement | None:
    """What this message says about a meeting, or None. ``sent_at`` is aware, in the sender's own offset.

    Dates are searched relative to ``sent_at`` (preferring the future) in the sentences of the stripped text
    that carry a concrete day or time cue, and in the subject of a thread's first message. Durations, bare
    numbers, past dates, dates more than :data:`MAX_AHEAD` out, sentences in the past tense, quoted headers
    and signatures never yield a date. A confirmation without a date refers back to the proposal (see
    :func:`resolve_thread`).
    """
    body = strip_quoted(text).replace("\u2019", "'")  # "doesn’t" as typed on phones and Macs
    # "[PATCH 3/6]" and list tags are not dates; a reply's subject repeats the proposal, so only an original
    # subject is searched for dates.
    own_subject = "" if _REPLY_SUBJECT.match(subject) else _TAG.sub("", subject)
    if BULK.search(body):
        return None
    change = CANCEL.search(body) or RESCHEDULE.search(body) or DECLINE.search(body)
    found = _dates(_date_sentences(own_subject, body, change=change is not None), sent_at)
    meeting_word = MEETING.search(f"{subject}\n{body}")
    if change:
        # "Cancel this contract today" moves no meeting: a new time needs a meeting word to count.
        return _change(body, found if meeting_word else [])
    weak = WEAK_CONFIRM.search(body) and not ASK.search(body) and not PAST.search(body)
    if STRONG_CONFIRM.search(body) or weak:
        return _confirmation(body, found)
    # A proposal asks, or names a clock time: "I'll start on the docs tomorrow" arranges nothing.
    if found and meeting_word and (ASK.search(body) or any(item.has_time for item in found)):
        return _proposal(f"{own_subject}\n{body}", found, meeting_word.group(0))
    return None


def resolve_thread(items: Sequence[tuple[datetime, bool, Arrangement]]) -> ThreadMeeting | None:
    """Fold a thread's ``(sent_at, from_user, arrangement)`` items, in time order, into one meeting.

    A proposal confirmed by the other party is confirmed with high confidence; a proposal alone stays
    tentative with lower confidence; a later proposal or reschedule with a new time replaces the time, one
    without a time leaves the meeting tentative with no start; a cancel cancels. Confirming one's own
    proposal counts for nothing. Returns None when no day was ever named.
    """
    fold: _Fold | None = None
    for sent_at, from_user, arrangement in sorted(items, key=lambda item: item[0]):
        fold = _STEPS[arrangement.kind](fold, sent_at, from_user, arrangement)
    return fold.result() if fold is not None else None


# --- detect helpers


@dataclass(frozen=True, slots=True)
class _Found:
    text: str
    start_at: datetime
    has_day: bool
    has_time: bool


def _date_sentences(subject: str, body: str, *, change: bool) -> str:
    """Short windows around concrete cues, for dateparser: its cost grows with every token it is given.

    Sentences in the past tense, header lines and, in a cancel or decline, the sentence saying so (it names
    the old time: "Friday doesn't work") are skipped.
    """
    windows: list[str] = []
    for sentence in _SENTENCE.split(f"{subject}\n{body}"):
        cue = SPECIFIC.search(sentence)
        if cue is None or PAST.search(sentence) or HEADER_LINE.match(sentence):
            continue
        if change and OLD_TIME.search(sentence):
            continue
        start, end = max(cue.start() - WINDOW, 0), cue.end() + WINDOW
        # Cut at spaces, so that no half word is read as an abbreviation ("...ed" is not Wednesday).
        start = sentence.find(" ", start) + 1 if start else 0
        end = sentence.rfind(" ", 0, end) if end < len(sentence) else len(sentence)
        windows.append(sentence[start : max(end, cue.end())])
        if len(windows) == MAX_SENTENCES:
            break
    return "\n".join(windows)


def _dates(text: str, sent_at: datetime) -> list[_Found]:
    if not text:
        return []
    text = _MERIDIEM.sub(r"\1m", _THE_NTH.sub(lambda m: _nth(m, sent_at), text))
    # Imported here, not at the top: ~0.2 s to import, and most runs (and every CLI start) never need it.
    from dateparser.search import search_dates

    local = sent_at.replace(tzinfo=None)
    offset = sent_at.strftime("%z") or "+0000"
    settings: dict[str, Any] = {
        "RELATIVE_BASE": local,
        "PREFER_DATES_FROM": "future",
        "TIMEZONE": offset,
        "RETURN_AS_TIMEZONE_AWARE": True,
    }
    matches = search_dates(text, languages=["en"], settings=settings) or []
    found: list[_Found] = []
    for matched, value in _merge_times(matches):
        item = _accept(matched, value, text, sent_at)
        if item is not None:
            found.append(item)
    return found


def _nth(match: re.Match[str], sent_at: datetime) -> str:
    """ "the 12th" -> "March 12": dateparser reads a bare ordinal as a month. This month, or the next."""
    day = int(match.group(1))
    month = sent_at.month if day >= sent_at.day else sent_at.month % 12 + 1
    return f"{_MONTH_NAMES[month - 1]} {day}" if 1 <= day <= 31 else match.group(0)


def _merge_times(matches: list[tuple[str, datetime]]) -> list[tuple[str, datetime]]:
    """Join "Tuesday" + "an hour at 2pm": dateparser splits a day and a later bare time into two matches."""
    merged: list[tuple[str, datetime]] = []
    for matched, value in matches:
        if merged and CLOCK.search(matched) and not DAY.search(matched):
            previous, day = merged[-1]
            if DAY.search(previous) and not CLOCK.search(previous):
                merged[-1] = (f"{previous} {matched}", day.replace(hour=value.hour, minute=value.minute))
                continue
        merged.append((matched, value))
    return merged


def _accept(matched: str, value: datetime, text: str, sent_at: datetime) -> _Found | None:
    if not SPECIFIC.search(matched):
        return None  # "we" read as Wednesday, "30 minutes", "next week", bare numbers
    has_time = CLOCK.search(matched) is not None
    local = value.astimezone(sent_at.tzinfo)
    if not has_time:
        local = local.replace(hour=_default_hour(matched, text), minute=0, second=0, microsecond=0)
    start_at = local.astimezone(UTC)
    too_early = local.date() < sent_at.date() if not has_time else start_at < sent_at - PAST_SLACK
    if too_early or start_at - sent_at > MAX_AHEAD:
        return None
    return _Found(matched.strip(), start_at, DAY.search(matched) is not None, has_time)


def _default_hour(matched: str, text: str) -> int:
    lowered = matched.lower()
    for word, hour in _PART_OF_DAY.items():
        if word in lowered:
            return hour
    for word, hour in _MEAL_HOUR.items():
        if re.search(rf"\b{word}\b", text, _F):
            return hour
    return DEFAULT_HOUR


def _describe(item: _Found) -> str:
    guessed = "" if item.has_time else ", time assumed"
    return f"{item.text!r} -> {item.start_at:%Y-%m-%d %H:%M}Z{guessed}"


def _change(body: str, found: list[_Found]) -> Arrangement:
    """Cancel, reschedule or decline; with a new time it is a reschedule to that time."""
    if found:
        # The new time comes last: "can we move Tuesday's call to Thursday at 2?"
        new = found[-1]
        reason = f"reschedule to {_describe(new)}"
        return Arrangement(Kind.RESCHEDULE, new.start_at, 0.65, reason, new.has_day, new.has_time)
    if CANCEL.search(body) and not RESCHEDULE.search(body):
        return Arrangement(Kind.CANCEL, None, 0.75, f"cancel: {_phrase(body, CANCEL)!r}")
    phrase = _phrase(body, RESCHEDULE, DECLINE, CANCEL)
    return Arrangement(Kind.RESCHEDULE, None, 0.7, f"reschedule, no new time: {phrase!r}")


def _confirmation(body: str, found: list[_Found]) -> Arrangement:
    strong = STRONG_CONFIRM.search(body) is not None
    phrase = _phrase(body, STRONG_CONFIRM, WEAK_CONFIRM)
    confidence = 0.8 if strong else 0.55
    if not found:
        return Arrangement(Kind.CONFIRMATION, None, confidence, f"confirmation: {phrase!r}")
    first = found[0]
    reason = f"confirmation: {phrase!r}, {_describe(first)}"
    return Arrangement(Kind.CONFIRMATION, first.start_at, confidence, reason, first.has_day, first.has_time)


def _phrase(text: str, *patterns: re.Pattern[str]) -> str:
    """The first phrase any of the patterns finds, for the reason string."""
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return match.group(0)
    return ""


def _proposal(text: str, found: list[_Found], meeting_word: str) -> Arrangement:
    first = found[0]
    options = len({item.start_at for item in found})
    asked = ASK.search(text) is not None
    confidence = 0.45 + 0.2 * first.has_time + 0.1 * asked - 0.1 * (options - 1)
    notes = [_describe(first), f"meeting word {meeting_word!r}"]
    notes += ["asked"] if asked else []
    notes += [f"{options} options offered, first taken"] if options > 1 else []
    return Arrangement(
        Kind.PROPOSAL, first.start_at, round(max(confidence, 0.2), 2), "proposal: " + "; ".join(notes),
        first.has_day, first.has_time,
    )  # fmt: skip


# --- resolve_thread


@dataclass(slots=True)
class _Fold:
    """Working state while folding a thread; turned into a ThreadMeeting at the end."""

    status: MeetingStatus
    start_at: datetime | None
    proposal: float
    proposed_by_user: bool
    decided_at: datetime
    confirmation: float = 0.0
    cancel: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def result(self) -> ThreadMeeting:
        """The meeting, with a confidence that grows with proposal and confirmation strength."""
        if self.status == MeetingStatus.CONFIRMED:
            confidence = min(0.95, 0.35 + 0.4 * self.proposal + 0.3 * self.confirmation)
        elif self.status == MeetingStatus.CANCELLED:
            confidence = self.cancel
        else:
            confidence = 0.6 * self.proposal * (1.0 if self.start_at else 0.5)
        reason = "; ".join(self.reasons)
        return ThreadMeeting(
            self.status, self.start_at, round(confidence, 2), reason, self.proposed_by_user, self.decided_at
        )


def _who(from_user: bool) -> str:
    return "you" if from_user else "they"


def _on_proposal(fold: _Fold | None, sent_at: datetime, from_user: bool, item: Arrangement) -> _Fold | None:
    if item.start_at is None:
        return fold  # "coffee next week?": nothing to hold on to until a day is named
    if fold is not None and fold.status == MeetingStatus.CONFIRMED and fold.start_at == item.start_at:
        return fold  # restating the agreed time
    reasons = [*(fold.reasons if fold else []), f"{_who(from_user)} proposed {item.reason}"]
    return _Fold(MeetingStatus.TENTATIVE, item.start_at, item.confidence, from_user, sent_at, reasons=reasons)


def _on_confirmation(
    fold: _Fold | None, sent_at: datetime, from_user: bool, item: Arrangement
) -> _Fold | None:
    if fold is None or fold.start_at is None:
        if item.start_at is None or not item.has_day:
            return fold
        # "See you Tuesday at 3!" with no proposal in the thread: arranged elsewhere (a call, another thread).
        note = f"{_who(from_user)} confirmed without a proposal here: {item.reason}"
        return _Fold(MeetingStatus.CONFIRMED, item.start_at, 0.0, not from_user, sent_at, item.confidence,
                     reasons=[*(fold.reasons if fold else []), note])  # fmt: skip
    if fold.status != MeetingStatus.TENTATIVE or from_user == fold.proposed_by_user:
        return fold
    fold.status, fold.confirmation, fold.decided_at = MeetingStatus.CONFIRMED, item.confidence, sent_at
    fold.start_at = _agreed_start(fold.start_at, item)
    fold.reasons.append(f"{_who(from_user)} confirmed: {item.reason}")
    return fold


def _agreed_start(proposed: datetime, item: Arrangement) -> datetime:
    """A confirmation naming another day picks one of several options; naming the same weekday does not."""
    if item.start_at is None or not item.has_day or item.start_at.weekday() == proposed.weekday():
        return proposed
    if item.has_time:
        return item.start_at
    return item.start_at.replace(hour=proposed.hour, minute=proposed.minute)


def _on_reschedule(fold: _Fold | None, sent_at: datetime, from_user: bool, item: Arrangement) -> _Fold | None:
    if item.start_at is not None:
        reasons = [*(fold.reasons if fold else []), f"{_who(from_user)} asked to reschedule: {item.reason}"]
        return _Fold(
            MeetingStatus.TENTATIVE, item.start_at, item.confidence, from_user, sent_at, reasons=reasons
        )
    if fold is None or fold.status == MeetingStatus.CANCELLED:
        return fold
    fold.status, fold.start_at, fold.decided_at = MeetingStatus.TENTATIVE, None, sent_at
    fold.reasons.append(f"{_who(from_user)} asked to reschedule: {item.reason}")
    return fold


def _on_cancel(fold: _Fold | None, sent_at: datetime, from_user: bool, item: Arrangement) -> _Fold | None:
    if fold is None:
        return None
    fold.status, fold.cancel, fold.decided_at = MeetingStatus.CANCELLED, item.confidence, sent_at
    fold.reasons.append(f"{_who(from_user)} cancelled: {item.reason}")
    return fold


_STEPS = {
    Kind.PROPOSAL: _on_proposal,
    Kind.CONFIRMATION: _on_confirmation,
    Kind.RESCHEDULE: _on_reschedule,
    Kind.CANCEL: _on_cancel,
}
# A fold exists only once a day was named, which is why resolve_thread returns None before that.
