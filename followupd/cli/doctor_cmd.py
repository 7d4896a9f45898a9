"""``followupd doctor``: check the installation end to end and say what to fix."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from followupd.cli.app import App, emit_json, json_option, pass_app

if TYPE_CHECKING:
    from followupd.doctor import Check


@click.command()
@json_option
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check the config, file permissions, the database, and every account's IMAP and SMTP login.

    One line per check with OK, WARN or FAIL; under each WARN or FAIL, what to do about it. The mail
    checks log in and look for INBOX and Sent (by SPECIAL-USE), and on SMTP go as far as AUTH and QUIT:
    nothing is ever sent. Passwords never cross unencrypted: STARTTLS is required when configured, and a
    server that does not offer it fails the check before any password is sent. Exits 1 if any check
    failed.

    \b
    Examples:
      followupd doctor
      followupd --config ~/fu.toml doctor --json | jq '.checks[] | select(.status != "OK")'
    """
    from followupd import doctor as checks

    results = checks.run(app.config_path, os.environ)
    if as_json:
        emit_json(
            {
                "ok": not checks.failed(results),
                "checks": [
                    {"check": r.name, "status": str(r.status), "message": r.message, "fix": r.fix}
                    for r in results
                ],
            }
        )
    else:
        show(results)
    if checks.failed(results):
        raise click.exceptions.Exit(1)


def show(results: list[Check]) -> None:
    """Print the results, one line per check, each WARN/FAIL followed by its fix."""
    width = max((len(r.name) for r in results), default=0)
    for result in results:
        click.echo(f"{result.status:<4}  {result.name:<{width}}  {result.message}")
        if result.fix and result.status != "OK":
            click.echo(f"{'':<4}  {'':<{width}}  fix: {result.fix}")
    fails = sum(1 for r in results if r.status == "FAIL")
    warns = sum(1 for r in results if r.status == "WARN")
    if fails:
        click.echo(f"\n{fails} check(s) failed, {warns} warning(s). Fix the FAIL lines and run it again.")
    elif warns:
        click.echo(f"\nAll checks passed, {warns} warning(s).")
    else:
        click.echo("\nAll checks passed.")
