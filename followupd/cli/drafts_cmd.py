"""``followupd drafts``: the follow-up drafts followupd queued."""

from __future__ import annotations

import sys
from dataclasses import asdict

import click

from followupd.cli.app import App, emit_json, json_option, pass_app
from followupd.store.models import DraftState


@click.group()
def drafts() -> None:
    """The follow-up drafts: queued for review, approved, sent, superseded...

    \b
    Examples:
      followupd drafts list
      followupd drafts list --state queued --json
    """


@drafts.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in DraftState]),
    help="Only drafts in this state (repeatable).",
)
@click.option("--contact", metavar="ADDR", help="Only drafts to the contact with this address.")
@click.option("--reason", help="Only drafts for this reason (new_contact, keep_in_touch, ...).")
@json_option
@pass_app
def list_(app: App, states: tuple[str, ...], contact: str | None, reason: str | None, as_json: bool) -> None:
    """List drafts, soonest scheduled first.

    \b
    Example:
      followupd drafts list --state queued --state approved
      followupd drafts list --contact ada@example.org --json
    """
    from followupd.store import drafts_repo

    with app.db().read() as session:
        views = drafts_repo.list_drafts(session, states=states or None, contact=contact, reason=reason)
    if as_json:
        emit_json([asdict(v) for v in views])
        return
    rows = [
        [
            str(v.id),
            v.state,
            v.reason,
            v.scheduled_at.strftime("%Y-%m-%d %H:%M"),
            v.contact,
            v.subject,
            ",".join(item["code"] for item in v.lint),
        ]
        for v in views
    ]
    _table(["ID", "STATE", "REASON", "SCHEDULED", "TO", "SUBJECT", "LINT"], rows)


def _table(headers: list[str], rows: list[list[str]]) -> None:
    """Aligned columns on a terminal; tab-separated when piped, so `cut` and `awk` work."""
    if not sys.stdout.isatty():
        for row in rows:
            click.echo("\t".join(cell.replace("\t", " ") for cell in row))
        return
    widths = [min(40, max([len(h), *(len(r[i]) for r in rows)])) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(c[:w].ljust(w) for c, w in zip(row, widths, strict=True)))
