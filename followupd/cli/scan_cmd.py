"""``followupd scan``: one incremental pass over every account."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from followupd.cli.app import App, emit_json, json_option, pass_app

if TYPE_CHECKING:
    from followupd.config import Config
    from followupd.engine.scan import ScanReport


@click.command()
@click.option("--account", "only", metavar="NAME", help="Scan only this account.")
@json_option
@pass_app
def scan(app: App, only: str | None, as_json: bool) -> None:
    """Read new mail from every account and update contacts, threads and meetings.

    Incremental: unchanged folders are skipped by their STATUS (IMAP) or fingerprint (Maildir/mbox), so a
    re-run costs milliseconds. Exits 4 if any account failed (the others are still scanned).

    On PostgreSQL with running workers, only the accounts no worker owns are scanned (the workers scan theirs
    as mail arrives); the others are listed as skipped, and it exits 8 when the workers own them all.

    \b
    Examples:
      followupd scan
      followupd scan --account work --json
    """
    from followupd import instance
    from followupd.engine.scan import scan_once

    config = app.config()
    if only is not None:
        config.account(only)  # a clear error for an unknown name
    db = app.db()
    counter = _Counter(enabled=sys.stderr.isatty() and not as_json)
    if instance.shared(db):
        report = _scan_shared(app, config, only, counter)
    else:
        report = scan_once(db, config, now=app.now(), progress=counter, only=only)
    counter.done()
    if as_json:
        emit_json(
            {
                "accounts": [vars(s) for s in report.accounts],
                "errors": {name: str(exc) for name, exc in report.errors.items()},
            }
        )
    else:
        for stats in report.accounts:
            click.echo(stats.summary())
        for name, exc in report.errors.items():
            click.echo(f"{name}: FAILED: {exc}", err=True)
    if report.errors:
        sys.exit(max(exc.exit_code for exc in report.errors.values()))


def _scan_shared(app: App, config: Config, only: str | None, counter: _Counter) -> ScanReport:
    """PostgreSQL with workers: scan the accounts no worker owns, claimed (and fenced) for the scan; the
    workers scan theirs continuously, and two scans of one account would only trip over each other."""
    from followupd.cli.run_cmd import free_accounts
    from followupd.daemon.steps import worker_id
    from followupd.engine.scan import scan_once

    db, now = app.db(), app.now()
    wanted = [a for a in config.accounts if only is None or a.name == only]
    owned = f"own {'every account' if only is None else only}; they scan new mail themselves"
    with free_accounts(db, worker_id(now), wanted, config.daemon.lease, all_owned=owned) as held:
        mine = replace(config, accounts=tuple(held.accounts()))
        return scan_once(db, mine, now=now, progress=counter, only=only)


class _Counter:
    """A running message count on a terminal, for long first scans."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.count = 0

    def __call__(self, added: int) -> None:
        self.count += added
        if self.enabled:
            click.echo(f"\rscanned {self.count:,} messages", nl=False, err=True)

    def done(self) -> None:
        if self.enabled and self.count:
            click.echo("", err=True)
