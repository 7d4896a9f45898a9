"""Robots vs people: classify() on real-world header shapes, and the per-address admission policy."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followupd.core.addresses import is_role_address, list_addresses
from followupd.core.classify import AddressEvidence, AdmissionPolicy, admit, classify, direction
from followupd.core.headers import parse_headers
from followupd.core.types import Direction, MessageMeta, Verdict


def shape(*lines: str) -> MessageMeta:
    return parse_headers(("\r\n".join(lines) + "\r\n\r\n").encode())


PERSON_BASE = (
    "Date: Tue, 15 Nov 2022 08:12:31 -0500",
    "Message-ID: <CAF1234@mail.gmail.com>",
    "To: Me <me@example.org>",
)

# Each row: a shape of real mail (written for this test, after the shapes real senders use), whether it is
# automated/bulk, and the reason. The reason names the most specific rule that fired.
SHAPES: list[tuple[str, tuple[str, ...], bool, str]] = [
    (
        "mailchimp-newsletter",
        (
            "From: Acme Outfitters <hello@acme.example>",
            "To: <me@example.org>",
            "Subject: =?utf-8?q?Our_autumn_sale_=F0=9F=8D=81?=",
            "List-Unsubscribe: <https://acme.us1.list-manage.com/unsubscribe?u=abc&id=def>,",
            " <mailto:unsubscribe-abc@mailchimpapp.example>",
            "List-ID: 1a2b3c4d5e6f7a8b9c0d1e2fa <1a2b3c.xyz.list-id.mcsv.net>",
            "Precedence: bulk",
            "X-Mailer: MailChimp Mailer - **CID1234abcd**",
            "Feedback-ID: 1234567:7654321:us1:mc",
        ),
        True,
        "list-id",
    ),
    (
        "esp-newsletter-without-list-id",
        (
            "From: The Daily Byte <editor@dailybyte.example>",
            "List-Unsubscribe: <https://dailybyte.example/u/abc>",
            "Precedence: bulk",
            "Feedback-ID: c123:s456:esp",
        ),
        True,
        "precedence:bulk",
    ),
    (
        "transactional-list-unsubscribe-only",
        ("From: Shop <orders@shop.example>", "List-Unsubscribe: <mailto:u@shop.example>"),
        True,
        "list-unsubscribe",
    ),
    (
        # QQ Mail/Foxmail webmail stamps Feedback-ID on people's own mail: alone it proves nothing.
        "feedback-id-alone-is-not-proof",
        ("From: Sam <sam@foxmail.example>", "Feedback-ID: webmail:foxmail.example:bgweb:bgweb17"),
        False,
        "",
    ),
    (
        "github-notification",
        (
            "From: Jane Doe <notifications@github.com>",
            "Reply-To: acme/widget <reply+AABBCC@reply.github.com>",
            "To: acme/widget <widget@noreply.github.com>",
            "Cc: Mention <mention@noreply.github.com>",
            "Subject: Re: [acme/widget] Fix the frobnicator (PR #42)",
            "Message-ID: <acme/widget/pull/42/c123@github.com>",
            "In-Reply-To: <acme/widget/pull/42@github.com>",
            "References: <acme/widget/pull/42@github.com>",
            "List-ID: acme/widget <widget.acme.github.com>",
            "List-Archive: https://github.com/acme/widget",
            "List-Unsubscribe: <mailto:unsub+AABBCC@reply.github.com>",
            "X-GitHub-Sender: janedoe",
            "X-GitHub-Reason: mention",
            "Precedence: list",
            "X-Auto-Response-Suppress: All",
        ),
        True,
        "list-id",
    ),
    (
        "bounce-multipart-report",
        (
            "Return-Path: <>",
            "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>",
            "Subject: Undelivered Mail Returned to Sender",
            "Auto-Submitted: auto-replied",
            "Content-Type: multipart/report; report-type=delivery-status;",
            '\tboundary="A1B2C3.1668499951/mx.example.com"',
        ),
        True,
        "bounce:multipart-report",
    ),
    (
        "bounce-plain-text-from-postmaster",
        ("From: postmaster@mail.example.net", "Subject: Delivery failure", "Content-Type: text/plain"),
        True,
        "bounce:postmaster",
    ),
    (
        "bounce-from-without-domain",  # the first From wins even without an address; its text still counts
        ("From: MAILER-DAEMON (Mail Delivery Subsystem)", "From: <someone@example.org>"),
        True,
        "bounce:mailer-daemon",
    ),
    (
        "bounce-sendmail-local",
        ("From: Mail Delivery Subsystem <MAILER-DAEMON>",),
        True,
        "bounce:mailer-daemon",
    ),
    (
        "bounce-dragonfly-null-from",
        ("From: MAILER-DAEMON <>", "Subject: Mail delivery failed"),
        True,
        "bounce:null-sender",
    ),
    ("bounce-gateway-null-from", ("From: <>", "Subject: Delivery Status"), True, "bounce:null-sender"),
    ("from-without-address-is-no-proof", ("From: <Christian Bergere>", "Subject: Devis"), False, ""),
    (
        "auto-reply-subject-exchange",
        ("From: Bob <bob@corp.example>", "Subject: Automatic reply: Lunch?"),
        True,
        "auto-reply-subject",
    ),
    (
        "auto-reply-subject-german",
        ("From: Bob <bob@corp.example>", "Subject: Abwesenheitsnotiz: Lunch?"),
        True,
        "auto-reply-subject",
    ),
    (
        "auto-reply-subject-only-at-start",
        ("From: Bob <bob@corp.example>", "Subject: Re: Automatic reply: Lunch?"),
        False,
        "",
    ),
    (
        "bounce-mailer-daemon-sender",
        ("From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.com>", "Subject: Returned mail"),
        True,
        "bounce:mailer-daemon",
    ),
    (
        "read-receipt-mdn",
        (
            "From: Alice Smith <alice@example.org>",
            "Subject: Read: Lunch?",
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=x",
        ),
        True,
        "bounce:multipart-report",
    ),
    (
        "vacation-auto-reply",
        (
            "From: Alice Smith <alice@example.org>",
            "Subject: Out of office: Lunch?",
            "Auto-Submitted: auto-replied (vacation)",
            "X-Autoreply: yes",
            "Precedence: bulk",
        ),
        True,
        "auto-submitted:auto-replied",
    ),
    (
        "exchange-auto-reply-header-only",
        ("From: Bob <bob@corp.example>", "Subject: Automatic reply: Lunch?", "X-Autoreply: yes"),
        True,
        "auto-reply-header",
    ),
    (
        "x-autorespond",
        ("From: Bob <bob@corp.example>", "X-Autorespond: Out of office"),
        True,
        "auto-reply-header",
    ),
    (
        "auto-generated-report",
        ("From: cron <root@server.example>", "Auto-Submitted: auto-generated"),
        True,
        "auto-submitted:auto-generated",
    ),
    (
        "auto-notified",
        ("From: Server <root@server.example>", "Auto-Submitted: auto-notified; owner-email=x@y"),
        True,
        "auto-submitted:auto-notified",
    ),
    (
        "auto-submitted-unknown-value",
        ("From: Bot <x@server.example>", "Auto-Submitted: Auto-Generated-By-Something"),
        True,
        "auto-submitted:other",
    ),
    (
        "auto-submitted-no-is-a-person",
        ("From: Alice <alice@example.org>", "Auto-Submitted: no"),
        False,
        "",
    ),
    (
        "mailing-list-post-from-a-person",
        (
            "From: Carol Poster <carol@uni.example>",
            "To: dev@lists.example.org",
            "Subject: [dev] Proposal: drop Python 3.8",
            "List-Id: Developers <dev.lists.example.org>",
            "List-Post: <mailto:dev@lists.example.org>",
            "List-Unsubscribe: <https://lists.example.org/options/dev>",
            "Precedence: list",
        ),
        True,
        "list-id",
    ),
    (
        "google-calendar-robot",
        (
            "From: Google Calendar <calendar-notification@google.com>",
            "Subject: Notification: Weekly sync @ Tue 10am - 10:30am (CET)",
            "Reply-To: Google Calendar <calendar-notification@google.com>",
        ),
        True,
        "sender-role:notifications",
    ),
    (
        "google-drive-share",
        (
            "From: Alice (via Google Drive) <drive-shares-dm-noreply@google.com>",
            "Reply-To: alice@example.org",
        ),
        True,
        "sender-role:noreply",
    ),
    (
        "noreply-sender-only",
        ("From: Bank <no-reply@bank.example>", "Subject: Your statement"),
        True,
        "sender-role:noreply",
    ),
    (
        "person-rfc2047-utf8-b",
        (
            "From: =?UTF-8?B?Sm9zw6kgR2FyY8OtYQ==?= <jose@example.com>",
            "Subject: =?UTF-8?B?wr9RdcOpIHRhbD8=?=",
        ),
        False,
        "",
    ),
    (
        "person-rfc2047-utf8-q",
        ("From: =?utf-8?q?Bj=C3=B6rn_=C3=85str=C3=B6m?= <bjorn@example.se>", "Subject: =?utf-8?q?Fika=3F?="),
        False,
        "",
    ),
    (
        "person-rfc2047-iso-8859-1",
        (
            "From: =?ISO-8859-1?Q?Fran=E7ois_M=FCller?= <francois@example.fr>",
            "Subject: =?ISO-8859-1?Q?D=E9j=E0?=",
        ),
        False,
        "",
    ),
    (
        "person-rfc2047-broken-charset",
        ("From: =?x-broken?Q?Ren=C3=A9?= <rene@example.fr>", "Subject: =?utf-8?b?not base64!?="),
        False,
        "",
    ),
    (
        "person-cc-group-and-undisclosed",
        (
            "From: Dave <dave@example.org>",
            "To: undisclosed-recipients:;",
            "Cc: Board: Erin <erin@example.org>, frank@example.org;",
        ),
        False,
        "",
    ),
    (
        "outlook-person-with-auto-response-suppress",
        (
            "From: Grace Hopper <grace@navy.example>",
            "Subject: RE: Lunch?",
            "Thread-Topic: Lunch?",
            "X-Auto-Response-Suppress: All",
            "X-MS-Has-Attach:",
            "X-MS-TNEF-Correlator:",
            "Content-Type: multipart/alternative; boundary=_000_",
        ),
        False,
        "",
    ),
    (
        "return-path-null-only",
        ("From: Someone <someone@example.org>", "Return-Path: <>"),
        True,
        "return-path-null",
    ),
    (
        "return-path-null-spaced",
        ("From: Someone <someone@example.org>", "Return-Path: < >"),
        True,
        "return-path-null",
    ),
    (
        "return-path-normal",
        ("From: Someone <someone@example.org>", "Return-Path: <someone@example.org>"),
        False,
        "",
    ),
    ("precedence-junk", ("From: x@example.org", "Precedence: junk"), True, "precedence:junk"),
    ("precedence-list", ("From: x@example.org", "Precedence: LIST"), True, "precedence:list"),
    (
        "precedence-auto-reply",
        ("From: x@example.org", "Precedence: auto_reply"),
        True,
        "precedence:auto_reply",
    ),
    ("precedence-first-class", ("From: x@example.org", "Precedence: first-class"), False, ""),
    ("empty-list-id-is-not-proof", ("From: x@example.org", "List-Id:"), False, ""),
    (
        "info-address-is-a-person",
        ("From: Studio <info@smallstudio.example>", "Subject: Your quote"),
        False,
        "",
    ),
    ("no-from-at-all", ("Subject: orphan",), False, ""),
]


@pytest.mark.parametrize(
    ("lines", "automated", "reason"), [row[1:] for row in SHAPES], ids=[r[0] for r in SHAPES]
)
def test_message_shapes(lines: tuple[str, ...], automated: bool, reason: str) -> None:
    meta = shape(*PERSON_BASE, *lines) if not any(line.startswith("To:") for line in lines) else shape(*lines)
    assert classify(meta) == Verdict(automated, reason)


def test_person_names_survive_the_shapes() -> None:
    meta = shape("From: =?ISO-8859-1?Q?Fran=E7ois_M=FCller?= <Francois@Example.FR>")
    assert meta.sender is not None and (meta.sender.name, meta.sender.email) == (
        "François Müller",
        "francois@example.fr",
    )


def test_verdicts_are_shared_constants() -> None:
    first = classify(shape("From: x@example.org", "Precedence: bulk"))
    second = classify(shape("From: y@example.org", "Precedence: bulk"))
    assert first is second  # one immutable Verdict per reason: the hot path allocates none


@given(st.dictionaries(st.sampled_from(["x-auto-response-suppress", "x-mailer", "x-gm-thrid"]), st.text()))
def test_flags_that_prove_nothing_never_make_a_person_a_robot(flags: dict[str, str]) -> None:
    meta = replace(shape("From: Alice <alice@example.org>"), flags=flags)
    assert classify(meta) == Verdict(False, "")


# --- admission ----------------------------------------------------------------------------------------------

DEFAULT = AdmissionPolicy()
GENEROUS = AdmissionPolicy(admit_if_wrote_directly=True)
STRICT = AdmissionPolicy(admit_if_answered=False, admit_meeting_attendees=False)

ADMISSIONS: list[tuple[str, AddressEvidence, AdmissionPolicy, tuple[bool, str]]] = [
    ("user-wrote-to", AddressEvidence(user_wrote_to=2), DEFAULT, (True, "user-wrote-to")),
    # A list poster the user wrote to directly: a person, although every message of theirs came via the list.
    (
        "list-poster-user-wrote-to",
        AddressEvidence(user_wrote_to=1, only_bulk=True),
        DEFAULT,
        (True, "user-wrote-to"),
    ),
    ("list-poster-never-written-to", AddressEvidence(only_bulk=True), DEFAULT, (False, "only-bulk")),
    ("answered", AddressEvidence(wrote_directly=3, answered=1), DEFAULT, (True, "answered")),
    ("unanswered", AddressEvidence(wrote_directly=3), DEFAULT, (False, "unanswered")),
    ("unanswered-generous", AddressEvidence(wrote_directly=3), GENEROUS, (True, "wrote-directly")),
    ("met", AddressEvidence(met=True), DEFAULT, (True, "met")),
    ("met-strict", AddressEvidence(met=True), STRICT, (False, "no-exchange")),
    ("answered-strict", AddressEvidence(wrote_directly=1, answered=1), STRICT, (False, "unanswered")),
    # Calendar invitations are a spam vector: an attendee seen only in bulk mail is not a contact.
    ("met-only-bulk", AddressEvidence(met=True, only_bulk=True), DEFAULT, (False, "only-bulk")),
    ("nothing", AddressEvidence(), GENEROUS, (False, "no-exchange")),
    ("own", AddressEvidence(user_wrote_to=9, is_own=True), DEFAULT, (False, "own-address")),
    (
        "list-address",
        AddressEvidence(user_wrote_to=9, is_list_address=True),
        GENEROUS,
        (False, "list-address"),
    ),
    ("role", AddressEvidence(user_wrote_to=1, answered=1, is_role=True), GENEROUS, (False, "role-address")),
    (
        "user-wrote-to-disabled",
        AddressEvidence(user_wrote_to=1),
        AdmissionPolicy(admit_if_user_wrote_to=False),
        (False, "no-exchange"),
    ),
]


@pytest.mark.parametrize(
    ("evidence", "policy", "expected"), [r[1:] for r in ADMISSIONS], ids=[r[0] for r in ADMISSIONS]
)
def test_admission(evidence: AddressEvidence, policy: AdmissionPolicy, expected: tuple[bool, str]) -> None:
    assert admit(evidence, policy) == expected


_EVIDENCE = st.builds(
    AddressEvidence,
    user_wrote_to=st.integers(0, 3),
    wrote_directly=st.integers(0, 3),
    answered=st.integers(0, 3),
    only_bulk=st.booleans(),
    is_list_address=st.booleans(),
    is_role=st.booleans(),
    is_own=st.booleans(),
    met=st.booleans(),
)
_POLICY = st.builds(AdmissionPolicy, st.booleans(), st.booleans(), st.booleans(), st.booleans())


@given(_EVIDENCE, _POLICY)
def test_never_admitted_whatever_the_policy(evidence: AddressEvidence, policy: AdmissionPolicy) -> None:
    admitted, reason = admit(evidence, policy)
    if evidence.is_own or evidence.is_list_address or evidence.is_role:
        assert not admitted
    if evidence.only_bulk and evidence.user_wrote_to == 0:
        assert not admitted
    if admitted:  # always for a positive reason the evidence supports
        assert reason in {"user-wrote-to", "answered", "met", "wrote-directly"}
        assert evidence.user_wrote_to or evidence.answered or evidence.met or evidence.wrote_directly


def test_list_thread_end_to_end() -> None:
    """A list post: the poster becomes a contact when the user replies, the list itself never does."""
    post = shape(
        "From: Carol Poster <carol@uni.example>",
        "To: dev@lists.example.org",
        "List-Id: Developers <dev.lists.example.org>",
        "List-Post: <mailto:dev@lists.example.org>",
        "Precedence: list",
    )
    assert classify(post) == Verdict(True, "list-id")
    learned = list_addresses(post.flags)
    assert learned == frozenset({"dev@lists.example.org"})
    # The user's reply: To the list, Cc the poster.
    reply = shape(
        "From: Me <me@example.org>", "To: dev@lists.example.org", "Cc: Carol Poster <carol@uni.example>"
    )
    assert direction(reply, frozenset({"me@example.org"})) is Direction.OUT
    wrote_to = {a.email for a in (*reply.to, *reply.cc)}

    def evidence(email: str) -> AddressEvidence:
        return AddressEvidence(
            user_wrote_to=int(email in wrote_to),
            only_bulk=True,  # both were only ever seen in list mail
            is_list_address=email in learned,
            is_role=is_role_address(email) is not None,
        )

    assert admit(evidence("carol@uni.example"), DEFAULT) == (True, "user-wrote-to")
    assert admit(evidence("dev@lists.example.org"), DEFAULT) == (False, "list-address")


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("From: Me <ME@example.org>", Direction.OUT),
        ("From: Me <me.alias@example.org>", Direction.OUT),
        ("From: Alice <alice@example.org>", Direction.IN),
        ("Subject: no sender", Direction.IN),
    ],
)
def test_direction(sender: str, expected: Direction) -> None:
    assert direction(shape(sender), frozenset({"me@example.org", "me.alias@example.org"})) is expected
