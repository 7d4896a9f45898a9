"""IMAP over imapclient, with a fast path for the one request that dominates a first scan.

imapclient parses every FETCH response into Python objects, which costs more than the server spends serving
the headers. For the bulk header fetch we therefore send ``UID FETCH a:b (...)`` ourselves on imapclient's
connection and read the literals straight off its buffered socket; everything else (login, LIST, STATUS,
SELECT, IDLE, APPEND) goes through imapclient.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
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
_LITERAL_RE = re.compile(rb"\{(\d+)\}\r\n$")
_UID_RE = re.compile(rb"\bUID (\d+)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_GM_MSGID_RE = re.compile(rb"X-GM-MSGID (\d+)")
_GM_THRID_RE = re.compile(rb"X-GM-THRID (\d+)")

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
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        timeout = cfg.timeout.total_seconds()
        with translate(f"IMAP {cfg.host}:{cfg.port}"):
            client = self._factory(
                cfg.host, port=cfg.port, ssl=cfg.security == "tls", ssl_context=context, timeout=timeout
            )
            self.client = client
            if cfg.security == "starttls":
                client.starttls(context)
            try:
                client.login(cfg.username, self._password)
            except LoginError as exc:
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
        """
        with translate("IMAP SEARCH"):
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


def _raw_fetch(imap: Any, command: str) -> Iterator[RawMessage]:
    tag = b"FU" + str(id(command) % 100000).encode()
    imap.send(tag + b" " + command.encode() + b"\r\n")
    done = tag + b" "
    while True:
        line = imap.readline()
        if not line:
            raise MailError("IMAP server closed the connection during FETCH")
        if line.startswith(done):
            if not line[len(done) :].startswith(b"OK"):
                raise MailError(f"IMAP FETCH failed: {line.decode('utf-8', 'replace').strip()}")
            return
        if line.startswith(b"* ") and b" FETCH " in line[:40]:
            yield _read_fetch(imap, line)


def _read_fetch(imap: Any, line: bytes) -> RawMessage:
    text = b""
    literal = b""
    while True:
        match = _LITERAL_RE.search(line)
        if match is None:
            text += line
            break
        text += line[: match.start()]
        literal = imap.read(int(match.group(1)))
        line = imap.readline()
    uid_match = _UID_RE.search(text)
    if uid_match is None:
        return RawMessage(uid=-1, headers=b"")  # an unsolicited FETCH (flags changed): not a result
    date_match = _DATE_RE.search(text)
    msgid, thrid = _GM_MSGID_RE.search(text), _GM_THRID_RE.search(text)
    return RawMessage(
        uid=int(uid_match.group(1)),
        headers=literal,
        internal_at=_internal_date(date_match.group(1)) if date_match else None,
        gm_msgid=int(msgid.group(1)) if msgid else None,
        gm_thrid=int(thrid.group(1)) if thrid else None,
    )


def _internal_date(value: bytes) -> datetime | None:
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
    text = str(exc)
    return text or type(exc).__name__
