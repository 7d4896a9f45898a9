"""Composing mail: header sanitising (CVE-2024-6923), threading, Message-IDs, the template context."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followupd.core.compose import (
    MAX_HEADER_CHARS,
    MAX_REFERENCES,
    AwaitingView,
    ExchangeView,
    MeetingView,
    Person,
    build_message,
    clean_msg_ids,
    context_for,
    draft_context,
    first_name,
    make_message_id,
    reply_references,
    reply_subject,
    sanitize_header,
    topic,
)
from followupd.core.planner import Awaiting, ContactState, MeetingRef, ThreadRef
from followupd.core.types import Address

NOW = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
HOSTILE_RAW = "=?UTF-8?Q?=0A?=Bcc: x@evil"
HOSTILE_DECODED = "\nBcc: x@evil"
# Encoded twice: one decode leaves an encoded word that the email package would decode into a newline.
HOSTILE_DOUBLE = "=?UTF-8?Q?=3D=3FUTF-8=3FQ=3F=3D0A=3F=3D?=Bcc: x@evil"

# ------------------------------------------------------------------------------------------ sanitize


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Launch plans", "Launch plans"),
        (HOSTILE_RAW, "Bcc: x@evil"),
        (HOSTILE_DECODED, "Bcc: x@evil"),
        (HOSTILE_DOUBLE, "Bcc: x@evil"),
        ("a\r\nb\rc\nd", "a b c d"),
        ("tab\there\x00nul\x7fdel\x85nel", "tab here nul del nel"),
        ("line\u2028sep\u2029para", "line sep para"),
        ("bidi \u202eevil\u202c text", "bidi evil text"),
        ("  many   spaces  ", "many spaces"),
        ("=?utf-8?q?Zo=C3=AB?= =?utf-8?b?w4VuZ3N0csO2bQ==?=", "ZoëÅngström"),
        ("Hello =?utf-8?q?Zo=C3=AB?=", "Hello Zoë"),
        ("Plain text with =? but no encoded word", "Plain text with = ? but no encoded word"),
        ("=?UTF-8?Q?=0ABcc: x", "= ?UTF-8?Q?=0ABcc: x"),  # unterminated: the email package would decode it
        ("=?no-such-charset?q?abc?=", "= ?no-such-charset?q?abc?="),  # undecodable: kept, defused
        ("山田太郎 — 日本語の件名", "山田太郎 — 日本語の件名"),
        ("", ""),
    ],
)
def test_sanitize_header(raw: str, clean: str) -> None:
    assert sanitize_header(raw) == clean


def test_sanitize_header_bounds_length() -> None:
    assert len(sanitize_header("x" * 10_000)) == MAX_HEADER_CHARS
    assert sanitize_header("word " * 100, max_chars=20).endswith("…")


@given(st.text())
def test_sanitize_header_never_leaves_a_line_break(value: str) -> None:
    clean = sanitize_header(value)
    assert not any(ch in clean for ch in "\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    assert clean == clean.strip()
    assert len(clean) <= MAX_HEADER_CHARS
    assert "=?" not in clean
    assert sanitize_header(clean) == clean


SOUP = [
    "=?UTF-8?Q?",
    "=?utf-8?b?",
    "=?",
    "?q?",
    "=0A",
    "=0D",
    "?=",
    "Bcc: x",
    " ",
    "=3D",
    "=3F",
    "Cg==",
    "\n",
    "a",
]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(SOUP)))
def test_sanitize_header_survives_encoded_word_soup(parts: list[str]) -> None:
    clean = sanitize_header("".join(parts))
    message = build_message(
        from_addr=Address("me@example.org"),
        to=Address("you@example.org"),
        subject=clean,
        body="Hi",
        message_id="<a@example.org>",
        date=NOW,
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert "\n" not in str(parsed["Subject"])


@pytest.mark.parametrize(
    ("subject", "reply", "bare"),
    [
        ("Launch", "Re: Launch", "Launch"),
        ("Re: Launch", "Re: Launch", "Launch"),
        ("RE: re: Aw: Launch", "Re: Launch", "Launch"),
        ("Re[2]: Launch", "Re: Launch", "Launch"),
        ("Fwd: Launch", "Re: Fwd: Launch", "Launch"),
        ("Re: Fwd: Re: Launch", "Re: Fwd: Re: Launch", "Launch"),
        ("", "Re:", ""),
        ("Re:", "Re:", ""),
        (HOSTILE_RAW, "Re: Bcc: x@evil", "Bcc: x@evil"),
        ("Regarding the plan", "Re: Regarding the plan", "Regarding the plan"),
    ],
)
def test_reply_subject_and_topic(subject: str, reply: str, bare: str) -> None:
    assert reply_subject(subject) == reply
    assert topic(subject) == bare


# ------------------------------------------------------------------------------------------ threading


def test_clean_msg_ids_keeps_only_well_formed_ids() -> None:
    values = ["<a@x>", "junk", "<b@x> <c@x>", "<a@x>", "<d@x>\r\nBcc: y@evil", "<no-at>", "<e f@x>"]
    assert clean_msg_ids(values) == ("<a@x>", "<b@x>", "<c@x>", "<d@x>")


def test_reply_references() -> None:
    assert reply_references("<p@x>", ["<r1@x>", "<r2@x>"]) == ("<p@x>", ("<r1@x>", "<r2@x>", "<p@x>"))
    assert reply_references("<p@x>", ["<p@x>", "<r@x>"]) == ("<p@x>", ("<r@x>", "<p@x>"))
    assert reply_references("garbage", ["<r@x>"]) == (None, ("<r@x>",))


def test_reply_references_are_bounded_and_keep_the_root() -> None:
    refs = [f"<r{i}@x>" for i in range(100)]
    parent, kept = reply_references("<p@x>", refs)
    assert parent == "<p@x>"
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == "<r0@x>"
    assert kept[-1] == "<p@x>"


def test_make_message_id() -> None:
    first = make_message_id("1:new_contact:x", "Example.ORG", nonce="5f0c-11")
    assert first == make_message_id("1:new_contact:x", "example.org", nonce="5f0c-11")
    assert first.startswith("<")
    assert first.endswith("@example.org>")
    assert first != make_message_id("1:new_contact:x", "example.org", nonce="other")
    assert first != make_message_id("2:new_contact:x", "example.org", nonce="5f0c-11")
    assert clean_msg_ids([first]) == (first,)


@pytest.mark.parametrize("domain", ["", "bad domain", "evil\r\nBcc: x", "-x.org", "x" * 300])
def test_make_message_id_with_a_bad_domain(domain: str) -> None:
    message_id = make_message_id("k", domain, nonce="n\r\nBcc: x")
    assert message_id.endswith("@followupd.invalid>")
    assert clean_msg_ids([message_id]) == (message_id,)


# --------------------------------------------------------------------------------------- build_message


def parse(message: email.message.EmailMessage) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


@pytest.mark.parametrize("hostile", [HOSTILE_RAW, HOSTILE_DECODED, HOSTILE_DOUBLE])
def test_build_message_with_hostile_inbound_data(hostile: str) -> None:
    message = build_message(
        from_addr=Address("me@example.org", "Sam\r\nBcc: x@evil"),
        to=Address("zoe@example.org", hostile),
        subject=reply_subject(hostile),
        body="Hi Zoë,\r\n\r\nThanks.",
        message_id="<m1@example.org>",
        in_reply_to="<p@x>\r\nBcc: x@evil",
        references=["<r@x>", hostile],
        date=NOW,
    )
    parsed = parse(message)
    assert sorted(parsed.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "MIME-Version",
         "Content-Type", "Content-Transfer-Encoding"]
    )  # fmt: skip
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Re: Bcc: x@evil"
    assert parsed["In-Reply-To"] == "<p@x>"
    assert parsed["References"] == "<r@x>"
    raw = message.as_bytes()
    assert b"\nBcc:" not in raw
    assert b"\r\n\r\n" not in raw.split(b"\n\n", 1)[0]


def test_build_message_non_ascii_and_body() -> None:
    message = build_message(
        from_addr=Address("me@example.org", "Sam Rivera"),
        to=Address("taro@example.jp", "山田 太郎"),
        subject="Re: Ångström",
        body="Hi 太郎,\n\nThanks — really.",
        message_id="<m2@example.org>",
        date=NOW,
    )
    parsed = parse(message)
    assert parsed["To"].addresses[0].display_name == "山田 太郎"
    assert parsed["Subject"] == "Re: Ångström"
    assert parsed["Message-ID"] == "<m2@example.org>"
    assert parsed["In-Reply-To"] is None
    assert parsed["References"] is None
    assert parsed["Date"].datetime == NOW
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content() == "Hi 太郎,\n\nThanks — really.\n"


@pytest.mark.parametrize("bad", ["x@", "no-at", "a b@x", "a@b@c"])
def test_build_message_refuses_unusable_addresses(bad: str) -> None:
    with pytest.raises(ValueError, match="address"):
        build_message(
            from_addr=Address("me@example.org"),
            to=Address(bad),
            subject="s",
            body="b",
            message_id="<m@x>",
            date=NOW,
        )


def test_build_message_refuses_a_bad_message_id() -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        build_message(
            from_addr=Address("me@example.org"),
            to=Address("you@example.org"),
            subject="s",
            body="b",
            message_id="not an id",
            date=NOW,
        )


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("name", "address", "first"),
    [
        ("Ada Lovelace", "", "Ada"),
        ("Lovelace, Ada", "", "Ada"),
        ("Dr. Jane Smith", "", "Jane"),
        ("Prof Jane", "", "Jane"),
        ('"Ada"', "", "Ada"),
        ("Zoë Ångström", "", "Zoë"),
        ("Łukasz Żółć", "", "Łukasz"),
        ("山田 太郎", "", "山田 太郎"),
        ("", "ada@example.org", ""),
        ("ada@example.org", "ada@example.org", ""),
        ("someone@else.org", "", ""),
        ("Dr.", "", ""),
        (HOSTILE_DECODED, "", ""),  # an address in the name: not a name
        ("Ada\r\nBcc: x", "", "Ada"),
    ],
)
def test_first_name(name: str, address: str, first: str) -> None:
    assert first_name(name, address) == first


# ---------------------------------------------------------------------------------------- context


def test_draft_context_cleans_every_string() -> None:
    context = draft_context(
        contact=Person("Zoë\r\nÅngström", "", "zoe@example.org"),
        user=Person("Sam Rivera", "", "sam@example.org"),
        now=NOW,
        thread_subject=HOSTILE_RAW,
        meeting=MeetingView("Coffee\nBcc: x", NOW),
        last_exchange=ExchangeView(NOW, "in", HOSTILE_DECODED),
        awaiting=AwaitingView(HOSTILE_DECODED, "Could you\r\nsend it?"),
    )
    assert context.contact == Person("Zoë Ångström", "Zoë", "zoe@example.org")
    assert context.user.first_name == "Sam"
    assert context.thread is not None
    assert context.thread.subject == "Bcc: x@evil"
    assert context.meeting is not None
    assert context.meeting.subject == "Coffee Bcc: x"
    assert context.last_exchange is not None
    assert context.last_exchange.subject == "Bcc: x@evil"
    assert context.awaiting == AwaitingView("Bcc: x@evil", "Could you send it?")


def test_context_for_a_contact_state() -> None:
    state = ContactState(
        contact_id=1,
        email="ada@example.org",
        name="Ada Lovelace",
        first_seen_at=NOW - timedelta(days=100),
        last_inbound_at=NOW - timedelta(days=3),
        last_outbound_at=NOW - timedelta(days=2),
        last_meeting_end_at=NOW - timedelta(days=1),
        last_meeting=MeetingRef("uid", "Engines", NOW - timedelta(days=1, hours=1)),
        awaiting=Awaiting("Notes?", "<q@x>", NOW - timedelta(days=2), question="Shall I send the notes?"),
        last_thread=ThreadRef("Engines", "<t@x>"),
    )
    user = Person("Sam Rivera", "", "sam@example.org")
    context = context_for(state, user=user, now=NOW, thread=state.last_thread)
    assert context.contact.first_name == "Ada"
    assert context.thread is not None
    assert context.thread.subject == "Engines"
    assert context.meeting == MeetingView(
        "Engines", NOW - timedelta(days=1, hours=1), NOW - timedelta(days=1)
    )
    assert context.last_exchange == ExchangeView(NOW - timedelta(days=1), "meeting", "Engines")
    assert context.awaiting == AwaitingView("Notes?", "Shall I send the notes?")
    bare = ContactState(contact_id=2, email="x@example.org", first_seen_at=NOW)
    context = context_for(bare, user=user, now=NOW)
    assert (context.thread, context.meeting, context.last_exchange, context.awaiting) == (
        None,
        None,
        None,
        None,
    )
    assert context.contact.first_name == ""
