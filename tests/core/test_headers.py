"""parse_headers: the scanner's lenient, bounded header parser, and the address helpers it relies on."""

from __future__ import annotations

import base64
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime, formataddr

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from followupd.core.addresses import (
    MAX_ADDRESSES,
    _tokenize,
    domain_of,
    is_role_address,
    list_addresses,
    list_id,
    list_post_address,
    normalise_email,
    split_address_list,
)
from followupd.core.headers import (
    MAX_REFERENCES,
    MAX_SUBJECT_CHARS,
    clean_text,
    decode_words,
    header_block,
    parse_headers,
    strip_mbox_from_line,
)
from followupd.core.types import Address, MessageMeta


def block(*lines: str, end: str = "\r\n") -> bytes:
    """A header block as IMAP returns it: the given lines, each ended, then the blank line."""
    return (end.join(lines) + end + end).encode()


def decoded_values(meta: MessageMeta) -> list[str]:
    """Every string parse_headers decoded: these must never carry a control character."""
    addresses = [a for a in (meta.sender, *meta.to, *meta.cc, *meta.reply_to) if a is not None]
    return [
        meta.message_id,
        meta.subject,
        meta.in_reply_to or "",
        *meta.references,
        *(a.email for a in addresses),
        *(a.name for a in addresses),
        *meta.flags.values(),
    ]


def assert_safe(meta: MessageMeta) -> None:
    for value in decoded_values(meta):
        bad = [c for c in value if unicodedata.category(c) == "Cc" or c in "\u2028\u2029\u202e\ufeff"]
        assert not bad, (value, bad)


# --- framing: mbox line, header block, line ends, folding, duplicates ---------------------------------------


def test_whole_message_with_mbox_line_stops_at_the_blank_line() -> None:
    raw = (
        b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n"
        b"From: Alice <alice@example.org>\nSubject: hi\n\n"
        b"Subject: this is the body\nFrom: body@example.org\n"
    )
    meta = parse_headers(raw)
    assert meta.sender == Address("alice@example.org", "Alice")
    assert meta.subject == "hi"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"From alice@x Mon Jan  1 00:00:00 2024\nSubject: a\n", b"Subject: a\n"),
        (b"From: alice@x\n", b"From: alice@x\n"),
        (b"From : alice@x\n", b"From : alice@x\n"),  # a field with a blank before the colon, not mbox
        (b"From alice@x Mon Jan  1 00:00:00 2024", b""),
    ],
)
def test_strip_mbox_from_line(raw: bytes, expected: bytes) -> None:
    assert strip_mbox_from_line(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", b"A: 1\r\nB: 2\r\n"),
        (b"A: 1\nB: 2\n\nbody", b"A: 1\nB: 2\n"),
        (b"A: 1\nB: 2\r\n\r\nbody", b"A: 1\nB: 2\r\n"),
        (b"A: 1\nB: 2", b"A: 1\nB: 2"),  # no body: all of it
        (b"\r\nbody", b""),  # starts with the blank line: no headers
        (b"", b""),
    ],
)
def test_header_block(raw: bytes, expected: bytes) -> None:
    assert header_block(raw) == expected


@pytest.mark.parametrize("end", ["\r\n", "\n", "\r"])
def test_line_endings(end: str) -> None:
    raw = block("From: Alice <alice@example.org>", "Subject: hello", "Message-ID: <m1@x>", end=end)
    meta = parse_headers(raw)
    assert (meta.sender, meta.subject, meta.message_id) == (
        Address("alice@example.org", "Alice"),
        "hello",
        "m1@x",
    )


def test_folding_and_case_insensitive_names() -> None:
    raw = block(
        "SUBJECT: a long",
        "\tsubject   line",
        "to: Bob <bob@example.org>,",
        " Carol <carol@example.org>",
        "message-id:",
        " <folded@example.org>",
        "LIST-UNSUBSCRIBE: <mailto:u@x>,",
        "  <https://x/u>",
    )
    meta = parse_headers(raw)
    assert meta.subject == "a long subject line"
    assert [a.email for a in meta.to] == ["bob@example.org", "carol@example.org"]
    assert meta.message_id == "folded@example.org"
    assert meta.flags["list-unsubscribe"] == "<mailto:u@x>, <https://x/u>"


def test_first_occurrence_wins() -> None:
    raw = block(
        "From: First <first@example.org>",
        "Subject: first",
        "Date: Tue, 15 Nov 2022 08:12:31 +0000",
        "Subject: second",
        "\tand its fold",
        "From: Second <second@example.org>",
        "Date: Wed, 16 Nov 2022 08:12:31 +0000",
    )
    meta = parse_headers(raw)
    assert meta.sender is not None and meta.sender.email == "first@example.org"
    assert meta.subject == "first"
    assert meta.date_at == datetime(2022, 11, 15, 8, 12, 31, tzinfo=UTC)


def test_lone_cr_inside_a_line_cannot_smuggle_a_field() -> None:
    raw = b"Subject: hi\rFrom: evil@attacker.example\r\nFrom: Alice <alice@example.org>\r\n\r\n"
    meta = parse_headers(raw)
    assert meta.sender == Address("alice@example.org", "Alice")
    assert meta.subject == "hi From: evil@attacker.example"


def test_garbage_lines_and_continuations_of_unwanted_fields_are_skipped() -> None:
    raw = block(
        "this line has no colon",
        "Received: from mx.example.org",
        "\tby mx2; Tue, 15 Nov 2022",
        " Subject: not a field, a continuation",
        "X-Unrelated: 1",
        "Subject: real",
    )
    assert parse_headers(raw).subject == "real"


def test_only_classification_headers_become_flags() -> None:
    raw = block(
        "Precedence: bulk",
        "List-Id: News <news.example.org>",
        "X-GM-THRID: 1234567890",
        "Auto-Submitted: auto-generated",
        "Return-Path: <>",
        "X-Spam-Score: 9",
        "Received: from x",
    )
    assert parse_headers(raw).flags == {
        "precedence": "bulk",
        "list-id": "News <news.example.org>",
        "x-gm-thrid": "1234567890",
        "auto-submitted": "auto-generated",
        "return-path": "<>",
    }


@pytest.mark.parametrize(
    ("raw_from", "flag"),
    [
        ("MAILER-DAEMON <>", "MAILER-DAEMON <>"),
        ("<>", "<>"),
        ("Mail Delivery Subsystem <MAILER-DAEMON>", None),
    ],
)
def test_a_from_without_an_address_is_kept_as_a_flag(raw_from: str, flag: str | None) -> None:
    meta = parse_headers(f"From: {raw_from}\r\n\r\n".encode())
    assert meta.sender is None
    assert meta.flags.get("from") == (flag or raw_from)
    assert "from" not in parse_headers(b"From: a@example.org\r\n\r\n").flags


def test_empty_and_missing_everything() -> None:
    meta = parse_headers(b"")
    assert meta == MessageMeta(
        message_id="", subject="", date_at=None, tz_offset_minutes=None, sender=None, in_reply_to=None
    )


# --- text: charsets, encoded words, cleaning ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_subject", "expected"),
    [
        (b"plain", "plain"),
        (b"=?UTF-8?B?SmFsYXBlw7FvIMOpdMOp?=", "Jalapeño été"),
        (b"=?utf-8?q?caf=C3=A9_au_lait?=", "café au lait"),
        (b"=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        (b"=?iso-8859-1?q?this=20is=20some=20text?=", "this is some text"),
        # adjacent encoded words: the whitespace between them disappears
        (b"=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        (b"=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"),
        (b"=?utf-8?q?a?= b =?utf-8?q?c?=", "a b c"),
        # a multi-byte character split across two words of one charset
        (b"=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "éé"),
        (b"=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "é"),
        (b"=?utf-8*en?q?hello?=", "hello"),  # RFC 2231 language tag
        (b"=?x-unknown?q?caf=C3=A9?=", "café"),  # unknown charset: UTF-8
        (b"=?x-unknown?q?caf=E9?=", "café"),  # unknown charset, not UTF-8: latin-1
        (b"=?idna?q?caf=E9?=", "café"),  # a codec that refuses errors="replace"
        (b"=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),  # malformed base64: left as it is
        (b"=?utf-8?b?QUJD?", "=?utf-8?b?QUJD?"),  # unterminated: left as it is
        (b"=?utf-8?q?a?==?utf-8?q?b?=", "ab"),
        (b"=?UTF-8?B?SGVsbG8?=", "Hello"),  # missing padding
        (b"Re: \xc3\xa9t\xc3\xa9", "Re: été"),  # raw UTF-8 (RFC 6532)
        (b"Re: \xe9t\xe9", "Re: été"),  # raw latin-1
        (b"=?gb2312?b?1tDOxA==?=", "中文"),
        (b"=?UTF-8?Q?Hello World?=", "Hello World"),  # spaces inside a Q word: lenient
    ],
)
def test_subject_decoding(raw_subject: bytes, expected: str) -> None:
    assert parse_headers(b"Subject: " + raw_subject + b"\r\n\r\n").subject == expected


@pytest.mark.parametrize(
    "raw_subject",
    [
        b"=?UTF-8?Q?=0A?=Bcc: victim@example.org",  # CVE-2024-6923 shape
        b"=?UTF-8?Q?hi=0D=0ABcc:_x@y?=",
        b"=?UTF-8?B?aGkNCkJjYzogeEB5?=",  # "hi\r\nBcc: x@y" in base64
        b"a\x00b\x1bc\x7fd",
        b"=?utf-8?q?=E2=80=A8line=E2=80=A9sep?=",  # U+2028/U+2029
        b"=?utf-8?q?=E2=80=AEevil?=",  # right-to-left override
        b"=?unicode_escape?q?a\\nb?=",  # a codec that turns text escapes into controls
    ],
)
def test_no_control_characters_survive_in_subjects(raw_subject: bytes) -> None:
    subject = parse_headers(b"Subject: " + raw_subject + b"\r\n\r\n").subject
    assert "\r" not in subject and "\n" not in subject and "\x00" not in subject
    assert_safe(parse_headers(b"Subject: " + raw_subject + b"\r\n\r\n"))


def test_subject_whitespace_is_collapsed_and_length_bounded() -> None:
    assert parse_headers(b"Subject:   a \t\t b  \r\n\r\n").subject == "a b"
    long = parse_headers(b"Subject: " + b"x " * 5000 + b"\r\n\r\n").subject
    assert len(long) <= MAX_SUBJECT_CHARS


@given(st.text(max_size=60))
def test_encoded_words_round_trip(text: str) -> None:
    encoded = Header(text, "utf-8").encode(linesep="")
    assert clean_text(decode_words(encoded)) == clean_text(text)


@given(st.text(max_size=40), st.sampled_from(["iso-8859-1", "utf-8", "koi8-r", "shift_jis", "windows-1252"]))
def test_encoded_words_round_trip_in_other_charsets(text: str, charset: str) -> None:
    try:
        data = text.encode(charset)
    except UnicodeEncodeError:
        return
    encoded = f"=?{charset}?b?{base64.b64encode(data).decode()}?="
    assert decode_words(encoded) == data.decode(charset)


# --- addresses ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Alice <Alice@Example.ORG>", [("Alice", "alice@example.org")]),
        ("alice@example.org", [("", "alice@example.org")]),
        ("<alice@example.org>", [("", "alice@example.org")]),
        ('"Smith, John" <john@x.org>, bob@y.org', [("Smith, John", "john@x.org"), ("", "bob@y.org")]),
        ('"Quote \\" inside" <q@x.org>', [('Quote " inside', "q@x.org")]),
        ("bob@y.org (Bob Builder)", [("Bob Builder", "bob@y.org")]),
        ("Bob (work) <bob@y.org>", [("Bob", "bob@y.org")]),
        ("undisclosed-recipients:;", []),
        ("Team: a@x.org, B <b@x.org>;, c@x.org", [("", "a@x.org"), ("B", "b@x.org"), ("", "c@x.org")]),
        ("Empty group:;, d@x.org", [("", "d@x.org")]),
        ("<@relay.example:route@x.org>", [("", "route@x.org")]),
        ("<mailto:m@x.org>", [("", "m@x.org")]),
        ("Alice alice@x.org", [("Alice", "alice@x.org")]),
        ("a@x.org,, ,b@x.org,", [("", "a@x.org"), ("", "b@x.org")]),
        ("trailing.dot@x.org.", [("", "trailing.dot@x.org")]),
        ("< spaced@x.org >", [("", "spaced@x.org")]),
        ("Joe <joe@x.org", [("Joe", "joe@x.org")]),  # unterminated angle
        ('"unterminated <u@x.org>', [("unterminated", "u@x.org")]),  # recovered from inside the quote
        ("no address here", []),
        ("two@ats@x.org", []),
        ("Name <>", []),
        ("@x.org, local@", []),
        ("x y<z> Bob <b@x>", []),  # two angle-addrs in one item: not guessed at
        ('"j, a@b.c, k" x', []),  # an address-like text inside a quoted name is a name, not an address
        ("a\x00b@x.org, ok@x.org", [("", "ok@x.org")]),  # controls never enter an address
        ("=?utf-8?q?Jos=C3=A9?= <j@x.org>", [("=?utf-8?q?Jos=C3=A9?=", "j@x.org")]),  # raw: caller decodes
        ("Ünïcödé <üser@exämple.org>", [("Ünïcödé", "üser@exämple.org")]),
        ("(nested (comment)) n@x.org", [("nested", "n@x.org")]),  # nesting is not followed: a name is lost
        ("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", [("Pete", "pete@silly.test")]),
        ("John Doe <jdoe@machine(comment).  example>", [("John Doe", "jdoe@machine.example")]),
        ("jgb at example.com (Jesus Gonzalez)", [("Jesus Gonzalez", "jgb@example.com")]),
        ("goran at domain.com", [("", "goran@domain.com")]),  # list-archive obfuscation
        ("meet at noon", []),
        ("Nathaniel Borenstein <nsb>", []),  # a local-only address: nothing to contact
    ],
)
def test_split_address_list(value: str, expected: list[tuple[str, str]]) -> None:
    assert split_address_list(value) == expected


@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        (b"=?UTF-8?B?Sm9zw6kgR2FyY8OtYQ==?= <jose@example.com>", Address("jose@example.com", "José García")),
        (b"=?utf-8?q?M=C3=BCller=2C_Hans?= <hans@x.org>", Address("hans@x.org", "Müller, Hans")),
        (b"=?iso-8859-1?Q?Fran=E7ois?= <f@x.org>", Address("f@x.org", "François")),
        (b'"=?utf-8?q?Jos=C3=A9?=" <j@x.org>', Address("j@x.org", "José")),  # quoted word: decoded anyway
        (b"=?bogus-charset?q?Ren=C3=A9?= <r@x.org>", Address("r@x.org", "René")),
        (b"=?utf-8?b?broken!?= <b@x.org>", Address("b@x.org", "=?utf-8?b?broken!?=")),
        (b"'Alice Smith' <alice@x.org>", Address("alice@x.org", "Alice Smith")),  # Outlook's quotes
        (b"\xc3\x9cml\xc3\xa4ut <u@x.org>", Address("u@x.org", "Ümläut")),  # raw UTF-8
        (b"Ren\xe9 <r@x.org>", Address("r@x.org", "René")),  # raw latin-1
        (b"=?utf-8?q?Evil=0D=0ABcc=3A_x=40y?= <e@x.org>", Address("e@x.org", "Evil Bcc: x@y")),
        (b"Alice   \t Smith <a@x.org>", Address("a@x.org", "Alice Smith")),
    ],
)
def test_display_names(raw_value: bytes, expected: Address) -> None:
    assert parse_headers(b"From: " + raw_value + b"\r\n\r\n").sender == expected


def test_cc_groups_and_undisclosed_recipients_through_parse_headers() -> None:
    meta = parse_headers(
        block(
            "From: a@x.org",
            "To: undisclosed-recipients:;",
            "Cc: Project team: Bob <bob@x.org>, carol@x.org;, Dave <dave@y.org>",
            "Reply-To: list@lists.x.org",
        )
    )
    assert meta.to == ()
    assert [a.email for a in meta.cc] == ["bob@x.org", "carol@x.org", "dave@y.org"]
    assert meta.reply_to == (Address("list@lists.x.org"),)


def test_address_results_are_shared_but_never_stale() -> None:
    # The address cache must key on the exact bytes: different bytes, different answer.
    first = parse_headers(b"From: Alice <alice@x.org>\r\n\r\n").sender
    second = parse_headers(b"From: Alicia <alice@x.org>\r\n\r\n").sender
    assert (first, second) == (Address("alice@x.org", "Alice"), Address("alice@x.org", "Alicia"))


@pytest.mark.timeout(20)
def test_recipients_are_capped_and_huge_lines_are_bounded() -> None:
    many = ", ".join(f"P{i} <p{i}@example.org>" for i in range(10_000)).encode()
    meta = parse_headers(b"To: " + many + b"\r\nCc: " + b'"q" <q@x>, ' * 20_000 + b"\r\n\r\n")
    assert len(meta.to) <= MAX_ADDRESSES
    assert meta.to[0] == Address("p0@example.org", "P0")
    assert len(meta.cc) <= MAX_ADDRESSES


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "hostile",
    [
        b"Subject: " + b"a" * 1_000_000 + b"\r\n",
        b"Subject: " + b"=?utf-8?q?x?=" * 100_000 + b"\r\n",
        b"To: " + b'"' * 1_000_000 + b"\r\n",
        b"To: " + b"(" * 500_000 + b"\r\n",
        b"To: " + b"<" * 500_000 + b"\r\n",
        b"To: " + b"a@b" * 300_000 + b"\r\n",
        b"To: " + b'"q, r" <q@x>, ' * 30_000 + b"\r\n",  # fails the simple-list check only at its very end
        b"References: " + b"<a@b>" * 200_000 + b"\r\n",
        b"Subject: x\r\n" + b" folded\r\n" * 200_000,
        b"X-Junk: y\r\n" * 200_000,
        b"Date: " + b"1" * 1_000_000 + b"\r\n",
        b"Message-ID: <" + b"m" * 1_000_000 + b">\r\n",
    ],
    ids=[
        "long-subject",
        "many-words",
        "quotes",
        "comments",
        "angles",
        "ats",
        "quoted-list",
        "refs",
        "folds",
        "fields",
        "date",
        "mid",
    ],
)
def test_hostile_input_costs_bounded_time(hostile: bytes) -> None:
    # Finishing inside the timeout is the assertion: each of these is quadratic in a naive parser.
    assert_safe(parse_headers(hostile + b"\r\n"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  <Alice@Example.ORG>  ", "alice@example.org"),
        ("mailto:Bob@X.org", "bob@x.org"),
        ("bob@x.org.", "bob@x.org"),
        ("no-at-sign", None),
        ("a@b@c", None),
        ("with space@x.org", None),
        ("@x.org", None),
        ("x@", None),
        ("a" * 400 + "@x.org", None),
        ("ctl\x01@x.org", None),
    ],
)
def test_normalise_email(value: str, expected: str | None) -> None:
    assert normalise_email(value) == expected


@pytest.mark.parametrize(
    ("email", "expected"),
    [("a@Example.ORG", "example.org"), ("a@x.org.", "x.org"), ("nope", ""), ('"a@b"@c.org', "c.org")],
)
def test_domain_of(email: str, expected: str) -> None:
    assert domain_of(email) == expected


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("noreply@example.com", "noreply"),
        ("no-reply@example.com", "noreply"),
        ("no_reply@example.com", "noreply"),
        ("do-not-reply@example.com", "noreply"),
        ("donotreply@example.com", "noreply"),
        ("noreply-12345@example.com", "noreply"),
        ("drive-shares-dm-noreply@google.com", "noreply"),
        ("comments-noreply@docs.google.com", "noreply"),
        ("noreply2@example.com", "noreply"),
        ("MAILER-DAEMON@mx.example.com", "mailer-daemon"),
        ("postmaster@example.com", "postmaster"),
        ("post_master@vtext.example.com", "postmaster"),
        ("daemon@host.example", "automated"),  # a Unix system account, not necessarily a bounce
        ("bounces+12345-abcd@mail.example.com", "bounce"),
        ("bounce-md_123.abc@mandrillapp.com", "bounce"),
        ("msprvs1=17123=bounces-4242@example.com", "bounce"),
        ("notifications@github.com", "notifications"),
        ("notification@facebookmail.com", "notifications"),
        ("calendar-notification@google.com", "notifications"),
        ("alerts@bank.example", "alerts"),
        ("newsletter@shop.example", "newsletter"),
        ("news@paper.example", "newsletter"),
        ("invitations@linkedin.com", "invitations"),
        ("support@vendor.example", "support"),
        ("helpdesk@uni.example", "support"),
        ("auto-confirm@amazon.com", "automated"),
        ("dependabot@example.com", None),  # a word only counts when delimited ("dependabot" is one word)
        ("ci-bot@example.com", "automated"),
        ("owner-dev@lists.example.org", "list-robot"),
        ("dev-request@lists.example.org", "list-robot"),
        ("neko-admin@lists.example.org", "list-robot"),
        ("majordomo@example.org", "list-robot"),
        ("reply+AABC123@reply.github.com", "reply-relay"),
        ("someone@reply.example.com", "reply-relay"),
        ("12345+octocat@users.noreply.github.com", "noreply"),
        ("x@bounces.example.com", "bounce"),
        # people
        ("alice.smith@example.com", None),
        ("info@smallbusiness.example", None),  # decided: a small business's only address is often a person
        ("contact@freelancer.example", None),
        ("hello@studio.example", None),
        ("bruno.reply@example.com", None),  # "no" + "reply" only joins across a separator when both are words
        ("newsom@example.com", None),
        ("helpful.harry@example.com", None),
        ("owner@company.example", None),
        ("alice+news@example.com", None),  # a +tag is the recipient's own filter label
        ("nora@noreply-example.com", None),  # only whole domain labels count
    ],
)
def test_is_role_address(email: str, expected: str | None) -> None:
    assert is_role_address(email) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<mailto:dev@lists.example.org>", "dev@lists.example.org"),
        ("<mailto:Dev@Lists.Example.org?subject=post>", "dev@lists.example.org"),
        ("<https://x.org/post>, <mailto:dev%40lists.example.org>", "dev@lists.example.org"),
        ("NO (posting not allowed on this list)", None),
        ("<https://groups.example.com/post>", None),
        ("", None),
    ],
)
def test_list_post_address(value: str, expected: str | None) -> None:
    assert list_post_address(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Developers <dev.lists.example.org>", "dev.lists.example.org"),
        ("<Dev.Lists.Example.ORG>", "dev.lists.example.org"),
        ("acme/widget <widget.acme.github.com>", "widget.acme.github.com"),
        ("bare.list.example.org", "bare.list.example.org"),
        ('"Name with <brackets" <x.example.org>', "x.example.org"),
        ("no dots here", None),
        ("<>", None),
        ("", None),
    ],
)
def test_list_id(value: str, expected: str | None) -> None:
    assert list_id(value) == expected


def test_list_addresses_from_post_and_id() -> None:
    flags = {"list-post": "<mailto:dev@lists.example.org>", "list-id": "Dev <dev.lists.example.org>"}
    assert list_addresses(flags) == frozenset({"dev@lists.example.org"})
    google = {"list-id": "<friends.googlegroups.com>"}
    assert list_addresses(google) == frozenset({"friends@googlegroups.com"})
    assert list_addresses({}) == frozenset()


# --- dates --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected_utc", "offset"),
    [
        ("Tue, 15 Nov 1994 08:12:31 -0500", datetime(1994, 11, 15, 13, 12, 31, tzinfo=UTC), -300),
        ("15 Nov 1994 08:12:31 +0000", datetime(1994, 11, 15, 8, 12, 31, tzinfo=UTC), 0),
        ("Tue,15 Nov 2022 08:12:31 +0530 (IST)", datetime(2022, 11, 15, 2, 42, 31, tzinfo=UTC), 330),
        ("Tue, 15 Nov 2022 08:12:31 -0000", datetime(2022, 11, 15, 8, 12, 31, tzinfo=UTC), None),
        ("Tue, 15 Nov 2022 08:12 GMT", datetime(2022, 11, 15, 8, 12, tzinfo=UTC), 0),
        ("Tue, 15 Nov 94 08:12:31 EST", datetime(1994, 11, 15, 13, 12, 31, tzinfo=UTC), -300),
        ("  Tue, 15 Nov 2022 08:12:31 +0100", datetime(2022, 11, 15, 7, 12, 31, tzinfo=UTC), 60),
        ("Tue, 15 Nov 2022 08:12:60 +0000", datetime(2022, 11, 15, 8, 12, 59, tzinfo=UTC), 0),  # leap second
        ("Tue, 15 November 2022 08:12:31 +0000", datetime(2022, 11, 15, 8, 12, 31, tzinfo=UTC), 0),
        ("Tue, 15 Nov 2022 08:12:31", datetime(2022, 11, 15, 8, 12, 31, tzinfo=UTC), None),  # no zone
    ],
)
def test_dates(value: str, expected_utc: datetime, offset: int | None) -> None:
    meta = parse_headers(f"Date: {value}\r\n\r\n".encode())
    assert (meta.date_at, meta.tz_offset_minutes) == (expected_utc, offset)
    assert meta.date_at is not None and meta.date_at.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "Thu, 01 Jan 1970 00:00:00 +0000",  # the epoch: a broken clock
        "Mon, 31 Feb 2020 10:00:00 +0000",
        "Mon, 1 Jan 2020 25:00:00 +0000",
        "Mon, 1 Jan 2020 10:00:00 +9900",
        "Fri, 31 Dec 9999 23:00:00 -1000",  # past datetime.max once converted to UTC
        "Tue, 15 Foo 2022 08:12:31 +0000",
        "2022-11-15T08:12:31Z",
        "\xe4\xb8\x8d\xe6\x98\x8e",
    ],
)
def test_unreadable_dates_are_none_and_fall_back(value: str) -> None:
    raw = f"Date: {value}\r\n\r\n".encode("latin-1")
    assert parse_headers(raw).date_at is None
    fallback = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_headers(raw, fallback_date=fallback).date_at == fallback


def test_fallback_date_rules() -> None:
    fallback = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    raw = b"Date: Sun, 30 Apr 2023 09:00:00 +0000\r\n\r\n"
    assert parse_headers(raw, fallback_date=fallback).date_at == datetime(2023, 4, 30, 9, tzinfo=UTC)
    future = b"Date: Mon, 1 Jan 2024 09:00:00 +0200\r\n\r\n"  # a sender clock far ahead of delivery
    meta = parse_headers(future, fallback_date=fallback)
    assert (meta.date_at, meta.tz_offset_minutes) == (fallback, 120)
    assert (
        parse_headers(b"\r\n", fallback_date=datetime(2023, 5, 1, 12, 0)).date_at == fallback
    )  # naive = UTC
    berlin = datetime(2023, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    converted = parse_headers(b"\r\n", fallback_date=berlin).date_at
    assert converted == fallback and converted is not None and converted.tzinfo is UTC


@given(
    st.datetimes(min_value=datetime(1980, 1, 2), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_formatted_dates_round_trip(moment: datetime, offset: int) -> None:
    moment = moment.replace(microsecond=0)
    local = moment.astimezone(timezone(timedelta(minutes=offset)))
    meta = parse_headers(f"Date: {format_datetime(local)}\r\n\r\n".encode())
    assert (meta.date_at, meta.tz_offset_minutes) == (moment, offset)


# --- message ids --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@def.example>", "abc@def.example"),
        ("  < abc@def.example >", "abc@def.example"),
        ("abc@def.example", "abc@def.example"),
        ("<abc@def> (added by postmaster)", "abc@def"),
        ("<first@x> <second@x>", "first@x"),
        ("<>", ""),
        ("no id here", ""),
        ("<ünïcode@x.example>", "ünïcode@x.example"),
        ("<with\x00nul@x>", "withnul@x"),
    ],
)
def test_message_id(value: str, expected: str) -> None:
    assert parse_headers(f"Message-ID: {value}\r\n\r\n".encode()).message_id == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<parent@x>", "parent@x"),
        ("<parent@x> (Alice's message of Mon, 1 Jan 2024)", "parent@x"),
        ("Your message of Mon, 1 Jan 2024", None),  # prose, not an id
        ("parent@x", "parent@x"),
        ("", None),
    ],
)
def test_in_reply_to(value: str, expected: str | None) -> None:
    assert parse_headers(f"In-Reply-To: {value}\r\n\r\n".encode()).in_reply_to == expected


def test_references_order_dedupe_folding_and_bound() -> None:
    meta = parse_headers(block("References: <r1@x> <r2@x>", "\t<r2@x>", " <r3@x>"))
    assert meta.references == ("r1@x", "r2@x", "r3@x")
    many = " ".join(f"<r{i}@x>" for i in range(200))
    refs = parse_headers(f"References: {many}\r\n\r\n".encode()).references
    assert len(refs) == MAX_REFERENCES
    assert refs[0] == "r0@x"  # the thread root survives
    assert refs[-1] == "r199@x"  # and so do the nearest parents
    assert refs[1] == "r151@x"
    assert parse_headers(b"References: r1@x r2@x\r\n\r\n").references == ("r1@x", "r2@x")
    assert parse_headers("References: <ü@x> <a@x>\r\n\r\n".encode()).references == ("ü@x", "a@x")


# --- properties ---------------------------------------------------------------------------------------------


@given(st.binary(max_size=3000))
def test_random_bytes_never_raise_and_never_leave_controls(raw: bytes) -> None:
    assert_safe(parse_headers(raw))


_NAMES = ["From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References"]
_NAMES += ["List-Id", "List-Post", "Return-Path", "Content-Type", "Auto-Submitted", "X-GM-THRID", "X-Other"]
_PIECES = [
    "a@b.example", "Name", '"', "<", ">", ",", ";", ":", "(", ")", "\\", "@", " ", "\t", "\r", "\n", "\r\n ",
    "\x00", "\x1b", "\u2028", "é", "中", "=?", "?=", "=?utf-8?q?", "=?utf-8?b?", "=0A", "=0D", "_", "?",
    "=?utf-8?q?=0D=0ABcc:_x@y?=", "=?bogus?b?AAAA?=", "<id@x>", "Tue, 15 Nov 2022 08:12:31 -0500",
]  # fmt: skip


@st.composite
def header_structures(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(_NAMES) | st.text(min_size=1, max_size=8))
        pieces = draw(st.lists(st.sampled_from(_PIECES) | st.text(max_size=6), max_size=12))
        encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
        lines.append(f"{name}: {''.join(pieces)}".encode(encoding, "replace"))
    end = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return end.join(lines) + end + end


@given(header_structures())
def test_random_header_structures_never_raise_and_never_leave_controls(raw: bytes) -> None:
    assert_safe(parse_headers(raw))


_ADDRESS_PIECES = [
    "alice",
    "Bob",
    "x.org",
    "@",
    "<",
    ">",
    ",",
    " ",
    ".",
    "é",
    "-",
    "a@b.c",
    "A@B.C",
    "=?u?q?x?=",
    " at ",
    '"',
    '"Smith, J"',
    '" "',
]


@given(st.lists(st.sampled_from(_ADDRESS_PIECES), max_size=25).map("".join))
def test_fast_path_agrees_with_the_tokenizer(value: str) -> None:
    assert split_address_list(value) == _tokenize(value, MAX_ADDRESSES)


_PEOPLE = st.tuples(
    st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp", "Cf"]), max_size=20),
    st.from_regex(r"[a-z0-9._+-]{1,10}@[a-z0-9-]{1,10}\.[a-z]{2,4}", fullmatch=True),
)


def _expected_name(name: str) -> str:
    name = clean_text(name)
    if len(name) > 1 and name[0] == name[-1] and name[0] in "'\"":
        name = name[1:-1].strip()  # parse_headers drops one pair of quotes around a whole name
    return name


@given(st.lists(_PEOPLE, min_size=1, max_size=6))
def test_formatted_address_lists_round_trip(people: list[tuple[str, str]]) -> None:
    assume(all("=?" not in name for name, _ in people))
    header = ", ".join(formataddr((name, email), charset="utf-8") for name, email in people)
    meta = parse_headers(f"To: {header}\r\n\r\n".encode())
    assert [a.email for a in meta.to] == [email.lower() for _, email in people]
    assert [a.name for a in meta.to] == [_expected_name(name) for name, _ in people]
