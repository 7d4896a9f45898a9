"""The ``outbox`` transport: each message is written to a directory instead of being sent.

One file per draft, ``<draft id>-<hash of the Message-ID>.eml``, mode 0600 in a 0700 directory, holding the
exact bytes SMTP would have carried. It is written to a temporary file, flushed to disk, and then *linked*
to its final name, which fails when the name exists: so a file is either complete or absent, and a draft can
never get a second file. Any ``<draft id>-*.eml`` already present means the draft went out before.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from pathlib import Path

from followupd.errors import MailError

log = logging.getLogger(__name__)


def file_name(draft_id: int, message_id: str) -> str:
    """``<draft id>-<16 hex digits of sha256(Message-ID without angle brackets)>.eml``."""
    digest = hashlib.sha256(message_id.strip().strip("<>").encode()).hexdigest()[:16]
    return f"{draft_id}-{digest}.eml"


def find(directory: Path, draft_id: int) -> Path | None:
    """The file already written for ``draft_id``, if any (temporary files never count)."""
    if not directory.is_dir():
        return None
    return next(iter(sorted(directory.glob(f"{draft_id}-*.eml"))), None)


def write_once(directory: Path, draft_id: int, message_id: str, raw: bytes) -> tuple[Path, bool]:
    """Write ``raw`` for the draft unless a file for it exists. Returns the file and whether it is new.

    Raises MailError when the directory or file cannot be written (nothing is left behind then).
    """
    existing = find(directory, draft_id)
    if existing is not None:
        return existing, False
    _ensure_directory(directory)
    final = directory / file_name(draft_id, message_id)
    temporary = directory / f".tmp-{draft_id}-{secrets.token_hex(8)}"
    try:
        _write_file(temporary, raw)
        try:
            os.link(temporary, final)
        except FileExistsError:
            return final, False
        _sync_directory(directory)
    except OSError as exc:
        raise MailError(f"cannot write {final}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return final, True


def _ensure_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise MailError(f"cannot create the outbox {directory}: {exc.strerror or exc}") from exc
    if directory.stat().st_mode & 0o077:
        log.warning("outbox %s is readable by other users; run `chmod 700 %s`", directory, directory)


def _write_file(path: Path, raw: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
