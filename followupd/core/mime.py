"""Find the calendar and plain-text parts of a message without reading the rest of it.

Two entry points serve the two kinds of mail source:

- IMAP: :func:`calendar_parts` and :func:`text_part` read the BODYSTRUCTURE that imapclient returns, so
  the adapter fetches only ``BODY.PEEK[<part>]`` for the few parts that matter; :func:`decode_part` turns
  those bytes into text.
- Local files (Maildir/mbox) already hold whole messages: :func:`walk_message` uses the stdlib parser.

Everything here is lenient: hostile nesting is cut off at :data:`MAX_DEPTH`, unknown charsets and broken
transfer encodings degrade to replacement characters, and nothing raises on bad input.
"""

from __future__ import annotations

import binascii
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.errors import MessageError
from email.header import decode_header
from email.message import Message
from email.policy import compat32

MAX_DEPTH = 20
"""Deepest MIME nesting followed; real mail rarely goes past 5, a hostile message can go to thousands."""

MAX_PARTS = 500
"""Most leaves examined in one structure: 100,000 empty parts cost no more than a big real message."""

MAX_MESSAGE_BYTES = 25_000_000
"""Local messages larger than this are read only up to here (bigger than any common provider's size limit)."""

MAX_TEXT_CHARS = 100_000
"""Longest plain text returned by :func:`walk_message`; detection only reads a short prefix anyway."""

MAX_CALENDARS = 10
"""Most calendar parts returned for one local message."""

CALENDAR_TYPES = frozenset({"text/calendar", "application/ics"})

_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
# A leaf's disposition sits at a fixed index that depends on its type (RFC 3501 body extension data).
_DISPOSITION_INDEX = {"text": 9, "message/rfc822": 11}
_DEFAULT_DISPOSITION_INDEX = 8
_FILENAME_KEY = re.compile(r"^(?:file)?name(?:\*(\d+))?\*?$")


@dataclass(frozen=True, slots=True)
class PartRef:
    """One MIME leaf to fetch: its IMAP part number (``"1"``, ``"2.1"``) and how to decode it.

    ``encoding`` is the lower-cased Content-Transfer-Encoding (``"7bit"`` when absent); ``size`` is the
    encoded size in bytes the server reported, or None.
    """

    part: str
    content_type: str
    encoding: str
    charset: str | None
    size: int | None = None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class _Leaf:
    content_type: str
    params: dict[str, str]
    encoding: str
    size: int | None
    disposition: str
    filename: str | None


def calendar_parts(bodystructure: object) -> list[PartRef]:
    """Return every calendar leaf of an IMAP BODYSTRUCTURE, in tree order.

    A calendar leaf is ``text/calendar``, ``application/ics``, or any part whose name or filename ends in
    ``.ics`` (Domino and signed mail use ``application/octet-stream``). Google sends the same calendar twice
    (an inline ``text/calendar`` and an ``invite.ics`` attachment): both are returned, and applying the same
    event twice is harmless. Encapsulated messages (``message/rfc822``) are searched too. Never raises.
    """
    return [ref for ref, leaf in _leaves(bodystructure, follow_messages=True) if _is_calendar(leaf)]


def text_part(bodystructure: object) -> PartRef | None:
    """Return the first inline ``text/plain`` leaf of the message itself, or None.

    Attachments and forwarded messages are skipped: the words that arrange a meeting are the sender's own.
    Never raises.
    """
    for ref, leaf in _leaves(bodystructure, follow_messages=False):
        if leaf.content_type == "text/plain" and leaf.disposition != "attachment":
            return ref
    return None


def decode_part(data: bytes, encoding: str, charset: str | None) -> str:
    """Decode one fetched part: transfer encoding first, then charset, leniently; never raises.

    Truncated input (a partial fetch) decodes as far as it goes; unknown charsets fall back to UTF-8, then
    Windows-1252, with replacement characters rather than errors.
    """
    enc = encoding.strip().lower()
    if enc == "base64":
        raw = _unbase64(data)
    elif enc == "quoted-printable":
        raw = quopri.decodestring(data)
    else:
        raw = data
    return _to_text(raw, charset)


def walk_message(raw: bytes) -> tuple[list[str], str | None]:
    """Return ``(calendar texts, first inline text/plain)`` of a whole message; never raises.

    For local sources that hold whole messages; only call it on candidate messages, as it parses the full MIME
    tree. A leading mbox ``From `` line is tolerated.
    """
    try:
        message = message_from_bytes(raw[:MAX_MESSAGE_BYTES], policy=compat32)
    except (MessageError, RecursionError, ValueError, LookupError):
        # compat32 records defects instead of raising; these cover the residue (pathological nesting).
        return [], None
    calendars: list[str] = []
    text: str | None = None
    for part, in_attachment in _message_leaves(message):
        if len(calendars) < MAX_CALENDARS and _is_calendar_message(part):
            calendars.append(_message_text(part))
        elif text is None and not in_attachment and part.get_content_type() == "text/plain":
            text = _message_text(part)[:MAX_TEXT_CHARS]
    return calendars, text


# --- IMAP BODYSTRUCTURE


def _leaves(node: object, *, follow_messages: bool) -> Iterator[tuple[PartRef, _Leaf]]:
    """Yield (PartRef, leaf) for each leaf, depth-first, with a depth and count bound."""
    # Explicit stack instead of recursion: hostile nesting must not reach Python's recursion limit.
    stack: list[tuple[object, str, int]] = [(node, "", 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        current, prefix, depth = stack.pop()
        if depth > MAX_DEPTH or not isinstance(current, tuple | list) or not current:
            continue
        children = _children(current)
        if children is not None:
            numbered = [(child, f"{prefix}.{i}" if prefix else str(i)) for i, child in enumerate(children, 1)]
            stack.extend((child, number, depth + 1) for child, number in reversed(numbered))
            continue
        seen += 1
        leaf = _leaf(current)
        part = prefix or "1"
        charset = leaf.params.get("charset")
        yield PartRef(part, leaf.content_type, leaf.encoding, charset, leaf.size, leaf.filename), leaf
        if follow_messages and leaf.content_type == "message/rfc822":
            stack.extend(_encapsulated(current, part, depth))


def _children(node: tuple[object, ...] | list[object]) -> list[object] | None:
    """The sub-parts of a multipart node, or None for a leaf.

    imapclient's BodyData gathers them into a list at index 0; a multipart nested inside message/rfc822 keeps
    the raw IMAP shape, where the sub-part tuples simply come first.
    """
    first = node[0]
    if isinstance(first, list):
        return first
    if isinstance(first, tuple):
        children: list[object] = []
        for item in node:
            if not isinstance(item, tuple | list):
                break
            children.append(item)
        return children
    return None


def _encapsulated(
    node: tuple[object, ...] | list[object], part: str, depth: int
) -> list[tuple[object, str, int]]:
    """The body of a message/rfc822 leaf: its parts are numbered under the leaf's own number (RFC 3501)."""
    if len(node) < 9 or not isinstance(node[8], tuple | list) or not node[8]:
        return []
    inner = node[8]
    # A single-part inner body is "<part>.1"; a multipart inner body's children are "<part>.1", "<part>.2".
    inner_prefix = part if _children(inner) is not None else f"{part}.1"
    return [(inner, inner_prefix, depth + 1)]


def _leaf(node: tuple[object, ...] | list[object]) -> _Leaf:
    main = _text(node[0]).lower()
    sub = _text(node[1]).lower() if len(node) > 1 else ""
    # Servers always send both; a leaf without them is junk and must match nothing.
    content_type = f"{main}/{sub}" if main and sub else ""
    params = _params(node[2] if len(node) > 2 else None)
    encoding = _text(node[5]).lower() if len(node) > 5 else ""
    size = node[6] if len(node) > 6 and isinstance(node[6], int) else None
    index = _DISPOSITION_INDEX.get(content_type, _DISPOSITION_INDEX.get(main, _DEFAULT_DISPOSITION_INDEX))
    disposition, disp_params = _disposition(node[index] if len(node) > index else None)
    filename = _filename(disp_params) or _filename(params)
    return _Leaf(content_type, params, encoding or "7bit", size, disposition, filename)


def _disposition(value: object) -> tuple[str, dict[str, str]]:
    if isinstance(value, tuple | list) and value:
        return _text(value[0]).lower(), _params(value[1] if len(value) > 1 else None)
    return "", {}


def _params(value: object) -> dict[str, str]:
    """IMAP parameter lists alternate names and values: ("CHARSET", "utf-8", "NAME", "x.ics")."""
    if not isinstance(value, tuple | list):
        return {}
    items = list(value)
    return {_text(k).lower(): _text(v) for k, v in zip(items[::2], items[1::2], strict=False)}


def _filename(params: dict[str, str]) -> str | None:
    """The name/filename parameter, joining RFC 2231 continuations and decoding encoded words."""
    pieces: list[tuple[int, str]] = []
    for key, value in params.items():
        match = _FILENAME_KEY.match(key)
        if match:
            pieces.append((int(match.group(1) or 0), value))
    if not pieces:
        return None
    joined = "".join(value for _, value in sorted(pieces)).strip().strip('"')
    if "''" in joined:
        # RFC 2231 extended value: charset'language'percent-encoded text; the extension is plain ASCII.
        joined = joined.split("''", 1)[1]
    if "=?" in joined:
        joined = _decode_words(joined)
    return joined or None


def _decode_words(value: str) -> str:
    try:
        chunks = decode_header(value)
    except (ValueError, binascii.Error):
        return value
    return "".join(_chunk_text(chunk, charset) for chunk, charset in chunks)


def _chunk_text(chunk: bytes | str, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    try:
        return chunk.decode(charset or "ascii", "replace")
    except LookupError:
        return chunk.decode("utf-8", "replace")


def _is_calendar(leaf: _Leaf) -> bool:
    if leaf.content_type in CALENDAR_TYPES:
        return True
    return leaf.filename is not None and leaf.filename.lower().endswith(".ics")


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return ""


# --- decoding


def _unbase64(data: bytes) -> bytes:
    """Decode base64 that may carry junk, lost padding, or a truncated tail (partial fetch)."""
    clean = _BASE64_JUNK.sub(b"", data)
    remainder = len(clean) % 4
    if remainder == 1:
        # One stray character cannot encode anything; drop it rather than fail the whole part.
        clean = clean[:-1]
    elif remainder:
        clean += b"=" * (4 - remainder)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""


def _to_text(raw: bytes, charset: str | None) -> str:
    name = (charset or "").strip().strip('"').lower()
    if name and name not in {"unknown-8bit", "x-unknown", "unknown"}:
        try:
            return raw.decode(name, "replace")
        except (LookupError, ValueError):
            pass  # An unknown or non-text codec name: fall back to the guesses below.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


# --- whole messages (stdlib parser)


def _message_leaves(message: Message) -> Iterator[tuple[Message, bool]]:
    """Yield (leaf, inside an attachment or forwarded message) with depth and count bounds."""
    stack: list[tuple[Message, int, bool]] = [(message, 0, False)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth, attached = stack.pop()
        if depth > MAX_DEPTH:
            continue
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            # message/rfc822 is "multipart" to the stdlib parser: its payload is the encapsulated message.
            inner_attached = attached or part.get_content_type() == "message/rfc822"
            children = [child for child in reversed(payload) if isinstance(child, Message)]
            stack.extend((child, depth + 1, inner_attached) for child in children)
            continue
        seen += 1
        yield part, attached or _is_attachment(part)


def _is_attachment(part: Message) -> bool:
    return str(part.get("content-disposition", "")).strip().lower().startswith("attachment")


def _is_calendar_message(part: Message) -> bool:
    if part.get_content_type() in CALENDAR_TYPES:
        return True
    filename = _message_filename(part)
    return filename is not None and filename.lower().endswith(".ics")


def _message_filename(part: Message) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
    except (LookupError, ValueError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _message_text(part: Message) -> str:
    try:
        raw = part.get_payload(decode=True)
        charset = part.get_content_charset()
    except (LookupError, ValueError, TypeError, binascii.Error):
        return ""
    return _to_text(raw, charset) if isinstance(raw, bytes) else ""
