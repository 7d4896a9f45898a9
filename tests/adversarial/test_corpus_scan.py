"""Malformed real-world mail shapes through a real Dovecot scan: no crash, every appended message stored
exactly once, no control characters in what is stored for display (subjects, names).

The built-in corpus below is written for this test; it reproduces the *shapes* of broken messages found in
public collections (unknown charsets in encoded words, raw 8-bit headers, quoted strings spanning lines,
empty group lists, empty In-Reply-To, bad dates, bounces with broken MIME, LF-only and CR-only line ends,
NULs, missing Message-IDs, 1,000-recipient headers), not their text. When ``../shared/corpus`` exists, its
``github-imap-tools`` and ``github-flanker`` messages are appended too (marker ``corpus``); when it does not,
that test skips.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select

from followupd import config as config_mod
from followupd.core.headers import parse_headers
from followupd.engine.scan import scan_once
from followupd.store.db import Database
from followupd.store.models import AddressRow, Contact, Message, Thread
from tests import mailgen
from tests.mailgen import at
from tests.servers.plugin import Mailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(120)]

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
CORPUS_DIRS = ("github-imap-tools", "github-flanker")
CONTROL = {chr(c) for c in range(32)} | {"\x7f", "\u2028", "\u2029", "\x85"}
ME = "me@example.org"


def msg(n: int, head: bytes, body: bytes = b"Hello.\r\n", *, mid: bool = True, end: bytes = b"\r\n") -> bytes:
    lines = [b"Date: Mon, 4 Mar 2024 09:00:00 +0000", b"To: " + ME.encode()]
    if mid:
        lines.append(b"Message-ID: <broken-%d@corpus.test>" % n)
    return end.join([*lines, *head.split(b"\n")]) + end + end + body


BROKEN: list[bytes] = [
    msg(1, b"From: Ann <ann@example.com>\nSubject: =?NONE?B?VEVTVA=?="),
    msg(2, b"From: Bob <bob@example.com>\nSubject: =?utf-8?B?not base64 at all!?="),
    msg(3, b'From: "Sender" <status@example.com>\n'
        b'Cc: Third <t@example.com>, "Quoted List\n <list@example.com>'),
    msg(4, b"From: x@example.com\nTo: undisclosed-recipients:;\nCc: group: ;, other:;"),
    msg(5, b"From: y@example.com\nIn-Reply-To: \nReferences:\nSubject:"),
    msg(6, b"From: z@example.com\nDate: Thu, 31 Feb 99999 25:61:61 +9999\nSubject: bad date"),
    msg(7, b"From: Formacao <f@example.com>\nSubject: Forma\xe7\xe3o Frenetik \x96 Ver\xe3o"),
    msg(8, b'From: "=?Windows-1252?B?Rm9ybWHn428=?=" <w@example.com>\nSubject: quoted encoded name'),
    msg(9, b"From: Nul\x00Person <nul@example.com>\nSubject: nul\x00in\x00subject"),
    msg(10, b"From: <>\nSubject: Undeliverable\nContent-Type: multipart/report; boundary=\"missing\"",
        b"--other\r\nContent-Type: text/plain\r\n\r\nnot the boundary\r\n"),
    msg(11, b"From: lf@example.com\nSubject: LF only line ends", end=b"\n"),
    msg(12, b"From: cr@example.com\nSubject: CR only line ends", end=b"\r"),
    msg(13, b"From: nomid@example.com\nSubject: no message id one", mid=False),
    msg(14, b"From: nomid2@example.com\nSubject: no message id two", mid=False),
    msg(15, b"From: dup@example.com\nFrom: second@example.com\nSubject: one\nSubject: two"),
    msg(16, b"From: esc@example.com\nSubject: =?UTF-8?Q?=1B[31mred=07bell=0D=0ABcc:_x@evil?="),
    msg(17, b"From: =?UTF-8?Q?Line=E2=80=A8Sep?= <ls@example.com>\nSubject: =?UTF-8?Q?Para=E2=80=A9Sep?="),
    msg(18, b"From: many@example.com\nTo: " + b", ".join(b"r%d@example.com" % n for n in range(1000))),
    msg(19, b"From: long@example.com\nSubject: " + b"long " * 20_000),
    msg(20, b"Subject: no from at all\nX-Weird: \xff\xfe\xfd"),
    msg(21, b"From: colon@example.com\nthis line has no colon\nSubject: after junk"),
    msg(22, b"From: enc@example.com\nContent-Transfer-Encoding: x-uuencode\n"
        b"Subject: =?iso-2022-jp?B?GyRCJUYbKEI=?="),
]  # fmt: skip


def append_all(mailbox: Mailbox, messages: list[bytes]) -> list[bytes]:
    """APPEND each message over one connection; return those Dovecot accepted (it refuses some, e.g. NULs)."""
    accepted = []
    with mailbox.dovecot.client(mailbox.user) as client:
        for raw in messages:
            try:
                client.append("INBOX", raw, msg_time=at(1))
            except IMAPClientError:
                continue
            accepted.append(raw)
    return accepted


def scan_and_check(
    db: Database, mailbox: Mailbox, accepted: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> int:
    monkeypatch.setenv("PW", mailbox.password)
    account = mailgen.account_toml("main", ME, port=mailbox.dovecot.port, username=mailbox.user)
    config = config_mod.parse(mailgen.config_toml(str(db.url), account), env={})
    report = scan_once(db, config, now=at(30))
    assert report.errors == {}, report.errors
    again = scan_once(db, config, now=at(31))  # a second scan adds nothing
    assert again.errors == {}
    ids = [parse_headers(raw).message_id for raw in accepted]
    with_id, without_id = {i for i in ids if i}, sum(1 for i in ids if not i)
    with db.read() as session:
        stored = session.scalars(select(Message.message_id)).all()
        texts = [
            *session.scalars(select(Message.subject)),
            *session.scalars(select(Thread.subject)),
            *session.scalars(select(AddressRow.name)),
            *session.scalars(select(Contact.name)),
        ]
    assert len(stored) == len(set(stored)), "a Message-ID is stored twice"
    assert with_id <= set(stored), sorted(with_id - set(stored))[:5]
    synthetic = [m for m in stored if m not in with_id]
    assert len(synthetic) <= without_id
    assert len(stored) >= len(with_id) + min(without_id, 1)
    for text in texts:
        assert not (set(text) & CONTROL), repr(text[:200])
    return len(stored)


def test_broken_message_shapes_scan_cleanly_and_each_is_stored_once(
    mailbox: Mailbox, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted = append_all(mailbox, BROKEN)
    assert len(accepted) >= len(BROKEN) - 2, "Dovecot refused more than the NUL messages"
    stored = scan_and_check(db, mailbox, accepted, monkeypatch)
    no_id = sum(1 for raw in accepted if not parse_headers(raw).message_id)
    assert stored == len({parse_headers(raw).message_id for raw in accepted} - {""}) + no_id


@pytest.mark.corpus
def test_the_shared_corpus_scans_cleanly(
    mailbox: Mailbox, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(
        p for d in CORPUS_DIRS if (CORPUS / d).is_dir() for p in (CORPUS / d).iterdir() if p.is_file()
    )
    if not files:
        pytest.skip(f"no corpus at {CORPUS}")
    accepted = append_all(mailbox, [p.read_bytes() for p in files])
    stored = scan_and_check(db, mailbox, accepted, monkeypatch)
    print(f"\ncorpus: {len(files)} files, {len(accepted)} accepted by Dovecot, {stored} messages stored")
