"""IMAP over imapclient, with a fast path for the one request that dominates a first scan.

imapclient parses every FETCH response into Python objects, which costs more than the server spends serving
the headers. For the bulk header fetch we therefore send ``UID FETCH a:b (...)`` ourselves on imapclient's
connection and read the literals straight off its buffered socket; everything else (login, LIST, STATUS,
SELECT, IDLE, APPEND) goes through imapclient.
"""

from __future__ import annotations

import ast
import contextlib
import imaplib
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from followupd.config import ImapConfig, is_loopback
from followupd.errors import AuthenticationError, InsecureTransportError, MailError, MailTimeoutError
from followupd.mail.source import FolderInfo, FolderStatus, RawMessage

log = logging.getLogger(__name__)

HEADER_FIELDS = (
    "FROM TO CC REPLY-TO SUBJECT DATE MESSAGE-ID IN-REPLY-TO REFERENCES AUTO-SUBMITTED PRECEDENCE LIST-ID "
    "LIST-UNSUBSCRIBE LIST-POST RETURN-PATH CONTENT-TYPE X-AUTO-RESPONSE-SUPPRESS X-AUTOREPLY X-AUTORESPOND "
    "FEEDBACK-ID X-FOLLOWUPD-ID"
)
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX.Sent", "[Gmail]/Sent Mail")
_UID_RE = re.compile(rb"\bUID (\d+)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_GM_MSGID_RE = re.compile(rb"X-GM-MSGID (\d+)")
_GM_THRID_RE = re.compile(rb"X-GM-THRID (\d+)")
# Years 1000-9998 only: parsedate_tz maps two-digit years, and 9999 can overflow once shifted to UTC.
_FAST_INTERNALDATE_RE = re.compile(
    rb"([ \d]?\d)-([A-Za-z]{3})-([1-9]\d{3}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)
_MONTHS = {
    name.encode(): number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}

ClientFactory = Callable[..., IMAPClient]


@dataclass(frozen=True)
class Connected:
    """What the server said about itself after login."""

    capabilities: frozenset[str]

    @property
    def is_gmail(self) -> bool:
        return "X-GM-EXT-1" in self.capabilities

    @property
    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities


class ImapSession:
    """One logged-in IMAP connection for one account. Use as a context manager; ``__exit__`` never raises."""

    def __init__(self, cfg: ImapConfig, password: str, *, factory: ClientFactory = IMAPClient) -> None:
        self.cfg = cfg
        self._password = password
        self._factory = factory
        self.client: IMAPClient | None = None
        self.info = Connected(frozenset())

    def __enter__(self) -> ImapSession:
        try:
            self.connect()
        except BaseException:
            self.close()  # a refused login or failed STARTTLS would otherwise leave the socket open
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> Connected:
        """Connect with the configured security and log in; errors become MailError subclasses."""
        cfg = self.cfg
        if cfg.security == "none" and not is_loopback(cfg.host):
            raise InsecureTransportError(f"refusing to log in to {cfg.host} without TLS")
        # No context for a plaintext loopback connection: building one loads the system CA store (~25 ms,
        # more than an incremental scan may take). A configured ca_file is still loaded, so a bad one fails.
        context = None if cfg.security == "none" and cfg.ca_file is None else _tls_context(cfg.ca_file)
        timeout = cfg.timeout.total_seconds()
        with translate(f"IMAP {cfg.host}:{cfg.port}"):
            client = self._factory(
                cfg.host, port=cfg.port, ssl=cfg.security == "tls", ssl_context=context, timeout=timeout
            )
            self.client = client
            if cfg.security == "starttls":
                assert context is not None
                client.starttls(context)
            try:
                client.login(cfg.username, self._password)
            except LoginError as exc:
                if isinstance(exc.__context__, (imaplib.IMAP4.abort, OSError)):
                    # imapclient wraps a connection lost during LOGIN as LoginError: that is no refusal (no
                    # password hint, and the scan retries it); translate() makes it a MailError.
                    raise exc.__context__ from None
                raise AuthenticationError(
                    f"IMAP {cfg.host} refused the login for {cfg.username}: {_text(exc)}",
                    hint="Check the username and password source; for Gmail use an app password or OAuth2.",
                ) from None
            caps = frozenset(c.decode() if isinstance(c, bytes) else str(c) for c in client.capabilities())
        self.info = Connected(caps)
        return self.info

    def close(self) -> None:
        """Log out (best effort) and drop the connection."""
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.logout()
        except (OSError, IMAPClientError, imaplib.IMAP4.error):
            try:
                client.shutdown()
            except (OSError, IMAPClientError, imaplib.IMAP4.error):
                log.debug("IMAP shutdown failed; connection dropped")

    @property
    def _client(self) -> IMAPClient:
        if self.client is None:
            raise MailError("IMAP connection is not open")
        return self.client

    def folders(self, extra: tuple[str, ...] = ()) -> list[FolderInfo]:
        """INBOX and Sent (by SPECIAL-USE, then by name), plus ``extra``; on Gmail, All Mail instead."""
        with translate("IMAP LIST"):
            listing = self._client.list_folders()
        by_flag: dict[bytes, str] = {}
        names = []
        for flags, _delim, name in listing:
            names.append(name)
            for flag in flags:
                by_flag.setdefault(flag, name)
        if self.info.is_gmail and b"\\All" in by_flag:
            found = [FolderInfo(by_flag[b"\\All"], "all")]
        else:
            found = [FolderInfo("INBOX", "inbox")]
            sent = by_flag.get(b"\\Sent") or next((n for n in SENT_NAMES if n in names), None)
            if sent:
                found.append(FolderInfo(sent, "sent"))
        known = {f.name for f in found}
        found.extend(FolderInfo(name, "other") for name in extra if name not in known)
        return found

    def status(self, folder: str) -> FolderStatus:
        """STATUS (UIDNEXT UIDVALIDITY MESSAGES [HIGHESTMODSEQ]) without selecting the folder."""
        what = ["UIDNEXT", "UIDVALIDITY", "MESSAGES"]
        if "CONDSTORE" in self.info.capabilities:
            what.append("HIGHESTMODSEQ")
        with translate(f"IMAP STATUS {folder}"):
            data = self._client.folder_status(folder, what)
        modseq = data.get(b"HIGHESTMODSEQ")
        return FolderStatus(
            int(data[b"UIDVALIDITY"]),
            int(data[b"UIDNEXT"]),
            int(data[b"MESSAGES"]),
            int(modseq) if modseq is not None else None,
        )

    def select(self, folder: str) -> None:
        """Select ``folder`` read-only (EXAMINE), so scanning never changes flags."""
        with translate(f"IMAP SELECT {folder}"):
            self._client.select_folder(folder, readonly=True)

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs of the selected folder greater than ``last_uid``, ascending.

        ``UID SEARCH UID n:*`` always includes the highest UID even when it is below n: filtered here.
        With ESEARCH (RFC 4731) the answer is a compact UID set, read off the socket: a plain SEARCH answer
        lists every UID and imapclient's parse of it peaked at ~50 MB for 140,000 messages.
        """
        with translate("IMAP SEARCH"):
            if "ESEARCH" in self.info.capabilities:
                found: Iterable[int] = _raw_esearch(
                    self._client._imap, f"UID SEARCH RETURN (ALL) UID {last_uid + 1}:*"
                )
            else:
                found = self._client.search(["UID", f"{last_uid + 1}:*"])
        return sorted(uid for uid in found if uid > last_uid)

    def fetch_headers(self, first_uid: int, last_uid: int) -> Iterator[RawMessage]:
        """Header blocks of the selected folder's messages with first_uid <= UID <= last_uid, in server order.

        ``UID FETCH n:m`` returns the highest UID even when it lies outside the range, so results outside
        [first_uid, last_uid] are dropped here.
        """
        items = f"UID INTERNALDATE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]"
        if self.info.is_gmail:
            items += " X-GM-MSGID X-GM-THRID"
        command = f"UID FETCH {first_uid}:{last_uid} ({items})"
        with translate("IMAP FETCH"):
            for message in _raw_fetch(self._client._imap, command):  # the fast path, see module docstring
                if first_uid <= message.uid <= last_uid:
                    yield message

    def append(self, folder: str, raw: bytes, flags: tuple[str, ...] = ("\\Seen",)) -> None:
        """APPEND a message (a sent copy, a draft)."""
        with translate(f"IMAP APPEND {folder}"):
            self._client.append(folder, raw, flags=flags)

    def search_message_id(self, folder: str, message_id: str) -> list[int]:
        """UIDs in ``folder`` whose Message-ID header is ``message_id`` (without angle brackets)."""
        self.select(folder)
        with translate(f"IMAP SEARCH {folder}"):
            return list(self._client.search(["HEADER", "Message-ID", f"<{message_id}>"]))


_TLS_CONTEXT_TTL = 600.0  # seconds a verified-TLS context is reused (a CA store update is seen after this)
_tls_contexts: dict[tuple[str | None, int | None], tuple[float, ssl.SSLContext]] = {}
_tls_lock = threading.Lock()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """``ssl.create_default_context(cafile=ca_file)``, reused for a while: building one costs ~25 ms.

    The cache key includes the CA file's modification time, so a replaced certificate is picked up at once.
    Contexts are never changed after creation, so sharing one between connections and threads is safe.
    """
    key = (str(ca_file), ca_file.stat().st_mtime_ns) if ca_file is not None else (None, None)
    now = time.monotonic()
    with _tls_lock:
        cached = _tls_contexts.get(key)
        if cached is not None and now - cached[0] < _TLS_CONTEXT_TTL:
            return cached[1]
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    with _tls_lock:
        _tls_contexts[key] = (now, context)
    return context


def _raw_fetch(imap: Any, command: str) -> Iterator[RawMessage]:
    tag = b"FU" + str(id(command) % 100000).encode()
    imap.send(tag + b" " + command.encode() + b"\r\n")
    done = tag + b" "
    readline, read = imap.readline, imap.read
    while True:
        line = readline()
        if not line:
            raise MailError("IMAP server closed the connection during FETCH")
        if line.startswith(done):
            if not line[len(done) :].startswith(b"OK"):
                raise MailError(f"IMAP FETCH failed: {line.decode('utf-8', 'replace').strip()}")
            return
        if line.startswith(b"* ") and b" FETCH " in line[:40]:
            yield _read_fetch(readline, read, line)


def _raw_esearch(imap: Any, command: str) -> list[int]:
    """The UIDs of an ``... SEARCH RETURN (ALL) ...`` answer (``* ESEARCH (TAG "t") UID ALL 1:5,9``)."""
    tag = b"FU" + str(id(command) % 100000).encode()
    imap.send(tag + b" " + command.encode() + b"\r\n")
    done = tag + b" "
    found: list[int] = []
    answered = False
    while True:
        line = imap.readline()
        if not line:
            raise MailError("IMAP server closed the connection during SEARCH")
        if line.startswith(done):
            if not line[len(done) :].startswith(b"OK"):
                raise MailError(f"IMAP SEARCH failed: {line.decode('utf-8', 'replace').strip()}")
            if not answered:  # RFC 4731 requires an ESEARCH line even for no match: "none" would lose mail
                raise MailError("IMAP SEARCH: the server said OK without an ESEARCH answer")
            return found
        words = line.upper().split()
        answered = answered or (len(words) > 1 and words[1] == b"ESEARCH")
        if len(words) > 1 and words[1] == b"ESEARCH" and b"ALL" in words[2:-1]:
            try:
                found.extend(_uid_set(words[words.index(b"ALL", 2) + 1]))
            except ValueError:
                raise MailError(f"IMAP SEARCH: unreadable answer {line[:200]!r}") from None


def _uid_set(text: bytes) -> Iterator[int]:
    """The numbers of an IMAP sequence set such as ``1:5,9,12:10``."""
    for part in text.split(b","):
        first, _, last = part.partition(b":")
        low, high = int(first), int(last or first)
        yield from range(min(low, high), max(low, high) + 1)


def _read_fetch(readline: Callable[[], bytes], read: Callable[[int], bytes], line: bytes) -> RawMessage:
    text = b""
    literal = b""
    while True:
        # A line ending in "{n}\r\n" announces an n-byte literal.
        start = line.rfind(b"{") if line.endswith(b"}\r\n") else -1
        size = line[start + 1 : -3] if start >= 0 else b""
        if not size.isdigit():
            text += line
            break
        text += line[:start]
        literal = read(int(size))
        line = readline()
    uid_match = _UID_RE.search(text)
    if uid_match is None:
        if literal:  # header data without a readable UID: a broken answer, not an unsolicited flag change
            raise MailError(f"IMAP FETCH: unreadable answer {text[:200]!r}")
        return RawMessage(uid=-1, headers=b"")  # an unsolicited FETCH (flags changed): not a result
    date_match = _DATE_RE.search(text)
    gmail = b"X-GM-" in text
    msgid = _GM_MSGID_RE.search(text) if gmail else None
    thrid = _GM_THRID_RE.search(text) if gmail else None
    return RawMessage(
        uid=int(uid_match.group(1)),
        headers=literal,
        internal_at=_internal_date(date_match.group(1)) if date_match else None,
        gm_msgid=int(msgid.group(1)) if msgid else None,
        gm_thrid=int(thrid.group(1)) if thrid else None,
    )


def _internal_date(value: bytes) -> datetime | None:
    match = _FAST_INTERNALDATE_RE.fullmatch(value)
    if match is not None:  # the fixed form servers send: " 5-Jan-2023 10:00:00 +0100"
        day, month_name, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
        month = _MONTHS.get(month_name.lower())
        offset = int(zone_hours) * 60 + int(zone_minutes)
        if month is not None and offset < 24 * 60 and year != b"9999":
            try:
                at = datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=UTC)
            except ValueError:
                return None
            return at - timedelta(minutes=-offset if sign == b"-" else offset) if offset else at
    try:
        parsed = parsedate_to_datetime(value.decode("ascii").replace("-", " ", 2))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Turn socket, TLS and imaplib errors into followupd's MailError family, naming what was being done."""
    try:
        yield
    except MailError:
        raise
    except TimeoutError as exc:
        raise MailTimeoutError(f"{what}: the server did not answer in time") from exc
    except ssl.SSLCertVerificationError as exc:
        raise MailError(
            f"{what}: certificate not trusted: {exc.verify_message}",
            hint="Set ca_file for a self-hosted server; never disable verification.",
        ) from exc
    except (OSError, IMAPClientError, imaplib.IMAP4.error, EOFError) as exc:
        raise MailError(f"{what}: {_text(exc)}") from exc


def _text(exc: BaseException) -> str:
    """The server's words. imaplib carries the response as bytes and imapclient turns that into the repr
    (``"b'[AUTHENTICATIONFAILED] ...'"``); show the text itself."""
    raw = exc.args[0] if len(exc.args) == 1 else None
    if isinstance(raw, str) and len(raw) >= 3 and raw[:2] in ("b'", 'b"') and raw[-1] == raw[1]:
        with contextlib.suppress(ValueError, SyntaxError):
            raw = ast.literal_eval(raw)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace") or type(exc).__name__
    return str(exc) or type(exc).__name__
