"""One daemon per SQLite database: an exclusive lock held for the daemon's whole life.

``fcntl.flock`` on ``<database file>.lock`` beside the database. The kernel drops the lock when the process
dies, however it dies, so a crash never leaves a stale lock behind; the file itself is never deleted (deleting
a lock file races with the next process that opens it) and holds the holder's pid for the message.

The lock also makes start-up recovery safe: a draft found SENDING can only be resolved as UNKNOWN when no
other daemon could be sending it right now.

Several workers on PostgreSQL (:func:`shared`) take no database-wide lock: each account is owned by one
worker at a time through leases (``followupd.daemon.ownership``), and start-up upgrades of the schema are
serialized inside ``followupd.store.migrate.upgrade``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import URL

from followupd.errors import AlreadyRunningError, DatabaseError
from followupd.store.db import Database

_HINT = "Stop the other daemon first (systemctl --user stop followupd), or see `followupd status`."


class InstanceLock:
    """The held lock. Use as a context manager, or call :meth:`release`; releasing twice is harmless."""

    def __init__(self, description: str, release: Any = None) -> None:
        self.description = description
        self._release = release

    def release(self) -> None:
        """Give the lock up."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def lock_path(url: URL) -> Path | None:
    """``<database file>.lock`` for a SQLite file database; None for an in-memory one."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().with_name(Path(database).name + ".lock")


def acquire(db: Database) -> InstanceLock:
    """Take the daemon lock for a SQLite ``db``; AlreadyRunningError (exit code 8) when another daemon holds
    it. A shared database (PostgreSQL) has none to take: the lock returned holds nothing."""
    if db.is_sqlite:
        path = lock_path(db.url)
        if path is None:
            return InstanceLock("in-memory database (nothing to lock)")
        return _flock(path, db.safe_url)
    return InstanceLock("no database-wide lock: accounts are leased to workers (followupd.daemon.ownership)")


def shared(db: Database) -> bool:
    """True when several workers may share ``db`` (PostgreSQL): accounts are leased, not locked as a whole."""
    return db.url.get_backend_name() == "postgresql"


def _flock(path: Path, where: str) -> InstanceLock:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children (O_CLOEXEC)
    except OSError as exc:
        raise DatabaseError(
            f"cannot open lock file {path}: {exc.strerror}", hint="Check that the directory is writable."
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise AlreadyRunningError(
            f"another followupd daemon{who} is already running on {where}", hint=_HINT
        ) from None
    except OSError as exc:
        os.close(fd)
        raise DatabaseError(f"cannot lock {path}: {exc.strerror}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release() -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return InstanceLock(f"lock file {path}", release)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
