"""``followupd db``: database maintenance."""

from __future__ import annotations

import click

from followupd.cli.app import App, pass_app


@click.group()
def db() -> None:
    """Database maintenance.

    \b
    Example:
      followupd db upgrade
    """


@db.command("upgrade")
@pass_app
def upgrade(app: App) -> None:
    """Bring the database schema up to date (also done automatically on start). Never drops data.

    \b
    Example:
      followupd --config ~/fu.toml db upgrade
    """
    from followupd.store.db import Database
    from followupd.store.migrate import current_revision, head_revision

    database = Database(app.config().database.url)
    try:
        before = current_revision(database)
        database.upgrade()
        click.echo(f"{database.safe_url}: schema {before or 'empty'} -> {head_revision()}")
    finally:
        database.dispose()
