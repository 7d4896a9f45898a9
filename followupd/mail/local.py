"""Local mail stores read instead of IMAP: Maildir (mbsync, offlineimap) and mbox (Google Takeout).

Both are incremental, so that re-scanning an unchanged store is nearly free: ``fingerprint`` costs a few stat
calls, and ``messages`` yields only what is not stored yet, each with the cursor (``state``) the engine stores
in the same transaction as the message. Only header blocks are read; bodies never leave the disk.

Maildir: the root (cur/ + new/) is INBOX; Maildir++ ``.a.b`` folders and plain sub-directories holding cur/
(offlineimap, mbsync ``SubFolders Verbatim``) are folders named with ``/``. A message's uid hashes the unique
part of its file name, which survives flag changes and the move from new/ to cur/; state is always "" and
``known`` does the skipping.

mbox: messages start at a ``From `` line that follows a blank line *and* is followed by a header field line.
A body line ``From someone`` is therefore never a split when the line before it is not blank (mboxo bodies
are not quoted, and requiring the blank line is what mutt and Thunderbird do), nor when the next line does not
look like a header: a quoted paragraph starting "From the desk of..." stays in its message. ``>From `` lines
are left alone. uid = byte offset of the message's ``From `` line + 1. State records where the last yielded
message ended and what the file looked like then; it is only trusted for the same, append-only-grown file.
Offsets name messages only within one version of the file, so ``known`` is consulted only when resuming that
same file: after a rewrite an old offset may now start a different message, and dedupe is by Message-ID.

Fingerprints follow git's "racy" rule: a directory or file modified within the last couple of seconds never
gets a fingerprint equal to a later one, because a change in the same timestamp tick would not show.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from followupd.core.headers import header_block, strip_mbox_from_line
from followupd.errors import MailError
from followupd.mail.source import FolderInfo, RawMessage

HEADER_CAP = 1024 * 1024  # a header block is cut at this size (hostile or broken mail)
MBOX_CHUNK = 512 * 1024
_MAILDIR_READ = 8192
_HEAD_HASH_BYTES = 4096
_LOOKAHEAD = 8192  # bytes kept past a scan position: a candidate "From " line and the next line fit in it
_MAX_DEPTH = 6
_RACY_NS = 2_000_000_000
_UID_MASK = (1 << 63) - 1

_SENT_NAMES = frozenset({"sent", "sent items", "sent messages", "sent mail"})
_SKIPPED_NAMES = frozenset(
    {"trash", "junk", "spam", "drafts", "deleted items", "deleted messages", "junk e-mail", "junk email"}
)
_PART_SPLIT_RE = re.compile(r"[./]")
_SENT_WORD_RE = re.compile(r"(?<![a-z])sent(?![a-z])")
_BLANK_RE = re.compile(rb"\n\r?\n")
_SEPARATOR_RE = re.compile(rb"\n\r?\nFrom ")
_ENVELOPE_RE = re.compile(rb"From [^\n]{0,4000}\n[\x21-\x39\x3b-\x7e]{1,200}:")
_FROM_DATE_RE = re.compile(
    rb"([A-Z][a-z]{2}) +(\d{1,2}) +(\d{1,2}):(\d{2})(?::(\d{2}))? +(?:([+-]\d{4}) +)?(?:[A-Z]{1,5} +)?(\d{4})"
)
_LABELS_RE = re.compile(rb"^X-Gmail-Labels:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.M | re.I)
_DISCARDED_LABELS = frozenset({b"spam", b"trash"})
_MONTHS = {m: i for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}


class LocalSource(Protocol):
    """What the scan engine reads from a local store."""

    def folders(self) -> list[FolderInfo]:
        """The folders to scan, with their roles."""
        ...

    def fingerprint(self, folder: str) -> str:
        """A cheap (stat-only) summary: equal fingerprints mean nothing changed. Take it *before* reading."""
        ...

    def messages(
        self, folder: str, *, state: str | None, known: Callable[[int], bool]
    ) -> Iterator[tuple[RawMessage, str]]:
        """Messages not stored yet, in a stable order, each with the state to store along with it."""
        ...


def open_source(kind: Literal["maildir", "mbox"], path: Path) -> LocalSource:
    """Open a Maildir root or an mbox file/directory. Raises MailError when it is missing or unreadable."""
    if kind == "maildir":
        return MaildirSource(path.expanduser())
    return MboxSource(path.expanduser())


# --- Maildir ---------------------------------------------------------------------------------------------


class MaildirSource:
    """A Maildir tree; see the module docstring for layout, uids and state."""

    def __init__(self, root: Path) -> None:
        self._root = root
        _require(root, "maildir", directory=True)
        self._dirs = _discover(root)
        if not self._dirs:
            raise MailError(
                f"{root} holds no Maildir folder (no cur/ or new/ directory)",
                hint="Check [accounts.maildir] path: it must point at the Maildir root.",
            )

    def folders(self) -> list[FolderInfo]:
        """INBOX and the subfolders, minus trash, junk/spam and drafts."""
        _require(self._root, "maildir", directory=True)
        self._dirs = _discover(self._root)
        return [FolderInfo(name, _maildir_role(name)) for name in self._dirs]

    def fingerprint(self, folder: str) -> str:
        """Inode, mtime (ns) and size of cur/ and new/; "absent" for a folder that has gone."""
        directory = self._directory(folder)
        if directory is None:
            return "absent"
        return ";".join(_stamp(directory / sub, "maildir") for sub in ("cur", "new"))

    def messages(
        self, folder: str, *, state: str | None, known: Callable[[int], bool]
    ) -> Iterator[tuple[RawMessage, str]]:
        """Messages whose uid is not ``known``, ordered by unique name; files that vanish are looked up once
        more after the pass (mbsync moves them) and otherwise skipped. State is always ""."""
        directory = self._directory(folder)
        if directory is None:
            return
        vanished = yield from _maildir_pass(_listing(directory), known)
        if vanished:
            again = dict(_listing(directory))
            yield from _maildir_pass([(u, again[u]) for u in vanished if u in again], known)

    def paths(self, folder: str) -> dict[int, Path]:
        """uid -> current file of every message of ``folder`` (one directory listing; {} when it has gone)."""
        directory = self._directory(folder)
        if directory is None:
            return {}
        return {maildir_uid(unique): path for unique, path in _listing(directory)}

    def _directory(self, folder: str) -> Path | None:
        _require(self._root, "maildir", directory=True)
        path = self._dirs.get(folder)
        if path is None or not os.path.isdir(path):
            self._dirs = _discover(self._root)
        return self._dirs.get(folder)


def unique_part(filename: str) -> str:
    """The part of a Maildir file name that flag changes keep: before the ``:2,`` info (or ``;``/``!`` on
    file systems without colons) and without mbsync/offlineimap's ``,U=<uid>...`` suffix."""
    cut = filename.find(":")
    if cut < 0:
        match = re.search(r"[;!]2,", filename)
        cut = len(filename) if match is None else match.start()
    return filename[:cut].split(",U=", 1)[0]


def maildir_uid(unique: str) -> int:
    """A stable positive 63-bit uid for a unique name."""
    digest = hashlib.blake2b(os.fsencode(unique), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _UID_MASK or 1


def _maildir_pass(
    entries: list[tuple[str, Path]], known: Callable[[int], bool]
) -> Generator[tuple[RawMessage, str], None, list[str]]:
    vanished: list[str] = []
    for unique, path in entries:
        uid = maildir_uid(unique)
        if known(uid):
            continue
        raw = _read_maildir_message(uid, path)
        if raw is None:
            vanished.append(unique)
        else:
            yield raw, ""
    return vanished


def _listing(directory: Path) -> list[tuple[str, Path]]:
    found: dict[str, Path] = {}
    # new/ first: a message moved to cur/ meanwhile is then seen at least once; the cur/ name wins.
    for sub in ("new", "cur"):
        try:
            with os.scandir(directory / sub) as entries:
                for entry in entries:
                    if not entry.name.startswith(".") and entry.is_file():
                        found[unique_part(entry.name)] = Path(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _unreadable(directory / sub, exc, "maildir") from exc
    return sorted(found.items())


def _read_maildir_message(uid: int, path: Path) -> RawMessage | None:
    try:
        with path.open("rb") as file:
            mtime = os.fstat(file.fileno()).st_mtime
            head = _read_head(file)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(path, exc, "maildir") from exc
    try:
        received_at: datetime | None = datetime.fromtimestamp(mtime, UTC)
    except (OverflowError, OSError, ValueError):
        received_at = None
    return RawMessage(uid=uid, headers=header_block(strip_mbox_from_line(head)), internal_at=received_at)


def _read_head(file: BinaryIO) -> bytes:
    data = bytearray()
    while len(data) < HEADER_CAP:
        chunk = file.read(_MAILDIR_READ)
        if not chunk:
            break
        resume = max(0, len(data) - 2)
        data += chunk
        if _BLANK_RE.search(data, resume):
            break
    return bytes(data[:HEADER_CAP])


def _discover(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if _is_maildir(root):
        found["INBOX"] = root
    pending: list[tuple[Path, str, int]] = [(root, "", 0)]
    while pending:
        directory, prefix, depth = pending.pop()
        for name in _subdirectories(directory, strict=depth == 0):
            folder, descend = _folder_name(prefix, name)
            if folder is None or _skipped(folder):
                continue
            path = directory / name
            if _is_maildir(path):
                found.setdefault(folder, path)
            if descend and depth < _MAX_DEPTH:
                pending.append((path, folder, depth + 1))
    return dict(sorted(found.items()))


def _folder_name(prefix: str, name: str) -> tuple[str | None, bool]:
    """(folder name, whether to look inside) for a sub-directory ``name`` of folder ``prefix``."""
    if name in ("cur", "new", "tmp"):
        return None, False
    if name.startswith("."):  # Maildir++ (flat, only at the root); hidden directories elsewhere
        parts = name[1:].split(".")
        return (None if prefix or not all(parts) else "/".join(parts)), False
    return (f"{prefix}/{name}" if prefix else name), True


def _subdirectories(directory: Path, *, strict: bool) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entry.name for entry in entries if entry.is_dir())
    except OSError as exc:
        if strict:  # the root: say so; a deeper directory that cannot be listed is not a folder
            raise _unreadable(directory, exc, "maildir") from exc
        return []


def _is_maildir(path: Path) -> bool:
    return os.path.isdir(path / "cur") or os.path.isdir(path / "new")  # False when unreadable, never raises


def _skipped(folder: str) -> bool:
    return any(part.strip().lower() in _SKIPPED_NAMES for part in _PART_SPLIT_RE.split(folder))


def _maildir_role(name: str) -> str:
    if name.upper() == "INBOX":
        return "inbox"
    last = _PART_SPLIT_RE.split(name)[-1].strip().lower()
    if last in _SENT_NAMES:
        return "sent"
    return "all" if last == "all mail" else "other"


# --- mbox ------------------------------------------------------------------------------------------------


class MboxSource:
    """One mbox file, or a directory of ``*.mbox`` files (one folder each, named by file name)."""

    def __init__(self, path: Path, *, chunk_size: int = MBOX_CHUNK) -> None:
        self._path = path
        self._chunk = max(1, chunk_size)
        self._is_dir = stat.S_ISDIR(_require(path, "mbox", directory=False).st_mode)

    def folders(self) -> list[FolderInfo]:
        """The file itself, or every ``.mbox`` file of the directory. Roles: sent / all / inbox / other."""
        if not self._is_dir:
            return [FolderInfo(self._path.name, _mbox_role(self._path.name))]
        _require(self._path, "mbox", directory=True)
        try:
            with os.scandir(self._path) as entries:
                names = sorted(e.name for e in entries if e.name.lower().endswith(".mbox") and e.is_file())
        except OSError as exc:
            raise _unreadable(self._path, exc, "mbox") from exc
        if not names:
            raise MailError(
                f"{self._path} holds no .mbox file",
                hint="Check [accounts.mbox] path: a .mbox file or its folder.",
            )
        return [FolderInfo(name, _mbox_role(name)) for name in names]

    def fingerprint(self, folder: str) -> str:
        """Size, mtime (ns) and inode of the file."""
        return _stamp(self._file(folder), "mbox", missing_ok=False)

    def messages(
        self, folder: str, *, state: str | None, known: Callable[[int], bool]
    ) -> Iterator[tuple[RawMessage, str]]:
        """Messages after the state's offset when the file only grew; otherwise all of them, from offset 0.
        Gmail messages labelled Spam or Trash, and messages without headers, are skipped."""
        path = self._file(folder)
        try:
            with path.open("rb") as file:
                yield from _read_mbox(file, state, known, self._chunk)
        except MailError:
            raise
        except OSError as exc:
            raise _unreadable(path, exc, "mbox") from exc

    def read_message(self, folder: str, uid: int, limit: int) -> bytes | None:
        """The whole message ``uid`` (its ``From `` line included), at most ``limit`` bytes; None when the
        file no longer has a message at that offset (rewritten or shrunk since it was scanned)."""
        path = self._file(folder)
        try:
            with path.open("rb") as file:
                file.seek(max(uid - 1, 0))
                data = file.read(limit + _LOOKAHEAD)
        except OSError as exc:
            raise _unreadable(path, exc, "mbox") from exc
        if not data.startswith(b"From "):
            return None
        for match in _SEPARATOR_RE.finditer(data):
            if _ENVELOPE_RE.match(data, match.end() - 5):
                return data[: min(match.start() + 1, limit)]
        return data[:limit]

    def _file(self, folder: str) -> Path:
        if not self._is_dir and folder == self._path.name:
            return self._path
        if self._is_dir and folder.lower().endswith(".mbox") and Path(folder).name == folder:
            return self._path / folder
        raise MailError(f"no mbox folder {folder!r} in {self._path}", hint="Check [accounts.mbox] path.")


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    head: bytes  # the raw message start: From line and header block, at most HEADER_CAP bytes


class _Cursor:
    """Builds the state string stored with each yielded message."""

    def __init__(self, st: os.stat_result, prefix: bytes) -> None:
        self._size, self._ino, self._prefix = st.st_size, st.st_ino, prefix
        self._full_head = _sha1(prefix[:_HEAD_HASH_BYTES])

    def state(self, offset: int) -> str:
        """JSON {"offset", "size", "head", "ino"}; formatted by hand: it is built once per message."""
        full = offset >= _HEAD_HASH_BYTES
        head = self._full_head if full else _sha1(self._prefix[:offset])
        return f'{{"offset": {offset}, "size": {self._size}, "head": "{head}", "ino": {self._ino}}}'


def _read_mbox(
    file: BinaryIO, state: str | None, known: Callable[[int], bool], chunk: int
) -> Iterator[tuple[RawMessage, str]]:
    st = os.fstat(file.fileno())
    prefix = file.read(_HEAD_HASH_BYTES)
    start = _resume_offset(file, st, prefix, state)
    cursor = _Cursor(st, prefix)
    for span in _MboxScanner(file, start or 0, st.st_size, chunk):
        if start is not None and known(span.start + 1):
            continue
        headers = header_block(strip_mbox_from_line(span.head))
        if not headers.strip() or _discarded(headers):
            continue
        raw = RawMessage(uid=span.start + 1, headers=headers, internal_at=_envelope_date(span.head))
        yield raw, cursor.state(span.end)


def _resume_offset(file: BinaryIO, st: os.stat_result, prefix: bytes, state: str | None) -> int | None:
    """Where to continue: the state's offset when the file is the same and only grew, else None (from 0)."""
    saved = _parse_state(state)
    if saved is None:
        return None
    offset, head, ino = saved
    if ino != st.st_ino or not 0 < offset <= st.st_size:
        return None
    if _sha1(prefix[: min(_HEAD_HASH_BYTES, offset)]) != head:
        return None
    if offset < st.st_size:
        file.seek(offset)
        if file.read(5) != b"From ":  # the last message grew, or the file was rewritten with the same head
            return None
    return offset


def _parse_state(state: str | None) -> tuple[int, str, int] | None:
    if not state:
        return None
    try:
        saved = json.loads(state)
        offset, head, ino = saved["offset"], saved["head"], saved["ino"]
    except (ValueError, TypeError, KeyError):
        return None
    if type(offset) is not int or type(ino) is not int or not isinstance(head, str):
        return None
    return offset, head, ino


class _MboxScanner:
    """Walks an mbox from ``start`` to ``end`` with a bounded window of it in memory."""

    def __init__(self, file: BinaryIO, start: int, end: int, chunk: int) -> None:
        file.seek(start)
        self._file, self._end, self._chunk = file, end, chunk
        self._base = start  # file offset of _buf[0]
        self._buf = bytearray()

    def __iter__(self) -> Iterator[_Span]:
        pos = self._first_start() if self._base == 0 else self._base
        while pos < self._end:
            head = self._head(pos)
            end = self._boundary(pos)
            yield _Span(pos, end, head)
            pos = end

    @property
    def _stop(self) -> int:
        return self._base + len(self._buf)

    def _fill(self) -> bool:
        data = self._file.read(min(self._chunk, self._end - self._stop)) if self._stop < self._end else b""
        if not data:
            self._end = self._stop  # end reached, or the file shrank under us
        self._buf += data
        return bool(data)

    def _drop(self, offset: int) -> None:
        if offset > self._base:
            del self._buf[: offset - self._base]
            self._base = offset

    def _first_start(self) -> int:
        """Offset of the first message: leading blank lines are not a message."""
        while True:
            rest = self._buf.lstrip(b"\r\n")
            if rest:
                return self._stop - len(rest)
            self._drop(self._stop)
            if not self._fill():
                return self._stop

    def _head(self, pos: int) -> bytes:
        limit, resume = pos + HEADER_CAP, pos
        while True:
            match = _BLANK_RE.search(self._buf, resume - self._base)
            if match is not None and self._base + match.start() < limit:
                return bytes(self._buf[pos - self._base : match.start() + 1])
            stop = self._stop
            if stop >= limit + 2 or not self._fill():  # +2: a blank line starting just before the cap
                return bytes(self._buf[pos - self._base : limit - self._base])
            resume = max(pos, stop - 2)

    def _boundary(self, pos: int) -> int:
        """Offset of the next message's From line after ``pos``, or the end of the file."""
        resume = pos
        while True:
            at_end = self._stop >= self._end
            limit = self._stop if at_end else self._stop - _LOOKAHEAD
            found = self._candidate(resume, limit)
            if found is not None:
                return found
            if at_end:
                return self._end
            resume = max(resume, limit)
            self._drop(resume)
            self._fill()

    def _candidate(self, resume: int, limit: int) -> int | None:
        for match in _SEPARATOR_RE.finditer(self._buf, max(0, resume - self._base)):
            if self._base + match.start() >= limit:
                return None
            if _ENVELOPE_RE.match(self._buf, match.end() - 5):
                return self._base + match.end() - 5
        return None


def _envelope_date(head: bytes) -> datetime | None:
    """The date of an mbox ``From sender date`` line in aware UTC (asctime; UTC unless an offset is given)."""
    if not head.startswith(b"From "):
        return None
    match = _FROM_DATE_RE.search(head, 0, max(0, head.find(b"\n", 0, 1000)))
    month = None if match is None else _MONTHS.get(match.group(1))
    if match is None or month is None:
        return None
    day, hour, minute, second, zone, year = match.group(2, 3, 4, 5, 6, 7)
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) if zone else timedelta()
    try:
        at = datetime(int(year), month, int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC)
        return at + offset if zone and zone[:1] == b"-" else at - offset
    except (ValueError, OverflowError):
        return None


def _discarded(headers: bytes) -> bool:
    """Gmail (Takeout) marks spam and trash by label; they are skipped like Maildir's Junk and Trash."""
    match = _LABELS_RE.search(headers)
    if match is None:
        return False
    labels = match.group(1).replace(b"\r", b"").replace(b"\n", b"").split(b",")
    return any(label.strip(b' \t"').lower() in _DISCARDED_LABELS for label in labels)


def _mbox_role(name: str) -> str:
    lower = name.lower()
    if _SENT_WORD_RE.search(lower):
        return "sent"
    if lower.startswith("all mail"):
        return "all"
    return "inbox" if lower.removesuffix(".mbox") == "inbox" else "other"


# --- shared ----------------------------------------------------------------------------------------------


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _stamp(path: Path, kind: str, *, missing_ok: bool = True) -> str:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        if missing_ok:
            return "-"
        raise _unreadable(path, exc, kind) from exc
    except OSError as exc:
        raise _unreadable(path, exc, kind) from exc
    stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    if abs(time.time_ns() - st.st_mtime_ns) < _RACY_NS:  # a change in this same tick would not show
        stamp += f":racy{time.time_ns()}"
    return stamp


def _require(path: Path, kind: str, *, directory: bool) -> os.stat_result:
    try:
        st = path.stat()
    except OSError as exc:
        raise _unreadable(path, exc, kind) from exc
    if directory and not stat.S_ISDIR(st.st_mode):
        raise MailError(f"{path} is not a directory", hint=f"Check [accounts.{kind}] path in the config.")
    return st


def _unreadable(path: Path, exc: OSError, kind: str) -> MailError:
    what = (
        "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror or exc})"
    )
    return MailError(
        f"{kind} {path} {what}",
        hint=f"Check [accounts.{kind}] path in the config, and that followupd may read it.",
    )
