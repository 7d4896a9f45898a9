"""``followupd demo``: see the whole pipeline work on a sample mailbox, touching nothing of the user's."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from followupd.cli import table
from followupd.cli.app import emit_json, json_option

if TYPE_CHECKING:
    from followupd.demo.run import DemoResult, MeetingSeen, Sent

WIDTH = 110


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run in this new (or empty) directory instead of a temporary one.",
)
@click.option("--clean", is_flag=True, help="Delete the demo's directory at the end.")
@click.option("--no-send", is_flag=True, help="Stop after planning: approve and send nothing.")
@json_option
def demo(directory: Path | None, clean: bool, no_send: bool, as_json: bool) -> None:
    """Run followupd on a sample mailbox: scan, meetings, plan, review and the outbox.

    The sample is a year of a freelance designer's mail, shipped with followupd: clients, a mentor, people
    met at a conference, a thread waiting for an answer, meetings by invitation and by "coffee next
    Tuesday?", newsletters, notifications and a mailing list. The demo copies it into a directory of its
    own with its own config, database and outbox, fixes the clock, and runs the real pipeline: who the
    people are, which meetings happened, which follow-ups are due. Two drafts get their offer filled in
    and approved, as you would at review, and go to the outbox (.eml files; nothing is sent). Your config,
    your data directories and the network are never touched.

    \b
    Examples:
      followupd demo
      followupd demo --dir /tmp/fu-demo && FOLLOWUPD_CONFIG=/tmp/fu-demo/config.toml followupd review
      followupd demo --json --clean | jq '.drafts[].reason'
    """
    from followupd.demo import run

    where = run.make_directory(directory)
    try:
        result = run.run(where, send=not no_send)
    except BaseException:
        if directory is None:
            shutil.rmtree(where, ignore_errors=True)
        raise
    if clean:
        shutil.rmtree(where, ignore_errors=True)
    if as_json:
        emit_json(_as_json(result, cleaned=clean))
    else:
        _show(result, cleaned=clean)


def _as_json(result: DemoResult, *, cleaned: bool) -> dict[str, Any]:
    from followupd.engine.plan import summaries_as_dicts
    from followupd.store.drafts_repo import as_dict

    return {
        "directory": str(result.directory),
        "config": str(result.config_path),
        "kept": not cleaned,
        "now": result.now,
        "messages": result.messages,
        "contacts": [
            {"email": c.email, "name": c.name, "owes_reply": c.owes_reply, "last_touch_at": c.last_touch_at}
            for c in result.contacts
        ],
        "excluded": [{"email": e.email, "reason": e.reason} for e in result.excluded],
        "meetings": [asdict(m) for m in result.meetings],
        "queued": summaries_as_dicts(result.plan.queued),
        "sent": [{**asdict(s), "path": str(s.path) if s.path else None} for s in result.sent],
        "drafts": [as_dict(d) for d in result.drafts],
        "notes": result.notes,
    }


def _show(result: DemoResult, *, cleaned: bool) -> None:
    from followupd.demo import sample

    echo = click.echo
    echo(f"followupd demo: the real pipeline on a sample mailbox, in {result.directory}")
    echo(f"Nothing of yours is read or changed. The clock is fixed at {result.now:%a %Y-%m-%d %H:%M} UTC.")
    echo(f"\n1. Scan: {result.messages} messages of {sample.ROBIN.name} <{sample.ROBIN.email}>, a designer.")
    echo(f"\n   {len(result.contacts)} contacts, the real people:")
    rows = [
        [
            f"{c.name} <{c.email}>" if c.name else c.email,
            f"last exchange {c.last_touch_at:%Y-%m-%d}" if c.last_touch_at else "",
            "you owe a reply" if c.owes_reply else "",
        ]
        for c in result.contacts
    ]
    _table(("CONTACT", "WHEN", ""), rows)
    echo(f"\n   {len(result.excluded)} addresses left out (robots, lists, mail you never answered):")
    _table(("ADDRESS", "WHY"), [[e.email, e.reason] for e in result.excluded])
    _show_meetings(result.meetings)
    queued = len(result.plan.queued)
    echo(f"\n3. Plan: {queued} follow-up drafts queued, each leading with something to give.")
    rows = [[str(q.id), q.reason, q.contact, q.subject, ",".join(q.lint) or "ok"] for q in result.plan.queued]
    _table(("ID", "REASON", "TO", "SUBJECT", "GIVE-FIRST CHECK"), rows, flexible=(3,))
    echo("   (empty-slot: the [what I can offer: ...] slot waits for you to fill it in at review)")
    _show_sent(result.sent)
    echo("\n5. The draft queue now:")
    rows = [[str(d.id), d.state, d.reason, d.contact, d.subject] for d in result.drafts]
    _table(("ID", "STATE", "REASON", "TO", "SUBJECT"), rows, flexible=(4,))
    for note in result.notes:
        echo(f"\nNote: {note}")
    _show_next(result, cleaned=cleaned)


def _show_meetings(meetings: Sequence[MeetingSeen]) -> None:
    click.echo(f"\n2. Meetings: {len(meetings)} found in invitations and in plain words.")
    rows = [
        [f"{m.start_at:%Y-%m-%d %H:%M} UTC", m.subject, m.source, m.status, ", ".join(m.people)]
        for m in meetings
    ]
    if rows:
        _table(("WHEN", "WHAT", "FROM", "STATUS", "WITH"), rows, flexible=(1,))


def _show_sent(sent: Sequence[Sent]) -> None:
    if not sent:
        click.echo("\n4. Review and send: skipped.")
        return
    click.echo(
        f"\n4. Review and send: the demo filled in the offer of {len(sent)} draft(s) and approved them, as"
    )
    click.echo("   you would at review; the outbox transport wrote what SMTP would have sent:")
    for s in sent:
        where = s.path if s.path is not None else s.detail
        click.echo(f"     #{s.draft_id} {s.reason} to {s.to}: {s.state} -> {where}")


def _show_next(result: DemoResult, *, cleaned: bool) -> None:
    echo = click.echo
    if cleaned:
        echo(f"\nThe demo's directory {result.directory} was deleted (--clean).")
        echo("Set up your own mailbox with: followupd init")
        return
    config = shlex.quote(str(result.config_path))
    first = next((d.id for d in result.drafts if d.state == "queued"), 1)
    echo("\nReview the drafts yourself (with the demo's own config; yours is not touched):")
    echo(f"  export FOLLOWUPD_CONFIG={config}")
    echo("  followupd drafts list            # the queue")
    echo(f"  followupd drafts show {first:<10} # one draft: why now, the text, the give-first check")
    echo("  followupd review                 # approve, edit, skip or snooze, one at a time")
    echo("  followupd send                   # approved drafts go to the demo's outbox, never out")
    echo(f"Remove the demo with: rm -r {shlex.quote(str(result.directory))}")
    echo("Set up your own mailbox with: followupd init")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, flexible: Sequence[int] = ()) -> None:
    width = max(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    for line in table.aligned(headers, rows, width=width - 5, flexible=flexible):
        click.echo(f"     {line}".rstrip())
