"""Raw header bytes -> MessageMeta: the scanner's hot path, lenient on broken mail, bounded on hostile mail.

The stdlib ``email`` parser is correct but costs ~100 µs a message; the scanner's budget for parse and
classify together is a few tens of µs. So this is a byte-level parser that extracts only the fields followupd
keeps, with fast paths for the shapes nearly all mail has (plain ASCII ids, RFC 5322 dates, simple address
lists) and caches for values that recur (address headers). Rules it keeps:

- lines end in CRLF or LF (or CR alone, in a block without any LF); a lone CR inside a line is data, not a
  line break, so it cannot start a smuggled field; continuation lines are unfolded; names are
  case-insensitive;
- the first occurrence of a field wins (duplicate From/Subject/Date in broken mail);
- bytes are UTF-8 (RFC 6532) with a latin-1 fallback, then RFC 2047 encoded words are decoded;
- no decoded value ever contains a control character (CR, LF and NUL included): a subject or name may be
  copied into an outgoing header later, and that must never be able to inject a header;
- every value is processed up to a fixed size and at most ``MAX_ADDRESSES`` recipients per field, so a 1 MB
  header line costs a bounded, small amount of time; nothing here raises on any input.
"""

from __future__ import annotations

import binascii
import functools
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_tz

from followupd.core.addresses import UNSAFE_CHARS, split_address_list
from followupd.core.types import Address, MessageMeta

MAX_VALUE_BYTES = 64 * 1024  # a field is processed up to this size; the rest is ignored
MAX_REFERENCES = 50
MAX_SUBJECT_CHARS = 998  # RFC 5322's line limit: plenty for display, bounded for storage
MAX_NAME_CHARS = 256
MAX_FLAG_CHARS = 2048
MAX_MESSAGE_ID_CHARS = 995
MIN_YEAR = 1980  # earlier dates are broken clocks (the 1970 epoch), not mail anyone has
# A Date more than this far after the server received the message is a wrong clock on the sender's side;
# trusting it would put a "last touch" in the future and stall follow-ups for that contact.
MAX_CLOCK_SKEW = timedelta(days=2)

ADDRESS_FIELDS = ("from", "to", "cc", "reply-to")
# Raw values of these are kept in MessageMeta.flags for classification and threading.
FLAG_FIELDS = (
    "auto-submitted", "precedence", "list-id", "list-unsubscribe", "list-post", "return-path", "content-type",
    "x-auto-response-suppress", "x-autoreply", "x-autorespond", "x-mailer", "feedback-id", "x-gm-thrid",
)  # fmt: skip
_TEXT_FIELDS = ("subject", "date", "message-id", "in-reply-to", "references")
WANTED_FIELDS = ADDRESS_FIELDS + _TEXT_FIELDS + FLAG_FIELDS


def _spellings(name: str) -> set[str]:
    # Exact-case lookups first: the spellings mailers actually write, so most lines skip .lower().
    title = "-".join(part.title() for part in name.split("-"))
    return {name, title, name.upper(), title.replace("-Id", "-ID"), title.replace("Gm-Thrid", "GM-THRID")}


_FIELD_NAMES = {spelling.encode(): name for name in WANTED_FIELDS for spelling in _spellings(name)}
_FLAG_SET = frozenset(FLAG_FIELDS)
_BLANK_BYTES = frozenset(b" \t")
_BLANK_LINE_RE = re.compile(rb"\n\r?\n")
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]{1,40})\?([bBqQ])\?([^?]*)\?=")
_UNSAFE_RE = re.compile(f"[{UNSAFE_CHARS}]+")
_MSG_ID_RE = re.compile(r"<([^<>]*)>")
# Printable ASCII without <>: ids in this shape need no decoding or cleaning (the common case by far).
_PLAIN_ID_RE = re.compile(rb"<([!-;=?-~]{1,%d})>" % MAX_MESSAGE_ID_CHARS)
# "Tue, 15 Nov 1994 08:12:31 -0500", optionally followed by a comment: what nearly every mailer writes.
_FAST_DATE_RE = re.compile(
    rb"(?:[A-Za-z]{3}, ?)?(\d{1,2}) ([A-Za-z]{3}) (\d{4}) "
    rb"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)(?![\d:])"
)
# The zones parsedate_tz understands: numeric ones and the RFC 822 names.
_KNOWN_ZONE_RE = re.compile(r"(?<![\w:])(?:[+-]\d{4}|UTC?|GMT|Z|[AECMP][SD]T)(?!\w)", re.I)
_MONTHS = {
    name: number for number, name in enumerate(b"jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)
}
# Labels that mail uses for charsets Python knows under another name, or that senders use for a superset.
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "ks_c_5601-1987": "cp949", "x-sjis": "shift_jis",
    "iso-8859-8-i": "iso-8859-8", "us-ascii": "utf-8", "ascii": "utf-8",
}  # fmt: skip


def strip_mbox_from_line(raw: bytes) -> bytes:
    """Return ``raw`` without a leading mbox ``From sender date`` envelope line (unchanged without one)."""
    if raw.startswith(b"From ") and not raw[5:].lstrip(b" \t").startswith(b":"):  # "From : x" is a field
        end = raw.find(b"\n")
        return b"" if end < 0 else raw[end + 1 :]
    return raw


def header_block(raw_message: bytes) -> bytes:
    """Return the header part of a raw message: everything before the first empty line (all of it if none)."""
    if raw_message.startswith((b"\n", b"\r\n")):
        return b""
    match = _BLANK_LINE_RE.search(raw_message)
    return raw_message if match is None else raw_message[: match.start() + 1]


def parse_headers(raw: bytes, *, fallback_date: datetime | None = None) -> MessageMeta:
    """Parse a raw header block (or a whole message, optionally mbox-framed) into a MessageMeta. Never raises.

    ``date_at`` is the Date header in aware UTC; when that is missing, unreadable, before 1980, or more than
    two days after ``fallback_date`` (the server's INTERNALDATE, say), ``fallback_date`` is used instead
    (naive means UTC); None when neither is usable. ``tz_offset_minutes`` is the offset the Date header
    carried, None when it had none. ``message_id`` is "" when missing: the caller synthesises one.
    ``flags`` holds the FLAG_FIELDS present, plus ``from`` when a From field had no usable address.
    """
    fields = _collect_fields(header_block(strip_mbox_from_line(raw)))
    date_at, offset = _parse_date(fields.get("date"))
    date_at = _plausible_date(date_at, fallback_date)
    raw_from = fields.get("from")
    senders = _addresses(raw_from)
    flags = {name: _flag(value) for name, value in fields.items() if name in _FLAG_SET}
    if raw_from is not None and not senders:
        flags["from"] = _flag(raw_from)  # "MAILER-DAEMON <>": classification still needs to see it
    in_reply_to = fields.get("in-reply-to")
    return MessageMeta(
        message_id=_message_id(fields.get("message-id")),
        subject=_subject(fields.get("subject")),
        date_at=date_at,
        tz_offset_minutes=offset,
        sender=senders[0] if senders else None,
        to=_addresses(fields.get("to")),
        cc=_addresses(fields.get("cc")),
        reply_to=_addresses(fields.get("reply-to")),
        in_reply_to=_message_id(in_reply_to) or None,
        references=_references(fields.get("references")),
        flags=flags,
    )


def _collect_fields(block: bytes) -> dict[str, bytes]:
    """Wanted field name -> raw value (leading blank, folds, trailing CR still in); first occurrence wins."""
    if b"\n" not in block and b"\r" in block:
        block = block.replace(b"\r", b"\n")  # classic Mac line ends: the only line breaks there are
    fields: dict[str, bytes] = {}
    folded: dict[str, list[bytes]] = {}  # joined once at the end: += per line would be quadratic
    name: str | None = None  # the wanted field the next continuation line belongs to
    # A Python loop over C-split lines beats a regex here: the regex engine walks each value byte by byte.
    for line in block.split(b"\n"):
        if not line:
            continue
        if line[0] in _BLANK_BYTES:
            if name is not None:
                folded.setdefault(name, [fields[name]]).append(line)
            continue
        raw_name, colon, value = line.partition(b":")
        name = (_FIELD_NAMES.get(raw_name) or _FIELD_NAMES.get(raw_name.rstrip().lower())) if colon else None
        if name is not None:
            if name in fields:
                name = None  # first occurrence wins; later duplicates and their folds are ignored
            else:
                fields[name] = value
    for name, parts in folded.items():
        fields[name] = b"\n".join(parts)
    return fields


def _text(value: bytes) -> str:
    """Unfold and decode one raw value: UTF-8 when it is valid UTF-8, latin-1 otherwise."""
    if len(value) > MAX_VALUE_BYTES:
        value = value[:MAX_VALUE_BYTES]
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return value.decode("latin-1").strip()


def clean_text(text: str) -> str:
    """Return ``text`` with every control/separator character turned into a space and whitespace collapsed.

    The result never contains CR, LF, NUL, any other C0/C1 control, U+2028/U+2029 or bidi overrides.
    """
    if not text.isprintable():
        text = _UNSAFE_RE.sub(" ", text)
    return " ".join(text.split())


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words (B and Q) in ``text``; malformed words are left as they are.

    Adjacent encoded words are joined without the whitespace between them, and their bytes are concatenated
    before decoding when they share a charset (senders split multi-byte characters across words). Unknown
    charsets fall back to UTF-8, then latin-1. The result is not yet cleaned of control characters.
    """
    if "=?" not in text:
        return text
    whole = _ENCODED_WORD_RE.fullmatch(text)  # a name that is one encoded word: the common case
    if whole is not None:
        payload = _payload(whole.group(2), whole.group(3))
        if payload is not None:
            return _decode_charset(payload, whole.group(1))
    parts: list[str] = []
    pending: list[tuple[str, bytes]] = []  # decoded-but-not-yet-charset-decoded run of adjacent words
    position = 0
    for match in _ENCODED_WORD_RE.finditer(text):
        gap = text[position : match.start()]
        payload = _payload(match.group(2), match.group(3))
        if payload is None:
            parts.append(_flush(pending) + gap + match.group())
        else:
            if not pending or gap.strip():
                parts.append(_flush(pending) + gap)
            pending.append((match.group(1), payload))
        position = match.end()
    parts.append(_flush(pending) + text[position:])
    return "".join(parts)


def _payload(encoding: str, encoded: str) -> bytes | None:
    try:
        if encoding in "bB":
            encoded = "".join(encoded.split())
            # strict: a word of non-base64 garbage is malformed and stays visible, instead of decoding to "".
            return binascii.a2b_base64(encoded + "=" * (-len(encoded) % 4), strict_mode=True)
        return binascii.a2b_qp(encoded.encode(), header=True)
    except (binascii.Error, ValueError):
        return None


def _flush(pending: list[tuple[str, bytes]]) -> str:
    """Charset-decode a run of adjacent encoded words, joining the bytes of neighbours in one charset."""
    out: list[str] = []
    run_charset = ""
    run: list[bytes] = []  # a list, not bytes +=: thousands of tiny words stay linear
    for charset, payload in pending:
        if run and charset.lower() != run_charset.lower():
            out.append(_decode_charset(b"".join(run), run_charset))
            run = []
        run_charset = charset
        run.append(payload)
    if run:
        out.append(_decode_charset(b"".join(run), run_charset))
    pending.clear()
    return "".join(out)


def _decode_charset(data: bytes, charset: str) -> str:
    name = charset.partition("*")[0].lower()  # RFC 2231 language suffix: utf-8*en
    try:
        return data.decode(_CHARSET_ALIASES.get(name, name), "replace")
    except (LookupError, UnicodeError):  # unknown charset, or a codec (idna) that refuses "replace"
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _subject(value: bytes | None) -> str:
    if value is None:
        return ""
    return clean_text(decode_words(_text(value)))[:MAX_SUBJECT_CHARS].rstrip()


def _flag(value: bytes) -> str:
    text = value[:MAX_FLAG_CHARS].strip().decode("latin-1")  # latin-1 never fails: a cheap first look
    if text.isascii() and text.isprintable() and "  " not in text:  # what clean_text would return anyway
        return text
    return clean_text(_text(value[:MAX_FLAG_CHARS]))


def _addresses(value: bytes | None) -> tuple[Address, ...]:
    if value is None:
        return ()
    if len(value) > _CACHED_VALUE_BYTES:
        return _parse_addresses(value)
    return _cached_addresses(value)


def _parse_addresses(value: bytes) -> tuple[Address, ...]:
    return tuple([_address(name, email) for name, email in split_address_list(_text(value))])


def _make_address(raw_name: str, email: str) -> Address:
    return Address(email, _display_name(raw_name))


# The same From/To bytes recur message after message (every mail from one person, every mail to the user),
# and so do the people inside recipient lists; results are immutable, so they can be shared. Only short
# values are cached whole: memory stays bounded (a few MB) and a hostile 64 KB list cannot flush that cache.
_CACHED_VALUE_BYTES = 512
_cached_addresses = functools.lru_cache(maxsize=4096)(_parse_addresses)
_address = functools.lru_cache(maxsize=8192)(_make_address)


def _display_name(raw: str) -> str:
    if not raw or ("=?" not in raw and raw.isprintable() and "  " not in raw and raw[0] not in "'\""):
        return raw[:MAX_NAME_CHARS]  # nothing to decode or clean (the splitter already stripped it)
    name = clean_text(decode_words(raw))
    if len(name) > 1 and name[0] == name[-1] and name[0] in "'\"":
        name = name[1:-1].strip()  # Outlook's 'Alice Smith', or quotes inside an encoded word
    return name[:MAX_NAME_CHARS]


def _message_id(value: bytes | None) -> str:
    """The first Message-ID in a value, without <> and whitespace; "" when there is none."""
    if value is None:
        return ""
    match = _PLAIN_ID_RE.match(value.lstrip())  # lstrip: the id may sit on a continuation line
    if match is not None:
        return match.group(1).decode("ascii")
    ids = _message_ids(value, 1)
    return ids[0] if ids else ""


def _references(value: bytes | None) -> tuple[str, ...]:
    if value is None:
        return ()
    value = value[:MAX_VALUE_BYTES]
    ids = _PLAIN_ID_RE.findall(value)
    if ids and len(ids) == value.count(b"<"):  # all ids plain ASCII: no decoding or cleaning needed
        found = tuple(dict.fromkeys(ident.decode("ascii") for ident in ids))
    else:
        found = _message_ids(value, None)
    return _bounded_references(found)


def _message_ids(value: bytes, limit: int | None) -> tuple[str, ...]:
    """Message-IDs in a value: the contents of <...>, or else the words that contain an "@".

    Old mailers write prose into In-Reply-To ("Your message of Monday"); without brackets, a word is only
    taken for an id when it looks like one, so prose never becomes a fake parent.
    """
    text = _text(value)
    candidates = _MSG_ID_RE.findall(text) if "<" in text else [word for word in text.split() if "@" in word]
    ids: dict[str, None] = {}  # an ordered set: some mailers repeat ids
    for candidate in candidates:
        ident = "".join(clean_text(candidate).split())[:MAX_MESSAGE_ID_CHARS]
        if ident:
            ids[ident] = None
            if limit is not None and len(ids) >= limit:
                break
    return tuple(ids)


def _bounded_references(ids: tuple[str, ...]) -> tuple[str, ...]:
    # The first id is the thread root that threading keys on, the last ones are the nearest parents: keep
    # both ends of an over-long chain.
    if len(ids) <= MAX_REFERENCES:
        return ids
    return (ids[0], *ids[-(MAX_REFERENCES - 1) :])


def _parse_date(value: bytes | None) -> tuple[datetime | None, int | None]:
    """Return (aware UTC datetime, offset in minutes) or (None, None) when the Date is unreadable."""
    if value is None:
        return None, None
    match = _FAST_DATE_RE.match(value.lstrip())
    fields = _fast_date_fields(match) if match else _slow_date_fields(clean_text(_text(value[:256])))
    if fields is None:
        return None, None
    year, month, day, hour, minute, second, offset = fields
    if not MIN_YEAR <= year <= 9999 or (offset is not None and abs(offset) > 18 * 60):
        return None, None
    shift = _OFFSETS.get(offset or 0)
    if shift is None:
        shift = _OFFSETS[offset or 0] = timedelta(minutes=offset or 0)
    try:
        return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC) - shift, offset
    except (ValueError, OverflowError):  # 31 Feb, hour 25, or a year-9999 date pushed past datetime.max
        return None, None


_DateFields = tuple[int, int, int, int, int, int, int | None]
_OFFSETS: dict[int, timedelta] = {}  # at most 2,161 entries (offsets are bounded to +-18 h)


def _fast_date_fields(match: re.Match[bytes]) -> _DateFields | None:
    day, month_name, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None
    offset: int | None = int(zone_hours) * 60 + int(zone_minutes)
    if sign == b"-":
        offset = -offset if offset else None  # RFC 5322: -0000 means "local time unknown"
    return int(year), month, int(day), int(hour), int(minute), int(second), offset


def _slow_date_fields(text: str) -> _DateFields | None:
    # parsedate_tz knows zone names, two-digit years and missing seconds; it is ~5x slower than the regex.
    try:
        parsed = parsedate_tz(text)
    except (ValueError, IndexError, TypeError, OverflowError):
        return None
    if parsed is None:
        return None
    year, month, day, hour, minute, second = parsed[:6]
    # parsedate_tz reports 0 for a missing, unknown or "-0000" zone alike; all three mean "offset unknown".
    zone = _KNOWN_ZONE_RE.search(text)
    offset = (parsed[9] or 0) // 60 if zone is not None and zone.group() != "-0000" else None
    return year, month, day, hour, minute, second, offset


def _plausible_date(date_at: datetime | None, fallback: datetime | None) -> datetime | None:
    if fallback is not None:
        fallback = fallback.replace(tzinfo=UTC) if fallback.tzinfo is None else fallback.astimezone(UTC)
        if date_at is None or date_at > fallback + MAX_CLOCK_SKEW:
            return fallback
    return date_at
