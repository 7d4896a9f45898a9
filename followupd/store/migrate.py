"""Alembic, driven from code: upgrade on start, refuse a database newer than this code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from followupd.errors import DatabaseError, SchemaTooNewError

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
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except Exception as exc:  # Alembic raises many kinds; the transaction rolls back either way.
            raise DatabaseError(
                f"upgrading the database {db.safe_url} failed: {exc}",
                hint="Nothing was changed. Report this with `followupd -v db upgrade`.",
            ) from exc
