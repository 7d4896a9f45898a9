"""IMAP: message structures and single MIME parts, for the meetings pass (never whole messages).

:func:`search_structured` asks the server which messages are multipart or calendars at all (one SEARCH);
:func:`fetch_structures_of` (or :func:`fetch_structures` for a range) sends ``UID FETCH ... (UID
BODYSTRUCTURE)`` on imapclient's connection and reads the answers straight off its socket, like the header
fast path in :mod:`followupd.mail.imap`, keeping each raw. :func:`may_have_calendar` gates them on the raw
bytes; :func:`plain_text_part` reads the common single-part text/plain shape with one regular expression, and
:func:`parse_structure` parses the others into the nested shape :mod:`followupd.core.mime` reads.
:func:`fetch_parts` then fetches the chosen parts, or a prefix of them, through imapclient.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from itertools import count
from typing import Any

from followupd.core.mime import PartRef
from followupd.errors import MailError
from followupd.mail.imap import ImapSession, translate

FETCH_BATCH = 500  # UIDs per imapclient FETCH (imapclient does not compress UID lists into ranges)
SET_RANGES = 500  # UID ranges per raw FETCH command (servers refuse very long command lines)
MAX_STRUCTURE_BYTES = 1_000_000  # a BODYSTRUCTURE bigger than this is hostile: dropped, never parsed
MAX_LITERALS = 1_000  # more literals than this in one FETCH answer and it is dropped
_READ_CHUNK = 65_536

_UID_RE = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_LITERAL_RE = re.compile(rb"\{(\d+)\}\r\n$")
_CALENDAR_MARKS = (b"calendar", b".ics", b"application/ics")
_tags = count(1)
MAX_NESTING = 100  # deeper structures are hostile (core.mime stops at depth 20 anyway)
_STRUCTURE_START = re.compile(rb"BODYSTRUCTURE \(", re.IGNORECASE)
_TOKEN = re.compile(rb'[ \r\n]*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\}\r\n|([^ \r\n()"{]+))', re.DOTALL)
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)
# "12 FETCH (UID 7 BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 120 4 NIL NIL NIL NIL))"
_PLAIN_TEXT = re.compile(
    rb'\d+ FETCH \(UID \d+ BODYSTRUCTURE \("text" "plain" '
    rb'(?:NIL|\((?:"charset" "([^"\\]*)"|"[^"\\]*" "[^"\\]*"| )*\))'
    rb' (?:NIL|"[^"\\]*") (?:NIL|"[^"\\]*") "([^"\\]*)" (\d+) \d+(?: (?:NIL|"[^"\\]*"))?(?: NIL)*\)\)\r\n$',
    re.IGNORECASE,
)


def fetch_structures(session: ImapSession, first_uid: int, last_uid: int) -> dict[int, bytes]:
    """Raw BODYSTRUCTURE answers of the selected folder's messages with ``first_uid <= UID <= last_uid``.

    Each value is the FETCH answer as the server sent it (after ``* n FETCH``), literals inline as
    ``{n}\\r\\n<data>``. ``UID FETCH a:b`` also answers for the highest UID when it lies outside the range:
    such answers are dropped.
    """
    if first_uid > last_uid:
        return {}
    return _structures(session, f"{first_uid}:{last_uid}", lambda uid: first_uid <= uid <= last_uid)


def fetch_structures_of(session: ImapSession, uids: Collection[int]) -> dict[int, bytes]:
    """Like :func:`fetch_structures`, for a set of UIDs (sent as ranges, :data:`SET_RANGES` per command)."""
    wanted = set(uids)
    ranges = _ranges(sorted(wanted))
    found: dict[int, bytes] = {}
    for start in range(0, len(ranges), SET_RANGES):
        found.update(_structures(session, ",".join(ranges[start : start + SET_RANGES]), wanted.__contains__))
    return found


def search_structured(session: ImapSession, first_uid: int, last_uid: int) -> set[int] | None:
    """UIDs in the range whose top-level Content-Type is multipart or a calendar: the only messages that can
    hold a calendar part (one server-side SEARCH; the server has the header cached from the header scan).

    None when the answer cannot be trusted: Gmail's SEARCH HEADER only covers some headers, and a server may
    refuse the search; the caller then looks at every message.
    """
    if first_uid > last_uid:
        return set()
    if session.info.is_gmail:
        return None
    client = _client(session)
    criteria = ["UID", f"{first_uid}:{last_uid}", "OR", "OR"]
    criteria += ["HEADER", "Content-Type", "multipart", "HEADER", "Content-Type", "calendar"]
    criteria += ["HEADER", "Content-Type", "ics"]
    try:
        with translate("IMAP SEARCH Content-Type"):
            found = client.search(criteria)
    except MailError as exc:
        refused = isinstance(exc.__cause__, imaplib.IMAP4.error) and not isinstance(
            exc.__cause__, imaplib.IMAP4.abort
        )
        if refused:  # a NO/BAD answer: the connection is fine, this search is not supported
            return None
        raise
    return {uid for uid in found if first_uid <= uid <= last_uid}


def _structures(session: ImapSession, uid_set: str, accept: Callable[[int], bool]) -> dict[int, bytes]:
    client = _client(session)
    found: dict[int, bytes] = {}
    with translate("IMAP FETCH BODYSTRUCTURE"):
        for uid, raw in _raw_fetch(client._imap, f"UID FETCH {uid_set} (UID BODYSTRUCTURE)"):
            if accept(uid):
                found[uid] = raw
    return found


def _ranges(uids: Sequence[int]) -> list[str]:
    """Sorted UIDs as IMAP ranges: [1, 2, 3, 7] -> ["1:3", "7"]."""
    ranges: list[str] = []
    start = previous = None
    for uid in uids:
        if previous is not None and uid == previous + 1:
            previous = uid
            continue
        if start is not None:
            ranges.append(f"{start}:{previous}" if start != previous else str(start))
        start = previous = uid
    if start is not None:
        ranges.append(f"{start}:{previous}" if start != previous else str(start))
    return ranges


def _client(session: ImapSession) -> Any:
    if session.client is None:
        raise MailError("IMAP connection is not open")
    return session.client


def may_have_calendar(raw: bytes) -> bool:
    """Cheap gate on a raw structure: could any part be a calendar (``text/calendar``, ``*.ics``)?"""
    lowered = raw.lower()
    return any(mark in lowered for mark in _CALENDAR_MARKS)


def plain_text_part(raw: bytes) -> PartRef | None:
    """The part of a single-part ``text/plain`` message read straight from its raw structure, or None for any
    other shape (then :func:`parse_structure` it). Most person-to-person mail is this simple shape, and a
    regular expression costs far less than the full parser."""
    match = _PLAIN_TEXT.match(raw)
    if match is None:
        return None
    charset, encoding, size = match.group(1), match.group(2), match.group(3)
    return PartRef(
        "1",
        "text/plain",
        encoding.decode("ascii", "replace").lower(),
        charset.decode("ascii", "replace") if charset else None,
        int(size),
    )


def parse_structure(raw: bytes) -> object | None:
    """The BODYSTRUCTURE of one raw answer as nested tuples (bytes, int, None for NIL), the raw IMAP shape
    :mod:`followupd.core.mime` reads.

    A small parser of its own: imapclient's generic one costs ten times more, and the first scan of a big
    mailbox parses thousands of structures. None when it does not parse: a broken structure costs that
    message's meetings, never the scan.
    """
    start = _STRUCTURE_START.search(raw, 0, 200)
    if start is None:
        return None
    try:
        return _sexp(raw, start.end() - 1)
    except (ValueError, IndexError):
        return None


def _sexp(raw: bytes, position: int) -> tuple[object, ...]:
    """The parenthesised list starting at ``position``."""
    stack: list[list[object]] = []
    while True:
        token = _TOKEN.match(raw, position)
        if token is None:
            raise ValueError("not a BODYSTRUCTURE")
        position = token.end()
        opening, closing, quoted, literal, atom = token.groups()
        if opening:
            if len(stack) >= MAX_NESTING:
                raise ValueError("nested too deep")
            stack.append([])
            continue
        if not stack:
            raise ValueError("not a list")
        if closing:
            done = tuple(stack.pop())
            if not stack:
                return done
            stack[-1].append(done)
        elif quoted is not None:
            stack[-1].append(_UNESCAPE.sub(rb"\1", quoted))
        elif literal is not None:
            size = int(literal)
            stack[-1].append(raw[position : position + size])
            position += size
        else:
            stack[-1].append(None if atom.upper() == b"NIL" else int(atom) if atom.isdigit() else atom)


def fetch_parts(
    session: ImapSession, wanted: Mapping[int, Sequence[str]], *, limit: int | None = None
) -> dict[tuple[int, str], bytes]:
    """``BODY.PEEK[<part>]`` (or its first ``limit`` bytes) of the selected folder's messages.

    ``wanted`` maps a UID to part numbers (``"1"``, ``"2.3"``). Messages are grouped by part number so that
    each FETCH asks for one item; a message that vanished meanwhile is simply missing from the result.
    """
    client = _client(session)
    by_part: dict[str, list[int]] = {}
    for uid, parts in wanted.items():
        for part in dict.fromkeys(parts):
            by_part.setdefault(part, []).append(uid)
    window = f"<0.{limit}>" if limit is not None else ""
    found: dict[tuple[int, str], bytes] = {}
    for part, uids in sorted(by_part.items()):
        item = f"BODY.PEEK[{part}]{window}"
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = sorted(uids[start : start + FETCH_BATCH])
            with translate("IMAP FETCH part"):
                answers = client.fetch(chunk, [item])
            for uid, data in answers.items():
                body = _body(data)
                if uid in wanted and body is not None:
                    found[(uid, part)] = body
    return found


def _body(data: Mapping[bytes, Any]) -> bytes | None:
    """The one ``BODY[...]`` value of a FETCH answer (its key names the part and the partial origin)."""
    for key, value in data.items():
        if key.startswith(b"BODY[") and isinstance(value, bytes):
            return value
    return None


# --- the raw reader


def _raw_fetch(imap: Any, command: str) -> Iterator[tuple[int, bytes]]:
    tag = b"FS%d" % next(_tags)
    imap.send(tag + b" " + command.encode() + b"\r\n")
    done = tag + b" "
    readline, read = imap.readline, imap.read
    while True:
        line = readline()
        if not line:
            raise MailError("IMAP server closed the connection during FETCH")
        if line.startswith(done):
            if not line[len(done) :].upper().startswith(b"OK"):
                raise MailError(f"IMAP FETCH failed: {line.decode('utf-8', 'replace').strip()}")
            return
        if not line.startswith(b"* "):
            continue
        raw = _read_answer(readline, read, line)
        if raw is None or b" FETCH " not in raw[:40].upper():
            continue  # EXISTS/EXPUNGE/FLAGS and the like, or an answer too big to keep
        uid = _UID_RE.search(raw, 0, raw.find(b"{") if b"{" in raw else len(raw))
        if uid is not None and b"BODYSTRUCTURE" in raw[:200].upper():
            yield int(uid.group(1)), raw[2:]


def _read_answer(readline: Callable[[], bytes], read: Callable[[int], bytes], line: bytes) -> bytes | None:
    """One untagged answer with its literals, read to its end in any case (the connection must stay in step);
    None when it is bigger than :data:`MAX_STRUCTURE_BYTES` or has more than :data:`MAX_LITERALS` literals
    (hostile mail): that message's meetings are lost, never the scan."""
    parts: list[bytes] = []
    size = literals = 0
    while True:
        size += len(line)
        if size <= MAX_STRUCTURE_BYTES:
            parts.append(line)
        match = _LITERAL_RE.search(line)
        if match is None:
            return b"".join(parts) if size <= MAX_STRUCTURE_BYTES and literals <= MAX_LITERALS else None
        literals += 1
        remaining = int(match.group(1))
        while remaining:  # in chunks: a hostile literal must not be held in memory whole
            chunk = read(min(remaining, _READ_CHUNK))
            if not chunk:
                raise MailError("IMAP server closed the connection during FETCH")
            remaining -= len(chunk)
            size += len(chunk)
            if size <= MAX_STRUCTURE_BYTES:
                parts.append(chunk)
        line = readline()
        if not line:
            raise MailError("IMAP server closed the connection during FETCH")
