"""MIME structure walking: IMAP BODYSTRUCTURE (as imapclient returns it) and whole local messages."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from followupd.core.mime import (
    MAX_DEPTH,
    MAX_PARTS,
    PartRef,
    calendar_parts,
    decode_part,
    text_part,
    walk_message,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ics"


def bodystructure(raw: bytes) -> object:
    """Parse a BODYSTRUCTURE the way the IMAP adapter will receive it: through imapclient's own parser."""
    parsed = parse_fetch_response([b"1 (UID 7 BODYSTRUCTURE " + raw + b")"])
    return parsed[7][b"BODYSTRUCTURE"]


# Gmail: multipart/mixed > [multipart/alternative > [plain, html, calendar], application/ics attachment].
GMAIL = (
    b'((("TEXT" "PLAIN" ("CHARSET" "UTF-8" "FORMAT" "flowed" "DELSP" "yes") NIL NIL "BASE64" 304 5 NIL NIL '
    b'NIL NIL)("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" 5120 90 NIL NIL NIL NIL)'
    b'("TEXT" "CALENDAR" ("CHARSET" "UTF-8" "METHOD" "REQUEST") NIL NIL "7BIT" 1785 46 NIL NIL NIL NIL) '
    b'"ALTERNATIVE" ("BOUNDARY" "000000000000altboundary") NIL NIL NIL)'
    b'("APPLICATION" "ICS" ("NAME" "invite.ics") NIL NIL "BASE64" 2418 NIL '
    b'("ATTACHMENT" ("FILENAME" "invite.ics")) NIL NIL) '
    b'"MIXED" ("BOUNDARY" "000000000000mixedboundary") NIL NIL NIL)'
)
# Outlook: multipart/alternative > [html, text/calendar]; no text/plain at all.
OUTLOOK = (
    b'(("TEXT" "HTML" ("CHARSET" "iso-8859-1") NIL NIL "QUOTED-PRINTABLE" 2210 60 NIL NIL NIL NIL)'
    b'("TEXT" "CALENDAR" ("CHARSET" "utf-8" "METHOD" "REQUEST" "NAME" "meeting.ics") NIL NIL '
    b'"QUOTED-PRINTABLE" 3001 80 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "_000_AM0PR01MB1234_") NIL '
    b'("de-DE") NIL)'
)
# Outlook "pure ics": the whole message is text/calendar.
PURE_ICS = (
    b'("TEXT" "CALENDAR" ("CHARSET" "utf-8" "METHOD" "REQUEST") NIL NIL "8BIT" 2771 70 NIL NIL NIL NIL)'
)
# Teams: alternative [plain, html, base64 text/calendar].
TEAMS = (
    b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "QUOTED-PRINTABLE" 230 5 NIL NIL NIL NIL)'
    b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "QUOTED-PRINTABLE" 900 20 NIL NIL NIL NIL)'
    b'("TEXT" "CALENDAR" ("CHARSET" "utf-8" "METHOD" "REQUEST") NIL NIL "BASE64" 2900 38 NIL NIL NIL NIL) '
    b'"ALTERNATIVE" ("BOUNDARY" "_002_BY5PR00MB_") NIL ("en-US") NIL)'
)
# A Domino-style .ics attachment sent as application/octet-stream, inside signed mail, with RFC 2231 name.
SIGNED_OCTET = (
    b'((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 40 2 NIL NIL NIL NIL)'
    b'("APPLICATION" "OCTET-STREAM" ("NAME*" "utf-8\'\'Einladung%20Juni.ics") NIL NIL "BASE64" 1200 NIL '
    b'("ATTACHMENT" ("FILENAME*0" "Einladung" "FILENAME*1" ".ics")) NIL NIL) "MIXED" ("BOUNDARY" "b2") '
    b'NIL NIL NIL)("APPLICATION" "PKCS7-SIGNATURE" ("NAME" "smime.p7s") NIL NIL "BASE64" 4000 NIL '
    b'("ATTACHMENT" ("FILENAME" "smime.p7s")) NIL NIL) "SIGNED" ("PROTOCOL" "application/pkcs7-signature" '
    b'"BOUNDARY" "b1") NIL NIL NIL)'
)
# A forwarded invite: mixed > [plain, message/rfc822 > alternative > [plain, calendar]].
FORWARDED = (
    b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 46 1 NIL NIL NIL NIL)'
    b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 4000 ("Wed, 4 Mar 2026 09:00:00 -0800" "Partnership chat" '
    b"NIL NIL NIL NIL NIL NIL NIL NIL) "
    b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "QUOTED-PRINTABLE" 230 5 NIL NIL NIL NIL)'
    b'("TEXT" "CALENDAR" ("CHARSET" "utf-8" "METHOD" "REQUEST") NIL NIL "BASE64" 2900 38 NIL NIL NIL NIL) '
    b'"ALTERNATIVE" ("BOUNDARY" "x") NIL NIL NIL) 90 NIL ("ATTACHMENT" NIL) NIL NIL) '
    b'"MIXED" ("BOUNDARY" "fwd") NIL NIL NIL)'
)
# A text/plain attachment must not be taken for the body.
PLAIN_ATTACHMENT_FIRST = (
    b'(("TEXT" "PLAIN" ("CHARSET" "utf-8" "NAME" "notes.txt") NIL NIL "7BIT" 10 1 NIL '
    b'("ATTACHMENT" ("FILENAME" "notes.txt")) NIL NIL)("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL '
    b'"QUOTED-PRINTABLE" 80 2 NIL ("INLINE" NIL) NIL NIL) "MIXED" ("BOUNDARY" "q") NIL NIL NIL)'
)


def test_gmail_nested_alternative_and_attachment() -> None:
    parts = calendar_parts(bodystructure(GMAIL))
    assert [(p.part, p.content_type, p.encoding, p.charset) for p in parts] == [
        ("1.3", "text/calendar", "7bit", "UTF-8"),
        ("2", "application/ics", "base64", None),
    ]
    assert parts[0].size == 1785
    assert text_part(bodystructure(GMAIL)) == PartRef("1.1", "text/plain", "base64", "UTF-8", 304)


def test_outlook_calendar_beside_html_and_no_plain_text() -> None:
    structure = bodystructure(OUTLOOK)
    assert calendar_parts(structure) == [
        PartRef("2", "text/calendar", "quoted-printable", "utf-8", 3001, "meeting.ics")
    ]
    assert text_part(structure) is None


def test_single_part_calendar_message_is_part_1() -> None:
    structure = bodystructure(PURE_ICS)
    assert calendar_parts(structure) == [PartRef("1", "text/calendar", "8bit", "utf-8", 2771)]
    assert text_part(structure) is None


def test_teams_base64_calendar() -> None:
    parts = calendar_parts(bodystructure(TEAMS))
    assert [(p.part, p.encoding) for p in parts] == [("3", "base64")]
    ref = text_part(bodystructure(TEAMS))
    assert ref is not None
    assert (ref.part, ref.encoding, ref.charset) == ("1", "quoted-printable", "us-ascii")


def test_ics_filename_on_octet_stream_with_rfc2231_continuations() -> None:
    parts = calendar_parts(bodystructure(SIGNED_OCTET))
    assert [(p.part, p.content_type, p.filename) for p in parts] == [
        ("1.2", "application/octet-stream", "Einladung.ics")
    ]


def test_forwarded_message_numbering_follows_rfc3501() -> None:
    structure = bodystructure(FORWARDED)
    assert [p.part for p in calendar_parts(structure)] == ["2.2"]
    # The body is the forwarder's own words, not the forwarded message's.
    ref = text_part(structure)
    assert ref is not None
    assert ref.part == "1"


def test_text_part_skips_plain_attachments() -> None:
    ref = text_part(bodystructure(PLAIN_ATTACHMENT_FIRST))
    assert ref is not None
    assert (ref.part, ref.charset) == ("2", "iso-8859-1")


def test_hand_built_tuples_in_the_raw_imap_shape() -> None:
    # A multipart nested inside message/rfc822 keeps the raw shape: sub-part tuples first, then the subtype.
    leaf = (b"TEXT", b"CALENDAR", (b"METHOD", b"CANCEL"), None, None, b"BASE64", 100, 3)
    inner = ((b"TEXT", b"PLAIN", None, None, None, b"7BIT", 5, 1), leaf, b"ALTERNATIVE", None)
    message = (b"MESSAGE", b"RFC822", None, None, None, b"7BIT", 500, (), inner, 9)
    structure = ([(b"TEXT", b"PLAIN", None, None, None, b"7BIT", 5, 1), message], b"MIXED")
    assert [p.part for p in calendar_parts(structure)] == ["2.2"]
    # A single-part forwarded message's body is "<part>.1".
    single = (b"MESSAGE", b"RFC822", None, None, None, b"7BIT", 500, (), leaf, 9)
    assert [p.part for p in calendar_parts(([single], b"MIXED"))] == ["1.1"]


def test_str_values_and_missing_fields_are_tolerated() -> None:
    structure = ([("text", "calendar"), ("application", "ics", ["name", "x.ics"])], "mixed")
    assert [(p.part, p.encoding, p.charset) for p in calendar_parts(structure)] == [
        ("1", "7bit", None),
        ("2", "7bit", None),
    ]


@pytest.mark.parametrize("junk", [None, b"", (), [], 42, "text", (None,), ([], b"MIXED"), ((), ())])
def test_junk_structures_give_nothing(junk: object) -> None:
    assert calendar_parts(junk) == []
    assert text_part(junk) is None


def test_hostile_nesting_is_bounded() -> None:
    leaf = (b"TEXT", b"CALENDAR", None, None, None, b"7BIT", 1, 1)
    node: object = leaf
    for _ in range(10_000):
        node = ([node], b"MIXED")
    assert calendar_parts(node) == []  # deeper than MAX_DEPTH: never reached, never a RecursionError
    shallow: object = leaf
    for _ in range(MAX_DEPTH):
        shallow = ([shallow], b"MIXED")
    assert [p.part for p in calendar_parts(shallow)] == [".".join(["1"] * MAX_DEPTH)]
    assert calendar_parts(([shallow], b"MIXED")) == []


def test_hostile_width_is_bounded() -> None:
    leaf = (b"TEXT", b"CALENDAR", None, None, None, b"7BIT", 1, 1)
    assert len(calendar_parts(([leaf] * 100_000, b"MIXED"))) == MAX_PARTS


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.integers(), st.binary(max_size=8), st.text(max_size=8)),
        lambda children: st.one_of(st.lists(children, max_size=6), st.tuples(children, children, children)),
        max_leaves=40,
    )
)
def test_any_nested_shape_never_raises(structure: object) -> None:
    calendar_parts(structure)
    text_part(structure)


# --- decode_part


@pytest.mark.parametrize(
    ("data", "encoding", "charset", "expected"),
    [
        (base64.b64encode("Grüße".encode()), "BASE64", "utf-8", "Grüße"),
        (b"R3LD*vMO\r\nfZQ", "base64", "utf-8", "Grüße"),  # junk, a line break and lost padding
        (
            base64.b64encode(b"BEGIN:VCALENDAR")[:-3],
            "base64",
            None,
            "BEGIN:VCALEN",
        ),  # truncated partial fetch
        (b"caf=C3=A9 =\r\nsoon", "quoted-printable", "utf-8", "café soon"),
        (b"caf\xe9", "8bit", "iso-8859-1", "café"),
        (b"caf\xe9", "8bit", "x-unknown", "café"),  # unknown charset: UTF-8, then Windows-1252
        (b"caf\xc3\xa9", "7bit", None, "café"),
        (b"\x93quoted\x94", "binary", "no-such-charset", "\u201cquoted\u201d"),
        (b"abc", "x-uuencode", "base64", "abc"),  # a codec that is not a text encoding
        (b"", "base64", "utf-8", ""),
    ],
)
def test_decode_part(data: bytes, encoding: str, charset: str | None, expected: str) -> None:
    assert decode_part(data, encoding, charset) == expected


@given(st.binary(max_size=200), st.sampled_from(["base64", "quoted-printable", "7bit", "junk"]), st.text())
def test_decode_part_never_raises(data: bytes, encoding: str, charset: str) -> None:
    assert isinstance(decode_part(data, encoding, charset), str)


# --- walk_message (local sources)


def test_walk_gmail_message_finds_both_calendar_copies_and_the_plain_text() -> None:
    calendars, text = walk_message((FIXTURES / "gmail_invite.eml").read_bytes())
    assert len(calendars) == 2
    assert all("UID:4k2j9x7q1m3n5p8r0t6v@google.com" in c for c in calendars)
    assert text is not None
    assert text.startswith("You have been invited")


def test_walk_outlook_and_teams_messages() -> None:
    calendars, text = walk_message((FIXTURES / "outlook_invite.eml").read_bytes())
    assert len(calendars) == 1
    assert "W. Europe Standard Time" in calendars[0]
    assert text is None
    calendars, text = walk_message((FIXTURES / "teams_invite.eml").read_bytes())
    assert len(calendars) == 1
    assert "Pacific Standard Time" in calendars[0]  # base64 decoded
    assert text is not None
    assert text.startswith("Looking forward")


def test_walk_forwarded_invite_keeps_the_forwarders_text() -> None:
    calendars, text = walk_message((FIXTURES / "forwarded_invite.eml").read_bytes())
    assert len(calendars) == 1
    assert text is not None
    assert text.strip() == "Kim, can you put this in my calendar? Thanks!"


def test_walk_plain_message_decodes_its_charset() -> None:
    calendars, text = walk_message((FIXTURES / "plain_reply.eml").read_bytes())
    assert calendars == []
    assert text is not None
    assert "Blue Bottle \u2013 I'll be" in text


def test_walk_hostile_nesting_does_not_raise() -> None:
    depth = 5_000
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth)
    )
    raw = head + b"Content-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n"
    assert walk_message(raw) == (
        [],
        None,
    )  # too deep to reach (or to parse at all): nothing, and no exception


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2_000))
def test_walk_message_never_raises(raw: bytes) -> None:
    calendars, text = walk_message(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" + raw)
    assert isinstance(calendars, list)
    assert text is None or isinstance(text, str)


def test_encoded_word_and_quoted_filenames() -> None:
    structure = (
        [
            (
                b"APPLICATION",
                b"OCTET-STREAM",
                (b"NAME", b"=?utf-8?Q?Einladung_Juni.ics?="),
                None,
                None,
                b"BASE64",
                9,
            ),
            (b"APPLICATION", b"OCTET-STREAM", (b"NAME", b'"invite.ICS"'), None, None, b"BASE64", 9),
            (
                b"APPLICATION",
                b"OCTET-STREAM",
                (b"NAME", b"=?bogus-charset?Q?x.ics?="),
                None,
                None,
                b"BASE64",
                9,
            ),
            (b"APPLICATION", b"PDF", (b"NAME", b"ics.pdf"), None, None, b"BASE64", 9),
        ],
        b"MIXED",
    )
    assert [(p.part, p.filename) for p in calendar_parts(structure)] == [
        ("1", "Einladung Juni.ics"),
        ("2", "invite.ICS"),
        ("3", "x.ics"),
    ]


def test_partial_fetch_of_a_quoted_printable_text_part() -> None:
    # The adapter may fetch BODY.PEEK[1]<0.2048>: a cut soft line break or escape must not raise.
    assert decode_part(b"Tuesday works =\r\nfor me =E2=80=9", "quoted-printable", "utf-8").startswith(
        "Tuesday works for me"
    )
