"""Opening the database: engine set-up per backend, transactions, and schema upgrades on start.

SQLite (the default) is shared by the daemon and the CLI, so it runs in WAL mode with a busy timeout, foreign
keys on, and every write transaction started with ``BEGIN IMMEDIATE``: a deferred transaction that reads and
then writes fails with "database is locked" even with a busy timeout, because SQLite cannot upgrade its lock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from followupd.errors import DatabaseError, SchemaTooNewError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000


class Database:
    """A connection pool plus the two kinds of transaction followupd uses: :meth:`read` and :meth:`write`."""

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            _prepare_sqlite_file(self.url)
        try:
            self.engine = _create(self.url)
        except (SQLAlchemyError, ImportError) as exc:
            raise DatabaseError(f"cannot open database {self.safe_url}: {exc}") from exc
        self._write_engine = self.engine.execution_options(followupd_begin="IMMEDIATE")

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success, rolled back on error."""
        with self._session(self._write_engine) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work; nothing is committed."""
        with self._session(self.engine) as session:
            yield session
            session.rollback()

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
        session = Session(engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise _translate(exc, self.safe_url) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self) -> None:
        """Bring the schema to this version's head (creating it on a new database). Never drops anything."""
        from followupd.store.migrate import upgrade

        upgrade(self)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _create(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    if url.get_backend_name() == "postgresql":
        # No JIT: followupd's statements are short; on a growing table the planner's cost estimates crossed
        # jit_above_cost and compiling took longer than running (tens of ms a statement during a first scan).
        # (A URL that sets libpq options itself keeps them.)
        settings = {} if "options" in url.query else {"options": "-c jit=off"}
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=settings)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from pysqlite so the "begin" hook decides DEFERRED or IMMEDIATE.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    for pragma in (
        "journal_mode=WAL",
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
        "synchronous=NORMAL",
        # 16 MB instead of 2 MB: a large first scan otherwise re-reads its indexes from the OS every batch
        # (measured: 12% of the CPU of a 200,000-message scan).
        "cache_size=-16384",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("followupd_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _prepare_sqlite_file(url: URL) -> None:
    """Create the database file 0600 in a 0700 directory before SQLite creates it with the umask's mode."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise DatabaseError(
            f"cannot create database file {path}: {exc.strerror}",
            hint="Check that the directory is writable, or set [database] url in the config.",
        ) from exc
    if path.stat().st_mode & 0o077:
        log.warning("database %s is readable by other users; run `chmod 600 %s`", path, path)


def _translate(exc: OperationalError, where: str) -> DatabaseError:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    if "database or disk is full" in text or "No space left" in text:
        return DatabaseError(
            f"the disk holding {where} is full; nothing was changed",
            hint="Free some space; followupd will carry on where it stopped.",
        )
    if "locked" in text:
        return DatabaseError(
            f"{where} stayed locked for {BUSY_TIMEOUT_MS // 1000} s; nothing was changed",
            hint="Another process holds a long write transaction; try again.",
        )
    return DatabaseError(f"database error on {where}: {text}")


__all__ = ["Database", "DatabaseError", "SchemaTooNewError"]
