"""Alembic, driven from code: upgrade on start, refuse a database newer than this code."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from followupd.errors import DatabaseError, SchemaTooNewError

UPGRADE_LOCK_KEY = int.from_bytes(hashlib.sha256(b"followupd upgrade").digest()[:8], "big", signed=True)
"""The PostgreSQL advisory lock that serialises concurrent schema upgrades (a stable signed 64-bit key)."""

if TYPE_CHECKING:
    from followupd.store.db import Database


def alembic_config(db: Database | None = None) -> AlembicConfig:
    """An Alembic config pointing at the migrations shipped in the package."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "followupd.store:migrations")
    if db is not None:
        cfg.set_main_option("sqlalchemy.url", db.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database) -> None:
    """Upgrade to head. A revision this code does not know means a newer followupd wrote the database."""
    script = ScriptDirectory.from_config(alembic_config())
    current = current_revision(db)
    if current is not None and current not in {r.revision for r in script.walk_revisions()}:
        raise SchemaTooNewError(
            f"the database {db.safe_url} was written by a newer followupd (schema {current});"
            " this version knows up to " + head_revision(),
            hint="Upgrade followupd. The database was left untouched.",
        )
    if current == script.get_current_head():
        return
    cfg = alembic_config(db)
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several workers may start together on a new database: one upgrades, the others wait here and
            # then find the schema at head (two concurrent CREATE TABLEs would fail). Released at commit.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_KEY})
            if MigrationContext.configure(conn).get_current_revision() == script.get_current_head():
                return
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except Exception as exc:  # Alembic raises many kinds; the transaction rolls back either way.
            raise DatabaseError(
                f"upgrading the database {db.safe_url} failed: {exc}",
                hint="Nothing was changed. Report this with `followupd -v db upgrade`.",
            ) from exc
