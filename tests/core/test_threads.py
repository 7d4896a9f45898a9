"""Thread keys and display subjects."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followupd.core.headers import parse_headers
from followupd.core.threads import base_subject, thread_key
from followupd.core.types import MessageMeta


def meta(*lines: str) -> MessageMeta:
    return parse_headers(("\r\n".join(lines) + "\r\n\r\n").encode())


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (("Message-ID: <root@x>",), "mid:root@x"),
        (("Message-ID: <c@x>", "In-Reply-To: <p@x>"), "mid:p@x"),
        (("Message-ID: <c@x>", "In-Reply-To: <p@x>", "References: <root@x> <p@x>"), "mid:root@x"),
        (("Message-ID: <c@x>", "References: <root@x>\r\n <a@x>\r\n <b@x>"), "mid:root@x"),
        (
            ("Message-ID: <c@x>", "X-GM-THRID: 1786543210987654321", "References: <root@x>"),
            "gm:1786543210987654321",
        ),
        (("Message-ID: <c@x>", "X-GM-THRID: not-a-number"), "mid:c@x"),
        (("Subject: no ids at all",), ""),
    ],
)
def test_thread_key(lines: tuple[str, ...], expected: str) -> None:
    assert thread_key(meta(*lines)) == expected


def test_reply_arriving_before_its_parent_joins_the_same_thread() -> None:
    root = meta("Message-ID: <root@x>")
    parent = meta("Message-ID: <p@x>", "In-Reply-To: <root@x>", "References: <root@x>")
    child = meta("Message-ID: <c@x>", "In-Reply-To: <p@x>", "References: <root@x> <p@x>")
    for order in itertools.permutations([root, parent, child]):
        assert {thread_key(m) for m in order} == {"mid:root@x"}


def test_in_reply_to_only_chain_uses_known_keys() -> None:
    # A minimal mailer writes In-Reply-To but no References: the grandchild names its parent, not the root.
    known: dict[str, str] = {}
    chain = [
        meta("Message-ID: <a@x>"),
        meta("Message-ID: <b@x>", "In-Reply-To: <a@x>"),
        meta("Message-ID: <c@x>", "In-Reply-To: <b@x>"),
    ]
    for message in chain:
        known[message.message_id] = thread_key(message, known.get)
    assert set(known.values()) == {"mid:a@x"}
    assert thread_key(chain[2]) == "mid:b@x"  # without the lookup the chain would split


def test_known_is_asked_root_first_and_at_most_three_times() -> None:
    asked: list[str] = []

    def lookup(message_id: str) -> str | None:
        asked.append(message_id)
        return {"p2@x": "mid:elsewhere"}.get(message_id)

    refs = " ".join(f"<p{i}@x>" for i in range(10))
    message = meta("Message-ID: <c@x>", "In-Reply-To: <p9@x>", f"References: {refs}")
    assert thread_key(message, lookup) == "mid:p0@x"
    assert asked == ["p0@x", "p9@x", "p9@x"]
    assert thread_key(meta("Message-ID: <c@x>", "References: <p2@x>"), lookup) == "mid:elsewhere"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "Hello"),
        ("Re: Hello", "Hello"),
        ("RE: Re: re: Hello", "Hello"),
        ("Fwd: FW: Hello", "Hello"),
        ("AW: WG: Hello", "Hello"),
        ("SV: VS: Hello", "Hello"),
        ("Antw: Hello", "Hello"),
        ("Re[2]: Hello", "Hello"),
        ("Re(3): Hello", "Hello"),
        ("RE : Bonjour", "Bonjour"),
        ("TR: Bonjour", "Bonjour"),
        ("R: Ciao", "Ciao"),
        ("回复：你好", "你好"),
        ("[dev] Re: [dev] Proposal", "Proposal"),
        ("Re: [acme/widget] Fix the frobnicator (#42)", "Fix the frobnicator (#42)"),
        ("Re:", ""),
        ("Rex: not a prefix", "Rex: not a prefix"),
        ("Research: not a prefix", "Research: not a prefix"),
        ("Result of the vote", "Result of the vote"),
        ("  padded  ", "padded"),
    ],
)
def test_base_subject(subject: str, expected: str) -> None:
    assert base_subject(subject) == expected


@given(st.text(max_size=200))
def test_base_subject_is_idempotent_and_a_suffix(subject: str) -> None:
    once = base_subject(subject)
    assert base_subject(once) == once
    assert once in subject
