"""The give-first check: warnings about a draft that takes instead of gives (VOICE.md). It never blocks.

Run on every draft when it is queued and again after each edit; the warnings are stored with the draft and
shown at review. Phrases are matched case-insensitively on word boundaries, with any run of whitespace
between words, so "Pick  your\\nbrain" is found and "demographics" is not "demo".

The offer slot: shipped templates contain a visible slot such as ``[what I can offer: an intro, a link]``.
At queue time the ``empty-slot`` warning is expected — it is the reminder to fill it in at review; replacing
the bracketed slot with the actual offer clears it. Any bracketed slot left in the text counts as empty,
even if the user typed inside the brackets, because the brackets themselves would be sent.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

DEFAULT_SLOT_PATTERN = r"\[\s*what I can offer\s*:[^\]]*\]"


class LintCode(enum.StrEnum):
    """What a warning is about; stored with the draft as text."""

    PITCH = "pitch"
    ASK_ONLY = "ask-only"
    EMPTY_SLOT = "empty-slot"
    MEETING_MISSING_INTENT = "meeting-missing-intent"
    MEETING_MISSING_DURATION = "meeting-missing-duration"
    MEETING_MISSING_OUT = "meeting-missing-out"
    TOO_LONG = "too-long"
    WEAK_SUBJECT = "weak-subject"
    FILLER = "filler"
    REPEAT_TEMPLATE = "repeat-template"


@dataclass(frozen=True, slots=True)
class LintWarning:
    """One finding: a stable ``code`` and a message that tells the user what to change."""

    code: LintCode
    message: str


@dataclass(frozen=True, slots=True)
class LintRules:
    """Word lists and limits of the give-first check (all configurable; these are the defaults)."""

    pitch_phrases: tuple[str, ...] = (
        "quick call to show you", "show you a demo", "book a demo", "demo", "pricing", "price", "discount",
        "free trial", "our product", "our platform", "our solution", "our service", "special offer",
        "limited time", "act now", "last chance", "sales call", "% off",
    )  # fmt: skip
    ask_only_phrases: tuple[str, ...] = (
        "pick your brain", "can you introduce me", "could you introduce me", "would you introduce me",
        "can you help me", "could you help me", "do me a favor", "do me a favour", "quick favor",
        "quick favour", "I need you to", "can you send me", "could you send me", "are you hiring",
        "any openings", "put in a good word",
    )  # fmt: skip
    filler_phrases: tuple[str, ...] = (
        "just checking in", "checking in to see", "circling back", "bumping this", "bump this",
        "touching base", "just following up", "following up on my last", "as per my last email",
        "friendly reminder", "gentle reminder", "just wanted to follow up", "just wanted to check",
    )  # fmt: skip
    weak_subjects: tuple[str, ...] = (
        "following up", "follow up", "follow-up", "followup", "checking in", "just checking in",
        "touching base", "circling back", "quick question", "hi", "hello", "hey",
    )  # fmt: skip
    meeting_phrases: tuple[str, ...] = (
        "call", "meet", "meeting", "coffee", "chat", "catch up", "zoom", "video call", "lunch",
        "get together",
    )  # fmt: skip
    intent_phrases: tuple[str, ...] = (
        "because", "so that", "so we can", "to talk about", "to hear about", "to discuss", "to share",
        "to learn", "to compare notes", "I'd like to", "I would like to", "I'd love to", "I would love to",
        "the reason", "in it for you", "useful for you", "help you",
    )  # fmt: skip
    out_phrases: tuple[str, ...] = (
        "no worries", "no need to reply", "no pressure", "not a priority", "timing is bad",
        "timing isn't right", "not a good time", "feel free to say no", "totally fine", "perfectly fine",
        "no obligation", "if not, no problem", "happy to do it by email", "send it over by email",
    )  # fmt: skip
    duration_pattern: str = (
        r"\b(?:\d{1,3}|five|ten|fifteen|twenty|thirty|forty-five|half an?|an|one)[\s-]*"
        r"(?:min(?:ute)?s?|hours?)\b|\bhalf an hour\b|\bquarter of an hour\b"
    )
    max_words: int = 150
    slot_pattern: str = DEFAULT_SLOT_PATTERN


def customized(
    rules: LintRules,
    *,
    extra_pitch_phrases: Sequence[str] = (),
    allowed_phrases: Sequence[str] = (),
    max_words: int | None = None,
) -> LintRules:
    """``rules`` with the ``[lint]`` config applied: extra pitch phrases added, allowed phrases removed from
    every list (case-insensitively), and the word limit replaced when given."""
    allowed = {" ".join(phrase.lower().split()) for phrase in allowed_phrases}

    def keep(phrases: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(phrase for phrase in phrases if " ".join(phrase.lower().split()) not in allowed)

    return replace(
        rules,
        pitch_phrases=keep((*rules.pitch_phrases, *extra_pitch_phrases)),
        ask_only_phrases=keep(rules.ask_only_phrases),
        filler_phrases=keep(rules.filler_phrases),
        weak_subjects=keep(rules.weak_subjects),
        max_words=rules.max_words if max_words is None else max_words,
    )


@lru_cache(maxsize=64)
def _phrases_re(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation for a phrase list; word boundaries only where the phrase starts/ends with a word."""
    parts = []
    for phrase in sorted(phrases, key=len, reverse=True):
        words = phrase.split()
        if not words:
            continue
        body = r"\s+".join(re.escape(word) for word in words)
        start = r"\b" if words[0][0].isalnum() else ""
        end = r"\b" if words[-1][-1].isalnum() else ""
        parts.append(f"{start}{body}{end}")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _find(phrases: tuple[str, ...], text: str) -> list[str]:
    pattern = _phrases_re(phrases)
    if pattern is None:
        return []
    found: dict[str, None] = {}
    for match in pattern.finditer(text):
        found.setdefault(" ".join(match.group().lower().split()), None)
    return list(found)


def _quoted(found: Sequence[str]) -> str:
    return ", ".join(f'"{phrase}"' for phrase in found)


def _phrase_warnings(subject: str, body: str, rules: LintRules) -> list[LintWarning]:
    text = f"{subject}\n{body}"
    warnings = []
    if found := _find(rules.pitch_phrases, text):
        warnings.append(
            LintWarning(LintCode.PITCH, f"reads like a pitch ({_quoted(found)}): give, don't sell")
        )
    if found := _find(rules.ask_only_phrases, text):
        message = f"asks for something ({_quoted(found)}): make sure the note gives something first"
        warnings.append(LintWarning(LintCode.ASK_ONLY, message))
    if found := _find(rules.filler_phrases, text):
        message = f"filler ({_quoted(found)}): say the one thing this note is for instead"
        warnings.append(LintWarning(LintCode.FILLER, message))
    return warnings


def _slot_warnings(body: str, rules: LintRules) -> list[LintWarning]:
    slots = re.findall(rules.slot_pattern, body, flags=re.IGNORECASE)
    if not slots:
        return []
    message = f"the offer slot is still empty: replace {slots[0]} with what you will give"
    return [LintWarning(LintCode.EMPTY_SLOT, message)]


def _is_meeting_request(body: str, reason: str, rules: LintRules) -> bool:
    if reason == "meeting_request":
        return True
    # A meeting word in a question is an ask for a meeting; a meeting word elsewhere is just talk about one.
    questions = re.findall(r"[^.!?\n]*\?", body)
    return any(_find(rules.meeting_phrases, question) for question in questions)


def _meeting_warnings(body: str, reason: str, rules: LintRules) -> list[LintWarning]:
    if not _is_meeting_request(body, reason, rules):
        return []
    warnings = []
    if not _find(rules.intent_phrases, body):
        message = "meeting request without an intent: say why, and what is in it for them"
        warnings.append(LintWarning(LintCode.MEETING_MISSING_INTENT, message))
    if not re.search(rules.duration_pattern, body, flags=re.IGNORECASE):
        message = 'meeting request without a duration: say how long it takes ("20 minutes")'
        warnings.append(LintWarning(LintCode.MEETING_MISSING_DURATION, message))
    if not _find(rules.out_phrases, body):
        message = 'meeting request without an out: add "if the timing is bad, no worries at all"'
        warnings.append(LintWarning(LintCode.MEETING_MISSING_OUT, message))
    return warnings


_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|fwd?|wg)\s*:\s*)+", re.IGNORECASE)


def _subject_warnings(subject: str, rules: LintRules) -> list[LintWarning]:
    bare = _PREFIX.sub("", subject).strip(" \t.!?:-").lower()
    if bare and bare not in {weak.lower() for weak in rules.weak_subjects}:
        return []
    shown = subject.strip() or "(empty)"
    message = f'subject "{shown}" says nothing: name the thing you are giving or the topic'
    return [LintWarning(LintCode.WEAK_SUBJECT, message)]


def word_count(body: str) -> int:
    """Words in the body, the way the too-long check counts them (whitespace-separated tokens)."""
    return len(body.split())


def lint(
    subject: str,
    body: str,
    *,
    reason: str,
    rules: LintRules | None = None,
    previous_template: str | None = None,
    template: str | None = None,
) -> list[LintWarning]:
    """Every give-first warning for a draft, in a stable order (empty when the draft is fine).

    ``reason`` is the trigger (or ``meeting_request``); ``template`` is the template this draft was written
    from and ``previous_template`` the one used for the previous draft to the same person — equal names
    warn ``repeat-template``. Pure and cheap; call it again after every edit.
    """
    rules = rules or LintRules()
    warnings = _phrase_warnings(subject, body, rules)
    warnings += _slot_warnings(body, rules)
    warnings += _meeting_warnings(body, reason, rules)
    words = word_count(body)
    if words > rules.max_words:
        message = f"{words} words: keep it under {rules.max_words} (five to eight sentences)"
        warnings.append(LintWarning(LintCode.TOO_LONG, message))
    warnings += _subject_warnings(subject, rules)
    if template is not None and template == previous_template:
        message = f"same template ({template}) as the last note to this person: vary it"
        warnings.append(LintWarning(LintCode.REPEAT_TEMPLATE, message))
    return warnings
