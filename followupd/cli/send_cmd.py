"""``followupd send``: send the approved follow-ups that are due now, then exit."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from followupd.cli.app import App, emit_json, json_option, pass_app

if TYPE_CHECKING:
    from followupd.engine.send import DraftOutcome, Resolution, SendReport


@click.command()
@click.option(
    "--dry-run", is_flag=True, help="Change nothing: show what would go now and why the others wait."
)
@json_option
@pass_app
def send(app: App, dry_run: bool, as_json: bool) -> None:
    """Send the approved follow-ups that are due now, then exit.

    Drafts go out inside the send window ([send] window, timezone), under the daily cap and the per-minute
    rate, and never after something new happened with the contact (then they are superseded). Each message
    is sent at most once: a draft whose fate is unknown (the connection dropped after the message went out,
    or followupd was killed while sending) is looked for in your Sent folder, never simply resent; if it is
    not there it stays UNKNOWN for you to decide. Exits 4 or 5 if an account could not send (login
    refused, no TLS...), 8 if the daemon is running (it sends by itself; --dry-run still works). On
    PostgreSQL, where several daemons may share the accounts, it sends for the accounts no daemon owns and
    names the others; 8 only when a daemon owns them all.

    \b
    Examples:
      followupd send --dry-run
      followupd send
      followupd send --json | jq '.drafts[] | select(.state == "sent")'
    """
    from followupd.engine.send import send_due

    config = app.config()
    db = app.db()
    recovered: list[int] = []
    resolved: list[Resolution] = []
    if dry_run:
        report = send_due(db, config, now=app.now(), dry_run=True)
    else:
        recovered, resolved, report = _send_now(app)
    if as_json:
        emit_json(_as_json(report, recovered, resolved))
    else:
        _print(report, resolved)
    if report.errors:
        sys.exit(max(exc.exit_code for exc in report.errors.values()))


def _send_now(app: App) -> tuple[list[int], list[Resolution], SendReport]:
    """Under the daemon's lock (a SENDING draft is only known to be orphaned when no one else sends):
    recover and settle interrupted sends, then send what is due."""
    from followupd import instance
    from followupd.engine.send import recover_sending, resolve_unknown, send_due
    from followupd.errors import AlreadyRunningError

    config, db, now = app.config(), app.db(), app.now()
    if instance.shared(db):
        return _send_shared(app)
    try:
        lock = instance.acquire(db)
    except AlreadyRunningError as exc:
        raise AlreadyRunningError(
            f"{exc.message}; it sends due drafts itself",
            hint="See what it will send with `followupd send --dry-run`, or stop it first.",
        ) from None
    with lock:
        recovered = recover_sending(db)
        resolved = resolve_unknown(db, config, now=now)
        report = send_due(db, config, now=now)
    return recovered, resolved, report


def _send_shared(app: App) -> tuple[list[int], list[Resolution], SendReport]:
    """On a shared database: claim the accounts no worker owns, settle and send for those, release them."""
    from followupd.cli.run_cmd import free_accounts
    from followupd.daemon.steps import worker_id
    from followupd.engine.send import recover_sending, resolve_unknown, send_due

    config, db, now = app.config(), app.db(), app.now()
    owned = "own every account; they send due drafts themselves (`followupd send --dry-run` shows what)"
    with free_accounts(db, worker_id(now), config.accounts, config.daemon.lease, all_owned=owned) as held:
        recovered = recover_sending(db, accounts=held.names)
        resolved = resolve_unknown(db, config, now=now, accounts=held.names)
        report = send_due(db, config, now=now, accounts=held.names)
    return recovered, resolved, report


def _as_json(report: SendReport, recovered: list[int], resolved: list[Resolution]) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "drafts": [asdict(d) for d in report.drafts],
        "recovered": recovered,
        "unknown": [asdict(r) for r in resolved],
        "errors": {name: str(exc) for name, exc in report.errors.items()},
    }


def _print(report: SendReport, resolved: list[Resolution]) -> None:
    for item in resolved:
        click.echo(f"draft {item.draft_id}: {item.state.upper()}: {item.reason}")
    for draft in report.drafts:
        click.echo(_line(draft, dry_run=report.dry_run))
    if not report.drafts:
        click.echo("No approved drafts.")
    elif report.dry_run:
        going = sum(1 for d in report.drafts if d.verdict == "send")
        click.echo(f"{going} would be sent now; {len(report.drafts) - going} not.")
    else:
        click.echo(f"{report.count('sent')} sent, {report.count('approved')} waiting.")
    for name, exc in report.errors.items():
        click.echo(f"{name}: FAILED: {exc}", err=True)


def _line(draft: DraftOutcome, *, dry_run: bool) -> str:
    if dry_run and draft.verdict in ("send", "supersede", "skip", "block"):
        label = f"would {draft.verdict}"
    elif draft.state != "approved":
        label = draft.state.upper()
    else:
        label = "not sent, will retry" if draft.verdict == "send" else "waits"
    when = f" (until {draft.not_before.isoformat(timespec='minutes')})" if draft.not_before else ""
    return f"draft {draft.draft_id} to {draft.to}: {label}: {draft.reason}{when}"
