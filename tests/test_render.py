"""Rendering: every shipped template in every awkward situation, user overrides, and a sandbox that holds."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from followupd.core.compose import (
    AwaitingView,
    DraftContext,
    ExchangeView,
    MeetingView,
    Person,
    build_message,
    draft_context,
)
from followupd.core.lint import DEFAULT_SLOT_PATTERN, LintCode, lint
from followupd.core.types import Address
from followupd.render import RenderError, TemplateSet, day, sentence

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
SHIPPED = ["after_meeting", "awaiting_reply", "keep_in_touch", "meeting_request", "new_contact"]
HOSTILE_RAW = "=?UTF-8?Q?=0A?=Bcc: x@evil"
HOSTILE_DECODED = "\nBcc: x@evil"
NAMES = {
    "no name": "",
    "non-ASCII": "Zoë Ångström-Łukasiewicz",
    "CJK": "山田 太郎",
    "address as name": "z@x.org",
}
SUBJECTS = {
    "hostile raw": HOSTILE_RAW,
    "hostile decoded": HOSTILE_DECODED,
    "plain": "Launch plans",
    "empty": "",
}
USER = Person("Sam Rivera", "", "sam@example.org")


@pytest.fixture(scope="module")
def shipped() -> TemplateSet:
    return TemplateSet()


def context(name: str, subject: str, *, full: bool = True) -> DraftContext:
    if not full:
        return draft_context(contact=Person(name, "", "zoe@example.org"), user=USER, now=NOW)
    return draft_context(
        contact=Person(name, "", "zoe@example.org"),
        user=USER,
        now=NOW,
        thread_subject=subject,
        meeting=MeetingView(subject, NOW - timedelta(days=1, hours=1), NOW - timedelta(days=1)),
        last_exchange=ExchangeView(NOW - timedelta(days=1), "meeting", subject),
        awaiting=AwaitingView(subject, f"Could you send the deck? {subject}"),
    )


def test_the_shipped_templates(shipped: TemplateSet) -> None:
    assert shipped.names() == SHIPPED


def sentences(body: str) -> int:
    """Sentences between the greeting and the sign-off."""
    core = body.split("\n\n")[1:-1]
    return len(re.findall(r"[.!?](?=\s|$|\")", "\n".join(core)))


@pytest.mark.parametrize("reason", SHIPPED)
@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
@pytest.mark.parametrize("subject", SUBJECTS.values(), ids=SUBJECTS.keys())
@pytest.mark.parametrize("full", [True, False], ids=["full context", "bare context"])
def test_every_shipped_template_renders_safely_and_gives_first(
    shipped: TemplateSet, reason: str, name: str, subject: str, full: bool
) -> None:
    rendered = shipped.render(reason, context(name, subject, full=full))
    assert rendered.template == f"{reason}.j2"
    assert rendered.origin == "package"
    # Headers: one clean line; the hostile text can only ever be subject text.
    assert not set(rendered.subject) & set("\r\n\x00")
    assert rendered.subject.strip()
    assert not rendered.body.startswith("Bcc")
    assert "=?" not in rendered.body
    # The greeting: never "Hi ," and never an address.
    greeting = rendered.body.splitlines()[0]
    assert greeting in {"Hi there,", "Hi Zoë,", "Hi 山田 太郎,"}
    # Voice: short, five to eight sentences, an out, and only the expected warning: the unfilled offer slot.
    assert 5 <= sentences(rendered.body) <= 8, rendered.body
    warnings = lint(rendered.subject, rendered.body, reason=reason, template=rendered.template)
    assert [warning.code for warning in warnings] == [LintCode.EMPTY_SLOT]
    filled = re.sub(
        DEFAULT_SLOT_PATTERN, "an intro to Priya, who ran the same migration", rendered.body, flags=re.I
    )
    assert lint(rendered.subject, filled, reason=reason, template=rendered.template) == []
    # And it makes a message with exactly the headers we set.
    message = build_message(
        from_addr=Address(USER.email, USER.name),
        to=Address("zoe@example.org", name),
        subject=rendered.subject,
        body=filled,
        message_id="<m@example.org>",
        date=NOW,
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == rendered.subject


def test_names_appear_as_written(shipped: TemplateSet) -> None:
    rendered = shipped.render("keep_in_touch", context("Zoë Ångström", "Launch plans"))
    assert rendered.body.startswith("Hi Zoë,\n\n")
    assert rendered.body.endswith("Best,\nSam\n")
    assert '"Launch plans"' in rendered.body


@pytest.mark.parametrize(
    ("reason", "subject"),
    [
        ("new_contact", "Re: Launch plans"),
        ("after_meeting", "Re: Launch plans"),
        ("awaiting_reply", "Re: Launch plans"),
        ("meeting_request", "Re: Launch plans"),
        ("keep_in_touch", "Thought of you"),  # a new thread
    ],
)
def test_replies_get_a_re_subject(shipped: TemplateSet, reason: str, subject: str) -> None:
    assert shipped.render(reason, context("Ada", "Re: Re: Launch plans")).subject == subject


@pytest.mark.parametrize(
    ("reason", "subject"),
    [
        ("new_contact", "Good to connect"),
        ("after_meeting", "Thank you for your time"),
        ("awaiting_reply", "One easy question"),
        ("meeting_request", "An idea that might help you"),
    ],
)
def test_subjects_without_a_thread(shipped: TemplateSet, reason: str, subject: str) -> None:
    assert shipped.render(reason, context("Ada", "", full=False)).subject == subject


def test_after_meeting_names_the_meeting(shipped: TemplateSet) -> None:
    ctx = draft_context(
        contact=Person("Ada", "", "a@x.org"),
        user=USER,
        now=NOW,
        meeting=MeetingView("Engines & looms", None, None),
    )
    rendered = shipped.render("after_meeting", ctx)
    assert rendered.subject == "Thank you: Engines & looms"  # no HTML escaping in plain text
    assert 'for "Engines & looms"' in rendered.body


def test_awaiting_reply_restates_the_question(shipped: TemplateSet) -> None:
    ctx = draft_context(
        contact=Person("Ada", "", "a@x.org"),
        user=USER,
        now=NOW,
        awaiting=AwaitingView("Deck", "Could you send the deck by Friday?"),
    )
    assert (
        "one question again: Could you send the deck by Friday?\n"
        in shipped.render("awaiting_reply", ctx).body
    )


def test_filters() -> None:
    assert day(datetime(2025, 6, 3, tzinfo=UTC)) == "Tuesday 3 June"
    assert day(None) == ""
    assert sentence(" yes ") == "yes."
    assert sentence("really?") == "really?"
    assert sentence("") == ""


# ------------------------------------------------------------------------------------------ user templates


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text, encoding="utf-8")


def test_user_templates_override_and_add(tmp_path: Path) -> None:
    write(tmp_path, "new_contact.j2", "Subject: Hello {{ contact.first_name }}\n\nMine, {{ user.name }}.\n")
    write(
        tmp_path, "conference.j2", "Subject: Great to meet you\n\nHi {{ contact.first_name or 'there' }}.\n"
    )
    templates = TemplateSet(tmp_path)
    assert templates.names() == sorted([*SHIPPED, "conference"])
    rendered = templates.render("new_contact", context("Ada Lovelace", "x"))
    assert (rendered.subject, rendered.body, rendered.origin) == ("Hello Ada", "Mine, Sam Rivera.\n", "user")
    assert templates.render("keep_in_touch", context("Ada", "x")).origin == "package"
    assert templates.render("conference", context("", "x")).body == "Hi there.\n"


def test_a_user_template_may_include_a_shipped_one(tmp_path: Path) -> None:
    write(tmp_path, "keep_in_touch_short.j2", '{% include "keep_in_touch.j2" %}')
    rendered = TemplateSet(tmp_path).render("keep_in_touch_short", context("Ada", "x"))
    assert rendered.subject == "Thought of you"


def test_tidy_output(tmp_path: Path) -> None:
    write(tmp_path, "tidy.j2", "\n\n{% set x = 1 %}\nSubject:   Spaced  \n\n\n\nBody   \n\n\n\nEnd\n\n\n")
    rendered = TemplateSet(tmp_path).render("tidy", context("Ada", "x"))
    assert (rendered.subject, rendered.body) == ("Spaced", "Body\n\nEnd\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Subject: {{ contact.nickname }}\n\nx", "nickname"),  # undefined: a clear error, not a crash
        ("Subject: {{ nobody }}\n\nx", "nobody"),
        ("Subject: x\n\n{% if %}", "line 3"),
        ("No subject line\n\nbody", "Subject"),
        ("Subject: only a subject\n", "empty"),
        ("Subject: x\n\n{{ 1 / 0 }}", "ZeroDivisionError"),
        ("Subject: x\n\n{{ contact.name + 1 }}", "TypeError"),
        ("Subject: x\n\n{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "RecursionError"),
    ],
)
def test_broken_user_templates_report_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "broken.j2", text)
    with pytest.raises(RenderError, match=message) as caught:
        TemplateSet(tmp_path).render("broken", context("Ada", "x"))
    assert caught.value.template.endswith("broken.j2")


@pytest.mark.parametrize(
    "text",
    [
        '{% include "../secret.txt" %}',
        '{% include "/etc/passwd" %}',
        "{% include '" + "../" * 8 + "etc/passwd' %}",
        '{% extends "../secret.txt" %}',
        '{% import "../secret.txt" as s %}',
        "{{ contact.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ now.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ '{0.__class__}'.format(contact) }}",
        "{{ contact._address }}",
        "{{ 'x' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 2 ** 100000 }}",
        "{% for i in range(100000000) %}{% endfor %}",
        "{% for i in range(99999) %}xxxxxxxxxxxxxxxxxxxx{% endfor %}",
    ],
)
def test_the_sandbox_holds(tmp_path: Path, text: str) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("Subject: stolen\n\nSECRET", encoding="utf-8")
    user_dir = tmp_path / "templates"
    user_dir.mkdir()
    write(user_dir, "evil.j2", "Subject: x\n\n" + text)
    with pytest.raises(RenderError) as caught:
        TemplateSet(user_dir).render("evil", context("Ada", "x"))
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize("reason", ["../secret", "/etc/passwd", "New_Contact", "", "a" * 100, "x.j2"])
def test_template_names_are_plain(reason: str) -> None:
    with pytest.raises(RenderError, match="lower-case"):
        TemplateSet().render(reason, context("Ada", "x"))


def test_missing_template_and_directory(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="not found"):
        TemplateSet(tmp_path).render("no_such_reason", context("Ada", "x"))
    with pytest.raises(RenderError, match="does not exist"):
        TemplateSet(tmp_path / "missing")
