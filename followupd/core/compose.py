"""Composing a draft: safe headers, threading, the outgoing message, and the context templates see.

Every header value that came from inbound mail (names, subjects, message ids) goes through
:func:`sanitize_header` or :func:`clean_msg_ids` before it reaches an outbound header: RFC 2047 encoded words
are decoded first and CR, LF and every other control character removed afterwards, so
``=?UTF-8?Q?=0A?=Bcc: x@evil`` cannot become a header (CVE-2024-6923). Building an
:class:`email.message.EmailMessage` is not I/O; nothing here reads the clock or generates randomness — the
date and the Message-ID's nonce are passed in.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime

from followupd.core.planner import ContactState, ThreadRef
from followupd.core.types import Address

MAX_HEADER_CHARS = 250
MAX_REFERENCES = 20

_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw)(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.IGNORECASE)
_TOPIC_PREFIX = re.compile(r"^\s*(?:(?:re|aw|sv|antw|fwd?|wg|tr)(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.IGNORECASE)
_MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_NONCE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HONORIFICS = frozenset({"dr", "prof", "mr", "mrs", "ms", "mx", "sir", "dame"})


# Every C0/C1 control character (CR, LF, NUL, TAB, DEL...) and the Unicode line separators become a space;
# bidirectional overrides, which can make a subject read differently from what it says, are dropped.
_CLEAN = str.maketrans(
    {
        **{code: " " for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)},
        **{code: None for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))},
    }
)
_DECODE_ROUNDS = 3


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, UnicodeError, LookupError, ValueError):
        # Undecodable: keep the raw text; the control-character pass still applies.
        return value


def sanitize_header(value: str, *, max_chars: int = MAX_HEADER_CHARS) -> str:
    """One safe header line from untrusted text.

    Decodes RFC 2047 encoded words, turns every control character (CR, LF, NUL, tab, DEL, C1) and Unicode
    line separator into a space, drops bidirectional overrides, collapses whitespace and bounds the length
    to ``max_chars`` characters. Encoded words are decoded until none is left (a double-encoded newline is
    still a newline once the email package decodes it again on output), and any ``=?`` that remains —
    undecodable or malformed — is broken up as ``= ?``, so nothing can turn into a line break when the
    result is written as a header.
    """
    cleaned = value
    for _ in range(_DECODE_ROUNDS):
        if "=?" not in cleaned or not _ENCODED_WORD.search(cleaned):
            break
        cleaned = _decode_words(cleaned).translate(_CLEAN)
    # The email package decodes even a malformed or unterminated encoded word when it writes the header
    # ("=?UTF-8?Q?=0ABcc: x" still yields a Bcc line), so no "=?" may survive at all.
    cleaned = cleaned.replace("=?", "= ?")
    cleaned = " ".join(cleaned.translate(_CLEAN).split())
    if len(cleaned) > max_chars:
        cleaned = cleaned[: max_chars - 1].rstrip() + "…"
    return cleaned


def topic(subject: str) -> str:
    """The subject without reply/forward prefixes (``Re: Fwd: Launch`` -> ``Launch``), sanitised."""
    return _TOPIC_PREFIX.sub("", sanitize_header(subject)).strip()


def reply_subject(subject: str) -> str:
    """The subject of a reply: one ``Re:`` in front of the sanitised subject (``Re: Re: x`` -> ``Re: x``)."""
    bare = _REPLY_PREFIX.sub("", sanitize_header(subject)).strip()
    return f"Re: {bare}" if bare else "Re:"


def clean_msg_ids(values: Iterable[str]) -> tuple[str, ...]:
    """Well-formed ``<id@host>`` tokens found in ``values``, in order, without duplicates or anything else."""
    found: dict[str, None] = {}
    for value in values:
        for token in _MSG_ID.findall(sanitize_header(value, max_chars=2000)):
            found.setdefault(token, None)
    return tuple(found)


def reply_references(parent_id: str, parent_refs: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """In-Reply-To and References for a reply to ``parent_id`` (RFC 5322 section 3.6.4).

    References is the parent's references followed by the parent; when that is long, the first (thread root)
    and the last ones are kept, so the header stays bounded. In-Reply-To is None when the parent id is not a
    well-formed message id.
    """
    parents = clean_msg_ids([parent_id])
    parent = parents[0] if parents else None
    refs = [ref for ref in clean_msg_ids(parent_refs) if ref != parent]
    if parent is not None:
        refs.append(parent)
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
    return parent, tuple(refs)


def make_message_id(key: str, domain: str, *, nonce: str) -> str:
    """A Message-ID for the draft with idempotency ``key``: ``<digest.nonce@domain>``.

    Deterministic given its inputs; the caller passes a random ``nonce`` (a uuid) once, when the draft is
    created, and stores the result. An unusable domain falls back to ``followupd.invalid``.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    safe_nonce = _NONCE_UNSAFE.sub("", nonce)[:64] or "0"
    host = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(host) or len(host) > 253:
        host = "followupd.invalid"
    return f"<{digest}.{safe_nonce}@{host}>"


def _mailbox(address: Address) -> HeaderAddress:
    email = sanitize_header(address.email, max_chars=320)
    if not email or " " in email:
        raise ValueError(f"not a usable address: {address.email!r}")
    try:
        return HeaderAddress(sanitize_header(address.name, max_chars=100), addr_spec=email)
    except (HeaderParseError, IndexError, ValueError) as exc:
        # InvalidHeaderDefect is a ValueError; IndexError comes from "x@" in Python 3.11.
        raise ValueError(f"not a usable address: {address.email!r}") from exc


def build_message(
    *,
    from_addr: Address,
    to: Address,
    subject: str,
    body: str,
    message_id: str,
    date: datetime,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
) -> EmailMessage:
    """The outgoing text/plain message for a draft, with every header sanitised.

    ``message_id`` is the one generated when the draft was created (see :func:`make_message_id`);
    ``in_reply_to``/``references`` usually come from :func:`reply_references`. The body's line endings are
    normalised; it is sent as UTF-8.
    """
    message = EmailMessage(policy=policy.default)
    message["From"] = _mailbox(from_addr)
    message["To"] = _mailbox(to)
    message["Subject"] = sanitize_header(subject)
    message["Date"] = format_datetime(date)
    ids = clean_msg_ids([message_id])
    if not ids:
        raise ValueError(f"not a usable Message-ID: {message_id!r}")
    message["Message-ID"] = ids[0]
    parents = clean_msg_ids([in_reply_to]) if in_reply_to else ()
    if parents:
        message["In-Reply-To"] = parents[0]
    refs = clean_msg_ids(references)
    if refs:
        message["References"] = " ".join(refs)
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    message.set_content(text if text.endswith("\n") else text + "\n", charset="utf-8")
    return message


def first_name(name: str, email: str = "") -> str:
    """The name to greet someone by, or "" when there is none worth using ("Hi there," then).

    ``Ada Lovelace`` -> ``Ada``; ``Lovelace, Ada`` -> ``Ada``; ``Dr. Jane Smith`` -> ``Jane``. A name that is
    really an address, or written in a script without spaces between given and family name (CJK), is used
    whole or not at all rather than guessed at.
    """
    clean = sanitize_header(name, max_chars=100).strip(" \"'")
    if not clean or "@" in clean or (email and clean.lower() == email.lower()):
        return ""
    if any(unicodedata.east_asian_width(ch) in "WF" for ch in clean):
        return clean
    if "," in clean:
        clean = clean.split(",", 1)[1].strip() or clean.split(",", 1)[0]
    words = [word for word in clean.split() if word.rstrip(".").lower() not in _HONORIFICS]
    return words[0] if words else ""


@dataclass(frozen=True, slots=True)
class Person:
    """A person as templates see them: full name, first name (both may be empty) and address."""

    name: str
    first_name: str
    email: str


@dataclass(frozen=True, slots=True)
class MeetingView:
    """A meeting as templates see it."""

    subject: str
    start_at: datetime | None = None
    end_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExchangeView:
    """The last exchange with the contact: when, ``in``/``out``/``meeting``, and its subject."""

    at: datetime
    direction: str
    subject: str = ""


@dataclass(frozen=True, slots=True)
class AwaitingView:
    """The user's unanswered question as templates see it (``question`` may be empty)."""

    subject: str
    question: str = ""


@dataclass(frozen=True, slots=True)
class ThreadView:
    """The thread a draft replies into."""

    subject: str


@dataclass(frozen=True, slots=True)
class DraftContext:
    """Everything a template may use. Build it with :func:`draft_context` so that every string is clean."""

    contact: Person
    user: Person
    now: datetime
    thread: ThreadView | None = None
    meeting: MeetingView | None = None
    last_exchange: ExchangeView | None = None
    awaiting: AwaitingView | None = None


def person(name: str, email: str) -> Person:
    """A :class:`Person` with a sanitised name and address and a derived first name."""
    clean_email = sanitize_header(email, max_chars=320).replace(" ", "")
    return Person(sanitize_header(name, max_chars=100), first_name(name, clean_email), clean_email)


def draft_context(
    *,
    contact: Person,
    user: Person,
    now: datetime,
    thread_subject: str | None = None,
    meeting: MeetingView | None = None,
    last_exchange: ExchangeView | None = None,
    awaiting: AwaitingView | None = None,
) -> DraftContext:
    """A template context whose every inbound string has been through :func:`sanitize_header`."""
    return DraftContext(
        contact=person(contact.name, contact.email),
        user=person(user.name, user.email),
        now=now,
        thread=ThreadView(sanitize_header(thread_subject)) if thread_subject is not None else None,
        meeting=_clean_meeting(meeting),
        last_exchange=_clean_exchange(last_exchange),
        awaiting=_clean_awaiting(awaiting),
    )


def _clean_meeting(meeting: MeetingView | None) -> MeetingView | None:
    if meeting is None:
        return None
    return MeetingView(sanitize_header(meeting.subject), meeting.start_at, meeting.end_at)


def _clean_exchange(exchange: ExchangeView | None) -> ExchangeView | None:
    if exchange is None:
        return None
    return ExchangeView(exchange.at, sanitize_header(exchange.direction), sanitize_header(exchange.subject))


def _clean_awaiting(awaiting: AwaitingView | None) -> AwaitingView | None:
    if awaiting is None:
        return None
    return AwaitingView(sanitize_header(awaiting.subject), sanitize_header(awaiting.question, max_chars=300))


def _last_exchange(state: ContactState) -> ExchangeView | None:
    moments = [
        (state.last_meeting_end_at, "meeting"),
        (state.last_outbound_at, "out"),
        (state.last_inbound_at, "in"),
    ]
    known = [(at, direction) for at, direction in moments if at is not None]
    if not known:
        return None
    # Ties go to the earlier entry in ``moments``: a meeting is the more specific thing to refer to.
    at, direction = max(known, key=lambda item: item[0])
    subject = state.last_thread.subject if state.last_thread is not None else ""
    if direction == "meeting" and state.last_meeting is not None:
        subject = state.last_meeting.subject or subject
    return ExchangeView(at, direction, subject)


def context_for(
    state: ContactState, *, user: Person, now: datetime, thread: ThreadRef | None = None
) -> DraftContext:
    """The template context for a draft to ``state``'s contact, replying into ``thread`` when given.

    ``thread`` is the planner's ``QueueDraft.thread``; the meeting, last exchange and awaiting question come
    from the contact's state. Every string is sanitised (see :func:`draft_context`).
    """
    meeting = None
    if state.last_meeting is not None:
        meeting = MeetingView(
            state.last_meeting.subject, state.last_meeting.start_at, state.last_meeting_end_at
        )
    awaiting = None
    if state.awaiting is not None:
        awaiting = AwaitingView(state.awaiting.subject, state.awaiting.question)
    return draft_context(
        contact=Person(state.name, "", state.email),
        user=user,
        now=now,
        thread_subject=thread.subject if thread is not None else None,
        meeting=meeting,
        last_exchange=_last_exchange(state),
        awaiting=awaiting,
    )
