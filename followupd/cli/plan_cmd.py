"""``followupd plan``: queue the follow-ups that are due, and supersede the ones that went stale."""

from __future__ import annotations

import click

from followupd.cli.app import App, emit_json, json_option, pass_app


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be queued or superseded; write nothing.")
@click.option("--seed", type=int, default=0, hidden=True, help="Seed of the due-date jitter.")
@json_option
@pass_app
def plan(app: App, dry_run: bool, seed: int, as_json: bool) -> None:
    """Queue due follow-up drafts for review and supersede stale ones.

    \b
    Example:
      followupd plan --dry-run
      followupd plan --json
    """
    from followupd.engine.plan import plan_once, summaries_as_dicts

    result = plan_once(app.db(), app.config(), now=app.now(), dry_run=dry_run, seed=seed)
    if as_json:
        emit_json(
            {
                "dry_run": result.dry_run,
                "queued": summaries_as_dicts(result.queued),
                "superseded": summaries_as_dicts(result.superseded_drafts),
                "skipped": result.skipped,
            }
        )
        return
    verb = "would queue" if dry_run else "queued"
    for draft in result.queued:
        when = draft.scheduled_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{verb}: {draft.contact}  {draft.reason}  {when}  {draft.subject}")
        click.echo(f"    why: {draft.why}")
    for gone in result.superseded_drafts:
        click.echo(
            f"{'would supersede' if dry_run else 'superseded'}: draft {gone.id} {gone.contact}: {gone.why}"
        )
    for reason in result.skipped:
        click.echo(f"skipped: {reason}", err=True)
    click.echo(f"{len(result.queued)} {verb}, {result.superseded} {'would be ' if dry_run else ''}superseded")
