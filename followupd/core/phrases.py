"""English cues in plain-text mail: whose words a body holds, and which words hint at a meeting.

:func:`strip_quoted` keeps the author's own words (quoted replies, forwarded parts and signature removed), so
that a date in a quoted message or a signature is never read as a new arrangement. :func:`is_candidate` is
the cheap gate in front of :func:`followupd.core.arrangements.detect`. The patterns here are shared with it.
Both are re-exported by :mod:`followupd.core.arrangements`.
"""

from __future__ import annotations

import re

MAX_TEXT_CHARS = 2_000

_F = re.IGNORECASE
_WEEKDAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day|tue|tues|wed|thu|thur|thurs|fri"
_MONTH = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_ORD = r"(?:st|nd|rd|th)?"
_CLOCK_RE = r"\b\d{1,2}(?::[0-5]\d)?\s*[ap]\.?m\b|\b(?:[01]?\d|2[0-3]):[0-5]\d\b|\bnoon\b|\bmidnight\b"
_DAY_RE = (
    rf"\b(?:{_WEEKDAY})\b|\b(?:today|tonight|tomorrow|tmrw|this (?:morning|afternoon|evening))\b"
    rf"|\b(?:{_MONTH})\.?\s+\d{{1,2}}{_ORD}\b|\bthe \d{{1,2}}(?:st|nd|rd|th)\b"
    rf"|\b\d{{1,2}}{_ORD}\s+(?:of\s+)?(?:{_MONTH})\b|\b\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?\b|\b\d{{4}}-\d\d-\d\d\b"
)
CLOCK = re.compile(_CLOCK_RE, _F)
DAY = re.compile(_DAY_RE, _F)
SPECIFIC = re.compile(f"{_CLOCK_RE}|{_DAY_RE}", _F)
MEETING = re.compile(
    r"\b(?:coffee|tea|lunch|dinner|breakfast|brunch|drinks?|beers?|call|phone|meet(?:ing|up)?|catch[- ]?up"
    r"|chat|talk|zoom|teams|hangouts?|skype|facetime|video|sync|1:1|one[- ]on[- ]one|visit"
    r"|(?:stop|swing|come) by|get together|grab|hang out|free|available|availability|slot|invite|schedule)\b",
    _F,
)
STRONG_CONFIRM = re.compile(
    r"\b(?:works for me|(?:that|this|it|which|\w+day|[ap]m|\d) works\b|works (?:great|perfectly|fine|well)"
    r"|see you (?:then|there|soon|tomorrow|on|at|next|\w+day)|it'?s a date|count me in|confirmed|booked"
    r"|(?:sent|sending|send) (?:you )?(?:an?|the) (?:calendar )?invite"
    r"|looking forward to (?:it|seeing|meeting))",
    _F,
)
WEAK_CONFIRM = re.compile(
    r"\b(?:sounds (?:good|great|perfect)|perfect|great|deal|sure thing)\b|\A\s*(?:yes|yep|sure|absolutely)\b",
    _F,
)
DECLINE = re.compile(
    r"\b(?:(?:doesn'?t|does not|won'?t|will not) work|can'?t (?:do|make)|cannot (?:do|make)"
    r"|(?:won'?t|will not) be able to|unable to make|not (?:free|available))\b",
    _F,
)
RESCHEDULE = re.compile(
    r"\b(?:reschedul\w*|postpon\w*|push (?:it|this|that|our \w+|the \w+) (?:back|out|to|by)"
    r"|move (?:it|this|that|our \w+|the \w+) to|rain ?check|something (?:has )?come up|came up)\b",
    _F,
)
CANCEL = re.compile(r"\b(?:cancel(?:l?ed|l?ing)?|call (?:it|this) off)\b", _F)
OLD_TIME = re.compile(f"{DECLINE.pattern}|{CANCEL.pattern}", _F)
# The gate. A regex scan costs ~25 ns a character in Python, and a str.find per keyword adds up: instead the
# text is split into a set of ASCII words once (bytes.translate + split run in C), keyword sets are checked
# against it, and a regex runs only on the few texts those let through. Sloppy on purpose: detect() is exact.
_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789:'")
_TO_WORDS = bytes(c if c in _WORD_BYTES else 0x20 for c in range(256))
_GATE_CHANGE = re.compile(f"{STRONG_CONFIRM.pattern}|{DECLINE.pattern}|{RESCHEDULE.pattern}|{CANCEL.pattern}")
_GATE_NUMBER = re.compile(
    r"[0-9](?::[0-5][0-9])?\s*[ap]\.?m\b|[0-9]:[0-5][0-9]|[0-9]/[0-9]|[0-9](?:st|nd|rd|th)\b"
)


def _words(text: str) -> frozenset[bytes]:
    return frozenset(text.encode("ascii").split())


# Every phrase _GATE_CHANGE finds contains one of these words, or both words of one of these pairs
# ("see you then": see + you). Common words only count in pairs, so that "not" alone does not cost a regex.
_CHANGE_WORDS = _words(
    "works confirmed booked invite reschedule rescheduled rescheduling postpone postponed raincheck rain "
    "cancel cancelled canceled cancelling canceling doesn't doesnt won't wont can't cant cannot unable count "
    "date push move came"
)
_CHANGE_PAIRS = tuple(
    tuple(pair.encode().split())
    for pair in ("see you", "looking forward", "not work", "not able", "not free", "not available", "come up",
                 "call off")
)  # fmt: skip
_MEETING_WORDS = _words(
    "coffee lunch dinner breakfast brunch drink drinks beer beers call phone meet meeting meetup catch "
    "catchup chat talk zoom teams hangout hangouts skype facetime video sync 1:1 visit swing together grab "
    "hang free available availability slot invite schedule"
)
_DAY_WORDS = _words(
    "monday tuesday wednesday thursday friday saturday sunday tue tues wed thu thur thurs fri today "
    "tonight tomorrow tmrw noon midnight week weekend morning afternoon evening january february march "
    "april may june july august september october november december jan feb mar apr jun jul aug sep sept oct "
    "nov dec"
)
ASK = re.compile(
    r"\?|\b(?:how about|what about|would you|could we|can we|shall we|let'?s"
    r"|are you (?:free|around|available)|do you have time|want to|up for)\b",
    _F,
)
PAST = re.compile(
    r"\b(?:was|were|met|had|did|went|last|ago|yesterday|earlier"
    r"|thanks? (?:you )?for (?:the|meeting|your time)"
    r"|(?:great|nice|good) (?:to see|to meet|meeting|seeing|talking))\b",
    _F,
)
BULK = re.compile(r"\b(?:unsubscribe|webinar|register|rsvp|newsletter|view in (?:your )?browser)\b", _F)
HEADER_LINE = re.compile(r"^\s*(?:sent|date|from|to|subject|cc):", _F)
_FROM_LINE = re.compile(r"^\s*from:\s", _F)
_QUOTE_START = re.compile(
    r"^\s*(?:-{2,}\s*original message\s*-{2,}|-{5,}\s*forwarded message|begin forwarded message:|_{10,}\s*$"
    r"|on\b.*\bwrote:\s*$|.*\bwrote:\s*$)",
    _F,
)
_WROTE_END = re.compile(r"\bwrote:\s*$", _F)
_SIGNATURE = re.compile(
    r"^(?:--\s*|sent from my \w+.*|get outlook for \w+.*|sent from (?:mail|outlook|yahoo) .*)$", _F
)
_VALEDICTION = re.compile(
    r"^\s*(?:best|cheers|thanks|thank you|regards|best regards|kind regards|warm regards|all the best"
    r"|sincerely|talk soon|speak soon|many thanks|br|yours)[,.!]?\s*$",
    _F,
)


def strip_quoted(text: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """The author's own words: quoted lines, reply headers, forwarded parts and signature removed.

    Recognises ">" lines, "On ... wrote:" (also wrapped over two lines), Outlook's "-----Original
    Message-----" and "From:/Sent:" blocks, underscore separators, "-- " and "Sent from my iPhone", and a
    sign-off ("Best,") followed only by a few short lines. Reads at most ``4 * max_chars`` characters.
    """
    lines = text[: max_chars * 4].replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if line.lstrip().startswith(">"):
            continue
        if _SIGNATURE.match(line.strip()) or _quote_starts(lines, index):
            break
        kept.append(line)
    kept = _drop_signoff(kept)
    return "\n".join(kept).strip()[:max_chars]


def _quote_starts(lines: list[str], index: int) -> bool:
    line = lines[index]
    if _QUOTE_START.match(line):
        return True
    following = [nxt for nxt in lines[index + 1 : index + 3] if nxt.strip()]
    if line.lstrip().lower().startswith("on ") and following and _WROTE_END.search(following[0]):
        return True  # "On Tue, 3 Mar 2026 at 09:14, Alice <" + "alice@example.com> wrote:"
    # Outlook: "From: Alice" directly followed by "Sent:"/"Date:"/"To:" header lines.
    return bool(_FROM_LINE.match(line) and following and HEADER_LINE.match(following[0]))


def _drop_signoff(lines: list[str]) -> list[str]:
    """Cut at a sign-off line that only a short signature follows (name, title, phone, links)."""
    for index, line in enumerate(lines):
        if index == 0 or not _VALEDICTION.match(line):
            continue
        tail = [rest for rest in lines[index + 1 :] if rest.strip()]
        if len(tail) <= 8 and all(len(rest) <= 80 for rest in tail):
            return lines[:index]
    return lines


def is_candidate(subject: str, text: str) -> bool:
    """Cheap gate: a meeting word and a time cue, or a confirm/reschedule/cancel phrase. Microseconds.

    Pass a bounded prefix of the plain text; quotes need not be stripped (a false candidate only costs a
    :func:`detect` call).
    """
    lowered = f"{subject}\n{text}".lower().replace("\u2019", "'")
    words = set(lowered.encode("ascii", "ignore").translate(_TO_WORDS).split())
    changed = not words.isdisjoint(_CHANGE_WORDS) or any(a in words and b in words for a, b in _CHANGE_PAIRS)
    if changed and _GATE_CHANGE.search(lowered):
        return True
    if words.isdisjoint(_MEETING_WORDS):
        return False
    if not words.isdisjoint(_DAY_WORDS):
        return True
    # Clock times and numeric dates ("3pm", "10:30", "3/10", "the 12th") all need a digit.
    return any(digit in lowered for digit in "0123456789") and _GATE_NUMBER.search(lowered) is not None
