"""``followupd status``: the daemon's health, read from the database (works from any process)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from followupd.cli.app import App, emit_json, json_option, pass_app

if TYPE_CHECKING:
    from followupd.config import Config
    from followupd.store.status_repo import AccountHealth, StatusView


@click.command()
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the daemon's health: heartbeat, last scan and error per account, the draft queue, today's sends.

    The daemon is "running" while its heartbeat (written every 30 s) is fresh, "stale" when it stopped
    writing one without saying goodbye (crashed, killed or hung), "stopped" after a clean exit. On
    PostgreSQL, where several daemons (workers) may share the accounts, it also lists the live workers and
    which worker owns each account until when (by the database's clock), and the accounts nobody owns.

    \b
    Examples:
      followupd status
      followupd status --json | jq .daemon.state
    """
    from zoneinfo import ZoneInfo

    from followupd import instance
    from followupd.core.sending import day_start
    from followupd.store import status_repo

    config = app.config()
    now = app.now()
    db = app.db()
    with db.read() as session:
        view = status_repo.read_status(
            session,
            now=now,
            day_start=day_start(now, ZoneInfo(config.send.timezone)),
            shared=instance.shared(db),
        )
    accounts = _accounts(view, config)
    if as_json:
        emit_json(_as_json(view, accounts, config))
        return
    for line in _text(view, accounts, config, now):
        click.echo(line)


def _accounts(view: StatusView, config: Config) -> list[AccountHealth]:
    """Configured accounts first (in config order, never-scanned ones too), then others in the database."""
    from followupd.store.status_repo import AccountHealth

    known = {a.name: a for a in view.accounts}
    rows = [known.pop(a.name, AccountHealth(a.name, a.email, None, None, None)) for a in config.accounts]
    return rows + list(known.values())


def _as_json(view: StatusView, accounts: list[AccountHealth], config: Config) -> dict[str, Any]:
    worker = asdict(view.worker) if view.worker is not None else None
    return {
        "daemon": {
            "state": "running" if view.shared and view.workers else view.daemon,
            "heartbeat_age_seconds": view.heartbeat_age.total_seconds() if view.heartbeat_age else None,
            "worker": worker,
        },
        "accounts": [{**asdict(a), "failing": a.failing} for a in accounts],
        "drafts": view.drafts,
        "sent_today": view.sent_today,
        "daily_cap": config.send.daily_cap,
        **(_ownership_json(view, config) if view.shared else {}),
    }


def _ownership_json(view: StatusView, config: Config) -> dict[str, Any]:
    """``workers``: the live ones, each with the accounts it owns; ``owners``: every account's owner."""
    configured = {a.name for a in config.accounts}
    owned: dict[str, list[str]] = {}
    for item in view.owners:
        if item.owner is not None and not item.expired:
            owned.setdefault(item.owner, []).append(item.name)
    return {
        "workers": [{**asdict(w), "accounts": owned.get(w.id, [])} for w in view.workers],
        "owners": [asdict(item) for item in view.owners if item.name in configured],
        "unowned": [
            item.name
            for item in view.owners
            if item.name in configured and (item.owner is None or item.expired)
        ]
        + sorted(configured - {item.name for item in view.owners}),
    }


def _text(view: StatusView, accounts: list[AccountHealth], config: Config, now: datetime) -> list[str]:
    alone = len(view.workers) == 1 and view.worker is not None and view.workers[0].id == view.worker.id
    if view.shared and view.workers and not alone:  # several workers: the latest one is not "the daemon"
        lines = [f"daemon:     running: {len(view.workers)} workers sharing the accounts (below)"]
    else:
        lines = [f"daemon:     {_daemon_line(view, now)}"]
        if view.worker is not None and view.worker.status:
            lines.append(f"            {view.worker.status}")
    width = max((len(a.name) for a in accounts), default=0)
    for index, account in enumerate(accounts):
        label = "accounts:   " if index == 0 else " " * 12
        scanned = f"last scan {_when(account.last_scan_at, now)}"
        state = "ok"
        if account.failing and account.last_error_at is not None:
            state = f"FAILING since {_when(account.last_error_at, now)}: {_first_line(account.last_error)}"
        lines.append(f"{label}{account.name:<{width}}  {scanned}  {state}")
    if not accounts:
        lines.append("accounts:   none configured")
    if view.shared:
        lines += _ownership_text(view, accounts)
    counts = ", ".join(f"{state} {n}" for state, n in view.drafts.items() if n) or "none"
    lines.append(f"drafts:     {counts}")
    lines.append(f"sent today: {view.sent_today} (daily cap {config.send.daily_cap})")
    return lines


def _ownership_text(view: StatusView, accounts: list[AccountHealth]) -> list[str]:
    lines = []
    for index, worker in enumerate(view.workers):
        label = "workers:    " if index == 0 else " " * 12
        alive = f"alive until {worker.lease_until:%H:%M:%S} UTC"
        lines.append(f"{label}{worker.id} (pid {worker.pid} on {worker.host}), {alive}")
    if not view.workers:
        lines.append("workers:    none alive")
    leases = {item.name: item for item in view.owners}
    width = max((len(a.name) for a in accounts), default=0)
    for index, account in enumerate(accounts):
        label = "owners:     " if index == 0 else " " * 12
        item = leases.get(account.name)
        if item is None or item.owner is None:
            state = "free (no worker owns it)"
        else:
            until = f"{item.lease_until:%Y-%m-%d %H:%M:%S} UTC" if item.lease_until else "?"
            state = f"{item.owner} until {until}" + (" (EXPIRED: free to take over)" if item.expired else "")
        lines.append(f"{label}{account.name:<{width}}  {state}")
    return lines


def _daemon_line(view: StatusView, now: datetime) -> str:
    worker = view.worker
    if worker is None:
        return "never ran on this database (start it with `followupd run`)"
    where = f"pid {worker.pid} on {worker.host}"
    if view.daemon == "stopped" and worker.stopped_at is not None:
        return f"stopped {_when(worker.stopped_at, now)} ({where})"
    beat = f"heartbeat {_ago(view.heartbeat_age)} ago" if view.heartbeat_age is not None else "no heartbeat"
    if view.daemon == "stale":
        return f"STALE: {where}, {beat}: it crashed, was killed or hangs"
    return f"running, {where}, up {_ago(now - worker.started_at)}, {beat}"


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({_ago(now - moment)} ago)"


def _ago(delta: timedelta | None) -> str:
    seconds = max(0, int(delta.total_seconds())) if delta is not None else 0
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _first_line(text: str | None) -> str:
    return (text or "").splitlines()[0] if text else ""
