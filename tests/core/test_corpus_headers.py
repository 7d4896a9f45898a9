"""parse_headers + classify over the shared corpus of real mail (../shared/corpus), when it exists.

The corpus is mail nobody on this project wrote, chosen by other projects because it broke their parsers. It
is read in place and never copied into the project; on machines without it these tests skip.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from followupd.core.classify import classify
from followupd.core.headers import parse_headers
from followupd.core.types import MessageMeta, Verdict

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no corpus at {CORPUS}"),
]

_MBOX_SEPARATOR = re.compile(rb"(?:\r?\n){2}(?=From )")


def corpus_messages() -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) for every .eml file and every message of every .mbox file."""
    for path in sorted(CORPUS.rglob("*.eml")):
        yield str(path.relative_to(CORPUS)), path.read_bytes()
    for path in sorted(CORPUS.rglob("*.mbox")):
        for index, raw in enumerate(_MBOX_SEPARATOR.split(path.read_bytes())):
            yield f"{path.relative_to(CORPUS)}#{index}", raw


def results(prefix: str = "") -> dict[str, tuple[MessageMeta, Verdict]]:
    found = {}
    for name, raw in corpus_messages():
        if name.startswith(prefix):
            meta = parse_headers(raw)
            found[name] = (meta, classify(meta))
    return found


def _unsafe(value: str) -> list[str]:
    return [c for c in value if unicodedata.category(c) == "Cc" or c in "\u2028\u2029"]


def test_every_message_parses_cleanly() -> None:
    by_folder: dict[str, Counter[str]] = {}
    total = 0
    for name, (meta, verdict) in results().items():
        total += 1
        addresses = [a for a in (meta.sender, *meta.to, *meta.cc, *meta.reply_to) if a is not None]
        values = [
            meta.message_id,
            meta.subject,
            meta.in_reply_to or "",
            *meta.references,
            *meta.flags.values(),
        ]
        values += [a.email for a in addresses] + [a.name for a in addresses]
        assert not [v for v in values if _unsafe(v)], name
        assert meta.date_at is None or meta.date_at.tzinfo is UTC, name
        by_folder.setdefault(name.split("/")[0], Counter())[verdict.reason or "person"] += 1
    assert total > 1000  # the corpus is really there and really read
    print(f"\n{total} messages")
    for folder, reasons in sorted(by_folder.items()):
        print(
            f"  {folder:28s} {sum(reasons.values()):4d}  "
            + ", ".join(f"{r}={n}" for r, n in reasons.most_common())
        )


def test_sisimai_bounces_are_automated() -> None:
    # 629 bounces and auto-replies from ~75 MTAs. Headers alone recognise 625: the misses are three ARF
    # complaints in Hotmail's pre-standard multipart/mixed form from an ordinary-looking staff@ address, and
    # one person forwarding a bounce by hand ("Fwd: Returned mail"), which is rightly a person's message.
    # 99% leaves room for nothing more than that, so any real regression fails the test.
    found = results("github-sisimai/bsd/")
    automated = [name for name, (_, verdict) in found.items() if verdict.automated]
    missed = sorted(set(found) - set(automated))
    print(f"\nsisimai: {len(automated)}/{len(found)} automated; missed: {missed}")
    assert len(found) > 600
    assert len(automated) / len(found) >= 0.99, missed


def test_talon_replies_are_people() -> None:
    # Replies written by people in a dozen mail clients (Gmail, Outlook, Apple Mail, Yahoo...).
    found = results("pypi-talon/")
    people = [name for name, (_, verdict) in found.items() if not verdict.automated]
    assert len(found) >= 10
    assert len(people) / len(found) >= 0.9, sorted(set(found) - set(people))


def test_lkml_thread_is_list_mail() -> None:
    found = results("notmuch-debian/lkml/")
    assert len(found) > 200
    assert all(verdict.automated for _, verdict in found.values())
    assert Counter(v.reason for _, v in found.values()).most_common(1)[0][0] == "list-id"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Checked by hand:
        ("github-flanker/bounce__gmail-invalid-address.eml", Verdict(True, "bounce:mailer-daemon")),
        ("github-sisimai/bsd/rfc3834-04.eml", Verdict(True, "return-path-null")),  # Exchange out-of-office
        ("github-sisimai/bsd/rfc3834-03.eml", Verdict(True, "auto-reply-subject")),  # no auto header at all
        ("github-sisimai/bsd/lhost-dragonfly-01.eml", Verdict(True, "bounce:null-sender")),  # From: <>
        ("github-sisimai/not/is-not-bounce-01.eml", Verdict(False, "")),
        # A Foxmail user's own mail carries Feedback-ID: the reason that header alone is not evidence.
        ("github-imap-tools/attachment_inline2.eml", Verdict(False, "")),
        ("pypi-perceval/eml/groupsio_messages-0003.eml", Verdict(True, "sender-role:notifications")),
    ],
)
def test_hand_checked_messages(name: str, expected: Verdict) -> None:
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"{name} is not in this copy of the corpus")
    assert classify(parse_headers(path.read_bytes())) == expected


def test_pipermail_archives_keep_their_senders() -> None:
    # List archives write "jgb at example.com (Name)"; imported archives should still yield the person.
    found = results("pypi-perceval/eml/pipermail_")
    senders = [meta.sender for meta, _ in found.values()]
    assert senders and all(sender is not None and "@" in sender.email and sender.name for sender in senders)
