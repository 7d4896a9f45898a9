"""What every command shares: the config, the database and the clock, each loaded once, when needed."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from followupd.errors import UsageError

if TYPE_CHECKING:
    from followupd.config import Config
    from followupd.store.db import Database


@dataclass
class App:
    """The state of one CLI invocation."""

    config_path: Path | None
    verbose: int = 0
    fixed_now: datetime | None = None
    _config: Config | None = field(default=None, repr=False)
    _db: Database | None = field(default=None, repr=False)

    def config(self) -> Config:
        """The validated config (warnings printed once to stderr)."""
        if self._config is None:
            from followupd import config as config_mod

            path = config_mod.find_config(self.config_path, os.environ)
            self._config = config_mod.load(path)
            for warning in self._config.warnings:
                click.echo(f"warning: {warning}", err=True)
        return self._config

    def db(self) -> Database:
        """The database, upgraded to this version's schema."""
        if self._db is None:
            from followupd.store.db import Database

            db = Database(self.config().database.url)
            db.upgrade()
            self._db = db
        return self._db

    def now(self) -> datetime:
        """The current time (aware UTC), or the hidden ``--now`` override."""
        return self.fixed_now or datetime.now(UTC)

    def close(self) -> None:
        """Release the database pool."""
        if self._db is not None:
            self._db.dispose()


def parse_now(text: str) -> datetime:
    """Read ``--now``: an ISO 8601 time; a time without an offset is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--now expects an ISO time such as 2026-03-01T09:00:00+00:00, got {text!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


pass_app = click.make_pass_decorator(App)


def json_option(func: Any) -> Any:
    """The shared ``--json`` flag: stable machine-readable output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (stable field names).")(func)


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON; datetimes become ISO 8601 strings."""
    # One write: json.dump streams many tiny chunks, which is slow on a pipe for large outputs.
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
