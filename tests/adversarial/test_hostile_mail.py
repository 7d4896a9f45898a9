"""Hostile mail through the pure core: random bytes, truncated and oversized headers, 10,000 recipients,
deep MIME nesting, wrong charsets, NULs and encoded CR/LF — no crash, bounded time, bounded memory.

Property tests run ``FUZZ_EXAMPLES`` examples each (default 200, so the module stays well under a minute
in CI); set ``FOLLOWUPD_FUZZ_EXAMPLES=5000`` for a longer local run. The big cases are fixed inputs with a
measured time per input (``perf_counter``) and peak allocation (``tracemalloc``) against generous bounds.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followupd.core.classify import classify
from followupd.core.headers import parse_headers
from followupd.core.ical import parse_calendar
from followupd.core.mime import calendar_parts, text_part, walk_message
from followupd.core.types import MessageMeta

pytestmark = pytest.mark.timeout(180)

FUZZ_EXAMPLES = int(os.environ.get("FOLLOWUPD_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # time is asserted explicitly on the big inputs, not per example (CI machines vary)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONTROL = {chr(c) for c in range(32)} | {"\x7f", "\u2028", "\u2029", "\x85"}

HEADER_NAMES = [
    "From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "Auto-Submitted", "Precedence", "List-Id", "List-Unsubscribe", "List-Post", "Return-Path",
    "Content-Type", "X-GM-THRID", "Sender",
]  # fmt: skip
NASTY_VALUES = [
    "=?UTF-8?Q?=0D=0ABcc:_x@evil?=",
    "=?UTF-8?B?DQpCY2M6IHhAZXZpbA==?=",
    "=?x-unknown?Q?abc?=",
    "=?utf-8?Q?unterminated",
    "=?utf-16?B?//4A?=",
    "=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=",
    "\u2028Bcc: x@evil",
    "a\x00b\x00c",
    '"Eve\r\nBcc: x@evil" <eve@example.com>',
    "<a@b> <c@d",
    "<<<<>>>>",
    "",
    " ",
    "\t",
    "undisclosed-recipients:;",
    'a@b, , ,, @, <>, <@>, "" <>',
]


def check_meta(meta: MessageMeta) -> None:
    """What every parse must promise, whatever came in: text without control characters where it matters."""
    assert isinstance(meta, MessageMeta)
    for text in (meta.subject, *(a.name for a in (*meta.to, *meta.cc, *meta.reply_to))):
        assert not (set(text) & CONTROL), repr(text)
    if meta.sender is not None:
        assert not (set(meta.sender.name) & CONTROL), repr(meta.sender)
        assert not (set(meta.sender.email) & CONTROL), repr(meta.sender)
    for mid in (meta.message_id, meta.in_reply_to or "", *meta.references):
        assert "\r" not in mid and "\n" not in mid, repr(mid)
    classify(meta)


def header_line() -> st.SearchStrategy[bytes]:
    name = st.sampled_from(HEADER_NAMES) | st.text(min_size=0, max_size=12)
    value = st.sampled_from(NASTY_VALUES) | st.text(max_size=200)
    raw_value = st.binary(max_size=120)
    end = st.sampled_from([b"\r\n", b"\n", b"\r", b"", b"\r\n "])

    def build(n: str, v: str | bytes, e: bytes) -> bytes:
        data = v if isinstance(v, bytes) else v.encode("utf-8", "surrogatepass")
        return n.encode("utf-8", "surrogatepass") + b": " + data + e

    return st.builds(build, name, value | raw_value, end)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash_the_header_parser(data: bytes) -> None:
    check_meta(parse_headers(data))


@FUZZ
@given(st.lists(header_line(), max_size=30), st.integers(min_value=0, max_value=4000))
def test_header_blocks_of_hostile_fields_truncated_anywhere(lines: list[bytes], cut: int) -> None:
    block = b"".join(lines) + b"\r\n"
    check_meta(parse_headers(block))
    check_meta(parse_headers(block[:cut]))  # a truncated literal


@FUZZ
@given(st.sampled_from(HEADER_NAMES), st.sampled_from(NASTY_VALUES), st.sampled_from(["utf-8", "latin-1"]))
def test_encoded_cr_lf_in_every_header_stays_inside_its_field(name: str, value: str, charset: str) -> None:
    text = f"From: Ann <ann@example.com>\r\n{name}: {value}\r\nSubject: ok\r\n\r\n"
    block = text.encode(charset, "replace")
    meta = parse_headers(block)
    check_meta(meta)
    assert all("evil" not in a.email or "bcc" not in a.email for a in meta.to + meta.cc)


# ------------------------------------------------------------------------------------ the big inputs


def measure(func: Callable[[], Any], *, trace: bool = True) -> tuple[float, int, Any]:
    """(seconds, peak bytes allocated, result): timed on a plain call (tracemalloc slows Python code down
    tenfold), then the peak taken on a second, traced call (0 with ``trace=False``)."""
    started = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - started
    if not trace:
        return elapsed, 0, result
    tracemalloc.start()
    try:
        func()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return elapsed, peak, result


MB = 1024 * 1024
BIG_CASES = {
    "1 MB subject": b"Subject: " + b"x" * MB + b"\r\n\r\n",
    "1 MB folded subject": b"Subject: " + b"word\r\n " * (MB // 7) + b"\r\n\r\n",
    "1 MB of encoded words": b"Subject: " + b"=?UTF-8?Q?=0D=0A?= " * (MB // 19) + b"\r\n\r\n",
    "1 MB References": b"References: " + b"<a@b> " * (MB // 6) + b"\r\n\r\n",
    "1 MB From without an address": b"From: " + b'"' * MB + b"\r\n\r\n",
    "1 MB of NULs": b"Subject: " + b"\x00" * MB + b"\r\n\r\n",
    "10,000 recipients": b"To: "
    + b", ".join(f'"Person {n}" <p{n}@example.com>'.encode() for n in range(10_000))
    + b"\r\n\r\n",
    "10,000 header lines": b"".join(b"X-H%d: v\r\n" % n for n in range(10_000)) + b"\r\n",
    "1 MB line without a colon": b"x" * MB + b"\r\n\r\n",
}


@pytest.mark.parametrize("case", BIG_CASES)
def test_big_headers_parse_in_bounded_time_and_memory(case: str) -> None:
    raw = BIG_CASES[case]
    elapsed, peak, meta = measure(lambda: parse_headers(raw))
    check_meta(meta)
    assert elapsed < 2.0, f"{case}: {elapsed:.2f} s"
    assert peak < 40 * MB, f"{case}: peak {peak / MB:.1f} MB for a {len(raw) / MB:.1f} MB input"
    if case == "10,000 recipients":
        assert 0 < len(meta.to) <= 10_000  # the parser caps address lists; it must keep the first ones
        assert meta.to[0].email == "p0@example.com"


# --------------------------------------------------------------------------------------------- MIME

LEAF = st.tuples(
    st.sampled_from([b"text", b"application", b"TEXT", b"", b"message"]),
    st.sampled_from([b"calendar", b"plain", b"ics", b"octet-stream", b"rfc822"]),
    st.one_of(
        st.none(), st.tuples(st.sampled_from([b"charset", b"name", b"NAME*0"]), st.binary(max_size=20))
    ),
    st.none() | st.binary(max_size=8),
    st.none() | st.binary(max_size=8),
    st.sampled_from([b"base64", b"7bit", b"quoted-printable", b"x-uuencode", None, 7]),
    st.integers(min_value=-5, max_value=2**40) | st.none() | st.binary(max_size=4),
)
JUNK = st.none() | st.integers() | st.binary(max_size=10) | st.text(max_size=10) | st.floats()


def nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    multipart = st.builds(
        lambda kids, sub: (kids, sub) if kids else (sub,),
        st.lists(children, max_size=4),
        st.sampled_from([b"mixed", b"alternative", b"related", b""]),
    )
    return multipart | st.tuples(children, children) | st.lists(children, max_size=3)


BODYSTRUCTURE = st.recursive(LEAF | JUNK, nested, max_leaves=30)


@FUZZ
@given(BODYSTRUCTURE)
def test_random_nested_bodystructures_never_crash(structure: Any) -> None:
    for ref in calendar_parts(structure):
        assert ref.part
    text_part(structure)


def deep_bodystructure(depth: int) -> Any:
    node: Any = (b"text", b"calendar", (b"charset", b"utf-8"), None, None, b"7bit", 10)
    for _ in range(depth):
        node = (node, b"mixed")
    return node


def deep_message(depth: int) -> bytes:
    head = b"From: a@b\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    parts = [head]
    for n in range(depth):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n))
    parts.append(b"Content-Type: text/calendar; charset=x-bogus\r\n\r\n")
    parts.append(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    return b"".join(parts)


@pytest.mark.parametrize("depth", [50, 2_000])
def test_deep_mime_nesting_is_bounded(depth: int) -> None:
    elapsed, peak, refs = measure(lambda: calendar_parts(deep_bodystructure(depth)))
    assert isinstance(refs, list)
    assert elapsed < 2.0 and peak < 64 * MB
    # The stdlib parser recurses per level; deep trees end in its RecursionError, caught: time is the bound.
    elapsed, peak, walked = measure(lambda: walk_message(deep_message(depth)), trace=depth <= 200)
    assert isinstance(walked, tuple)
    assert elapsed < 5.0 and peak < 128 * MB, f"{elapsed:.2f} s, {peak / MB:.1f} MB"


@FUZZ
@given(st.binary(max_size=4096))
def test_random_whole_messages_never_crash_the_mime_walker(data: bytes) -> None:
    texts, plain = walk_message(data)
    assert isinstance(texts, list) and (plain is None or isinstance(plain, str))


MIME_PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=X\r\n\r\n",
        b'Content-Type: multipart/alternative; boundary=""\r\n\r\n',
        b"--X\r\n",
        b"--X--\r\n",
        b"Content-Type: text/calendar; charset=klingon\r\n",
        b"Content-Type: text/plain; charset=utf-7\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*=utf-8''%FF%FE.ics\r\n",
        b"\r\n",
        b"QkVHSU46VkNBTEVOREFS\r\n",
        b"=C3=28=\r\n",
        b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:1\r\n",
        b"\x00\xff\xfe",
        b"Content-Type: message/rfc822\r\n\r\n",
    ]
)


@FUZZ
@given(st.lists(MIME_PIECES, max_size=40))
def test_shuffled_mime_fragments_never_crash_the_walker(pieces: list[bytes]) -> None:
    walk_message(b"From: a@b\r\nMIME-Version: 1.0\r\n" + b"".join(pieces))


# -------------------------------------------------------------------------------------------- iCalendar

ICAL_LINES = st.sampled_from(
    [
        "BEGIN:VCALENDAR", "END:VCALENDAR", "BEGIN:VEVENT", "END:VEVENT", "METHOD:REQUEST", "METHOD:CANCEL",
        "METHOD:", "UID:abc", "UID:", "SEQUENCE:x", "SEQUENCE:99999999999999999999",
        "DTSTART:20240101T100000Z",
        "DTSTART;TZID=Nowhere/Land:20240101T100000", "DTSTART:garbage", "DTEND:19000101", "DURATION:P-1D",
        "RRULE:FREQ=SECONDLY;COUNT=100000000", "RRULE:FREQ=DAILY;UNTIL=garbage", "RRULE:FREQ=YEARLY",
        "EXDATE:20240102T100000Z", "RECURRENCE-ID:20240102T100000Z", "ORGANIZER:mailto:",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:a@b\r\n\tBcc: x", "ATTENDEE;CN=\"\x00\":MAILTO:x@y",
        "SUMMARY:=0D=0ABcc: x@evil", "BEGIN:VTIMEZONE", "END:VTIMEZONE", "TZID:X", "BEGIN:VALARM", "\x00",
        " folded", "STATUS:CANCELLED",
    ]
)  # fmt: skip


@FUZZ
@given(st.lists(ICAL_LINES | st.text(max_size=60), max_size=40), st.sampled_from(["\r\n", "\n", "\r"]))
def test_hostile_calendars_never_crash(lines: list[str], end: str) -> None:
    events = parse_calendar(end.join(lines))
    assert isinstance(events, list)


@FUZZ
@given(st.text(max_size=2000))
def test_random_text_calendars_never_crash(text: str) -> None:
    assert isinstance(parse_calendar(text), list)


def test_a_huge_recurring_calendar_is_bounded() -> None:
    event = (
        "BEGIN:VEVENT\r\nUID:u{n}\r\nDTSTART:20240101T100000Z\r\nDTEND:20240101T110000Z\r\n"
        "RRULE:FREQ=SECONDLY;COUNT=100000000\r\nSUMMARY:" + "s" * 1000 + "\r\nEND:VEVENT\r\n"
    )
    text = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n" + "".join(event.format(n=n) for n in range(500))
    text += "END:VCALENDAR\r\n"
    elapsed, peak, events = measure(lambda: parse_calendar(text))
    assert isinstance(events, list)
    assert elapsed < 10.0 and peak < 256 * MB, f"{elapsed:.2f} s, {peak / MB:.1f} MB"
