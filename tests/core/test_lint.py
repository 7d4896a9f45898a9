"""The give-first check: table tests per warning code, and configurable word lists."""

from __future__ import annotations

from dataclasses import replace

import pytest

from followupd.core.lint import LintCode, LintRules, customized, lint, word_count

GOOD_SUBJECT = "The intro I mentioned"
GOOD_BODY = (
    "Hi Ada,\n\nCongratulations on the launch. Here is the intro I promised: Priya ran the same migration "
    "last year and is happy to talk.\n\nIf the timing is bad, no worries at all.\n\nBest,\nSam\n"
)


def codes(subject: str = GOOD_SUBJECT, body: str = GOOD_BODY, **kw: object) -> list[LintCode]:
    kw.setdefault("reason", "keep_in_touch")
    return [warning.code for warning in lint(subject, body, **kw)]  # type: ignore[arg-type]


def test_a_good_draft_has_no_warnings() -> None:
    assert codes() == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Could I pick your brain about pricing?", [LintCode.PITCH, LintCode.ASK_ONLY]),
        ("I'd love a quick call to show you what we built.", [LintCode.PITCH]),
        ("Happy to set up a demo next week.", [LintCode.PITCH]),
        ("Our product has a 20% off launch discount.", [LintCode.PITCH]),
        ("Can you introduce me to your CTO?", [LintCode.ASK_ONLY]),
        ("Could I Pick  Your\nBrain for a minute", [LintCode.ASK_ONLY]),
        ("Just checking in on this.", [LintCode.FILLER]),
        ("Circling back to my note.", [LintCode.FILLER]),
        ("Bumping this to the top of your inbox.", [LintCode.FILLER]),
        # Word boundaries: these are not the phrases.
        ("The demographics of democracy are priceless.", []),
        (
            "I enjoyed the talk on pricing psychology you gave.",
            [LintCode.PITCH],
        ),  # honest false positive: warns
    ],
)
def test_phrases(body: str, expected: list[LintCode]) -> None:
    assert codes(body=body) == expected


def test_the_message_names_the_phrase_found() -> None:
    (warning,) = lint(GOOD_SUBJECT, "Can we book a demo?", reason="keep_in_touch")
    assert '"book a demo"' in warning.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Here it is: [what I can offer: an intro, a link].", [LintCode.EMPTY_SLOT]),
        ("Here it is: [What I can offer:   ].", [LintCode.EMPTY_SLOT]),
        ("Here it is: [what I can offer: Priya's intro]", [LintCode.EMPTY_SLOT]),  # brackets would be sent
        ("Here it is: Priya's intro.", []),
        ("Here it is: [see attachment].", []),
    ],
)
def test_empty_slot(body: str, expected: list[LintCode]) -> None:
    assert codes(body=body) == expected


def test_filling_the_slot_clears_the_warning() -> None:
    body = "Hi,\n\nSomething for you: [what I can offer: an intro, a link].\n\nNo need to reply.\n"
    assert codes(body=body) == [LintCode.EMPTY_SLOT]
    assert (
        codes(body=body.replace("[what I can offer: an intro, a link]", "Priya, who did this before")) == []
    )


MEETING = "Would you be open to a 20-minute call next week, because I'd like to hear about the launch?"


@pytest.mark.parametrize(
    ("body", "reason", "expected"),
    [
        (MEETING + " If the timing is bad, no worries at all.", "keep_in_touch", []),
        (MEETING, "keep_in_touch", [LintCode.MEETING_MISSING_OUT]),
        ("Could we grab coffee?", "new_contact",
         [LintCode.MEETING_MISSING_INTENT, LintCode.MEETING_MISSING_DURATION, LintCode.MEETING_MISSING_OUT]),
        ("Free for half an hour to chat? I'd like to compare notes. No pressure.", "new_contact", []),
        ("Could we meet for an hour to discuss it? No worries if not.", "new_contact", []),
        ("Could we meet? I'd love to hear about it, no pressure.", "new_contact",
         [LintCode.MEETING_MISSING_DURATION]),
        # A meeting mentioned, not asked for: no meeting checks.
        ("Thanks for the call yesterday. It helped.", "after_meeting", []),
        ("Is the launch still on for March?", "keep_in_touch", []),
        # meeting_request is a meeting request by definition.
        ("Here is the intro.", "meeting_request",
         [LintCode.MEETING_MISSING_INTENT, LintCode.MEETING_MISSING_DURATION, LintCode.MEETING_MISSING_OUT]),
    ],
)  # fmt: skip
def test_meeting_requests(body: str, reason: str, expected: list[LintCode]) -> None:
    assert codes(body=body, reason=reason) == expected


def test_too_long() -> None:
    assert codes(body="word " * 150) == []
    assert codes(body="word " * 151) == [LintCode.TOO_LONG]
    assert codes(body="word " * 60, rules=LintRules(max_words=50)) == [LintCode.TOO_LONG]
    assert word_count("Hi Ada,\n\n  Thanks!  ") == 3


@pytest.mark.parametrize(
    ("subject", "weak"),
    [
        ("Following up", True),
        ("following up!", True),
        ("Re: Following up", True),
        ("Fwd: Re: follow-up", True),
        ("Just checking in", True),
        ("", True),
        ("Re:", True),
        ("Hi", True),
        ("Following up on the Berlin intro", False),
        ("Thought of you", False),
        ("Re: Launch plans", False),
    ],
)
def test_weak_subject(subject: str, weak: bool) -> None:
    assert (LintCode.WEAK_SUBJECT in codes(subject=subject)) is weak


def test_repeat_template() -> None:
    assert codes(template="keep_in_touch.j2", previous_template="keep_in_touch.j2") == [
        LintCode.REPEAT_TEMPLATE
    ]
    assert codes(template="keep_in_touch.j2", previous_template="new_contact.j2") == []
    assert codes(template="keep_in_touch.j2") == []
    assert codes(template=None, previous_template=None) == []


def test_word_lists_are_configurable() -> None:
    rules = LintRules()
    custom = replace(rules, pitch_phrases=(*rules.pitch_phrases, "synergy"), filler_phrases=())
    assert codes(body="Let's find synergy. Just checking in.", rules=custom) == [LintCode.PITCH]
    no_lists = replace(rules, pitch_phrases=(), ask_only_phrases=(), filler_phrases=(), weak_subjects=())
    assert (
        codes(subject="Following up", body="Pick your brain? Demo! Just checking in.", rules=no_lists) == []
    )


def test_custom_slot_pattern() -> None:
    rules = LintRules(slot_pattern=r"<<[^>]*>>")
    assert codes(body="Something for you: <<offer>>", rules=rules) == [LintCode.EMPTY_SLOT]
    assert codes(body="Something for you: [what I can offer: x]", rules=rules) == []


def test_all_findings_at_once_in_a_stable_order() -> None:
    body = "Just checking in. Can I pick your brain on a quick call to show you our pricing? "
    body += "[what I can offer: x]"
    assert codes(subject="Following up", body=body + " word" * 150, template="a", previous_template="a") == [
        LintCode.PITCH,
        LintCode.ASK_ONLY,
        LintCode.FILLER,
        LintCode.EMPTY_SLOT,
        LintCode.MEETING_MISSING_INTENT,
        LintCode.MEETING_MISSING_DURATION,
        LintCode.MEETING_MISSING_OUT,
        LintCode.TOO_LONG,
        LintCode.WEAK_SUBJECT,
        LintCode.REPEAT_TEMPLATE,
    ]
    assert all(warning.message for warning in lint("Following up", body, reason="x"))


def test_customized_applies_the_lint_config() -> None:
    rules = customized(
        LintRules(), extra_pitch_phrases=("synergy",), allowed_phrases=("Price", "circling  back")
    )
    assert codes(body="Synergy! The price is right. Circling back.", rules=rules) == [LintCode.PITCH]
    (warning,) = lint(GOOD_SUBJECT, "Synergy! The price is right.", reason="x", rules=rules)
    assert '"price"' not in warning.message
    assert customized(LintRules(), max_words=40).max_words == 40
    assert customized(LintRules()) == LintRules()
