"""``followupd run``: the daemon (or, with ``--once``, one full cycle)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from followupd.cli.app import App, pass_app

if TYPE_CHECKING:
    from followupd.config import AccountConfig
    from followupd.daemon.ownership import Holding
    from followupd.daemon.steps import Clock, CycleReport
    from followupd.sdnotify import Notifier
    from followupd.store.db import Database

log = logging.getLogger("followupd.daemon")


@click.command()
@click.option("--once", is_flag=True, help="Do one full cycle (scan, plan, send) and exit.")
@click.option(
    "--send-grace",
    type=click.FloatRange(0, 600),
    default=20.0,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM, how long a send in flight may take to finish.",
)
@click.option(
    "--send-interval",
    type=click.FloatRange(0.1, 3600),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How often due drafts are looked for (besides right after each plan).",
)
@pass_app
def run(app: App, once: bool, send_grace: float, send_interval: float) -> None:
    """Run the followupd service: watch every mailbox, plan follow-ups, send approved drafts.

    New mail is noticed at once where the IMAP server offers IDLE (INBOX); other folders, servers without IDLE
    and local Maildir/mbox accounts are polled every [daemon] poll_interval. The planner runs after new mail
    and every [daemon] plan_interval; approved drafts go out inside the send window.

    One daemon per SQLite database: a second one exits with code 8. On PostgreSQL several can run (on one
    machine or several): each account is scanned, planned and sent by exactly one of them at a time, through
    leases that a dead worker's peers take over after [daemon] lease; `--once` then does only the accounts
    no running daemon owns. SIGTERM or Ctrl-C stops it cleanly (a send in flight is allowed to finish),
    SIGHUP reloads the config (an invalid config is reported and the running one kept). Under systemd it
    reports readiness, status and watchdog pings (see docs/daemon.md).

    \b
    Examples:
      followupd run
      followupd -v run --once
      systemctl --user enable --now followupd
    """
    from followupd import instance, sdnotify
    from followupd.store.db import Database

    if app.verbose == 0:  # a service logs what it does; -v adds debug detail
        logging.getLogger("followupd").setLevel(logging.INFO)
    config = app.config()
    notifier = sdnotify.Notifier.from_environment()
    db = Database(config.database.url)
    try:
        # PostgreSQL: no lock to take, per-account leases instead (daemon/ownership.py); workers starting
        # together upgrade the schema one after the other (store/migrate.py).
        with instance.acquire(db):
            db.upgrade()
            if once:
                code = _once(app, db)
            else:
                code = _serve(app, db, notifier, send_grace=send_grace, send_interval=send_interval)
    finally:
        notifier.close()
        db.dispose()
    sys.exit(code)


def _once(app: App, db: Database) -> int:
    from followupd import instance
    from followupd.daemon.steps import make_clock, register, run_cycle, worker_id
    from followupd.store import status_repo

    clock = make_clock(app.fixed_now)
    wid = worker_id(clock())
    shared = instance.shared(db)
    register(db, wid, now=clock(), shared=shared)  # no liveness lease: daemons keep their shares
    report = _once_shared(app, db, wid, clock) if shared else run_cycle(db, app.config(), clock=clock)
    line = report.line()
    with db.write() as session:
        status_repo.stop_worker(session, wid, now=clock(), status=line)
    for name, exc in sorted(report.errors.items()):
        click.echo(f"{name}: FAILED: {exc}", err=True)
    click.echo(line, err=True)
    return report.exit_code


def _once_shared(app: App, db: Database, wid: str, clock: Clock) -> CycleReport:
    """``run --once`` on a shared database: the accounts no daemon owns, claimed for the cycle."""
    from followupd.daemon.steps import run_cycle

    config = app.config()
    with free_accounts(db, wid, config.accounts, config.daemon.lease) as held:
        return run_cycle(db, config, clock=clock, accounts=held.names)


@contextlib.contextmanager
def free_accounts(
    db: Database, worker: str, accounts: Sequence[AccountConfig], lease: timedelta, *, all_owned: str = ""
) -> Iterator[Holding]:
    """A one-shot command on a shared database: claim the ``accounts`` no worker owns for its duration (scan
    batches fenced) and say which were skipped and why. With ``all_owned``, refuse (exit 8) when workers own
    every one: "running workers (ids) <all_owned>"."""
    from followupd.daemon.ownership import Holding, make_fence
    from followupd.engine.batch import fenced
    from followupd.errors import AlreadyRunningError

    with Holding(db, worker, accounts, lease=lease) as held, fenced(make_fence(worker)):
        if all_owned and accounts and not held.names:
            owners = sorted({item.owner or "?" for item in held.skipped})
            raise AlreadyRunningError(
                f"running workers ({', '.join(owners)}) {all_owned}",
                hint="`followupd status` shows what each worker owns.",
            )
        for item in held.skipped:
            if item.owner is None:
                click.echo(f"{item.name}: skipped: another worker is claiming it right now", err=True)
            else:
                until = f"{item.lease_until:%Y-%m-%d %H:%M:%S} UTC" if item.lease_until else "?"
                click.echo(
                    f"{item.name}: skipped: owned by worker {item.owner} (lease until {until})", err=True
                )
        yield held


def _serve(app: App, db: Database, notifier: Notifier, *, send_grace: float, send_interval: float) -> int:
    from followupd.daemon import Daemon, DaemonOptions, make_clock

    daemon = Daemon(
        app.config(),
        db,
        clock=make_clock(app.fixed_now),
        notifier=notifier,
        options=DaemonOptions(send_grace=send_grace, send_interval=send_interval),
    )
    line = asyncio.run(daemon.run())
    log.info("%s", line)
    return 0
