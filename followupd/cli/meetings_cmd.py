"""``followupd meetings``: the meetings the scan learned from invitations and from plain-text arrangements."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from followupd.cli import table
from followupd.cli.app import App, emit_json, json_option, pass_app

if TYPE_CHECKING:
    from followupd.store.meetings_views import EvidenceView, MeetingView


@click.group()
def meetings() -> None:
    """Meetings found in your mail: calendar invitations (Google, Outlook, Teams, Apple, Zoom) and meetings
    agreed in words ("coffee Tuesday at 3?" - "Tuesday works!").

    A meeting that ended counts as being in touch with its people at its end time.

    \b
    Examples:
      followupd meetings list --upcoming
      followupd meetings show 12
    """


@meetings.command("list")
@click.option("--upcoming", is_flag=True, help="Only meetings that have not ended (and are not cancelled).")
@json_option
@pass_app
def list_(app: App, upcoming: bool, as_json: bool) -> None:
    """List meetings by start time (a recurring meeting at its current or next occurrence).

    \b
    Examples:
      followupd meetings list
      followupd meetings list --upcoming --json | jq '.[].subject'
    """
    from followupd.store import meetings_views

    with app.db().read() as session:
        views = meetings_views.list_meetings(session, now=app.now(), upcoming=upcoming)
    if as_json:
        emit_json([_json(v) for v in views])
        return
    now = app.now()
    table.table(
        ["ID", "WHEN", "", "WHAT", "FROM", "STATUS", "SURE", "WITH"],
        [
            [
                str(v.id),
                table.stamp(v.start_at),
                table.ago(v.start_at, now),
                v.subject or "(no subject)",
                v.source + (" (recurring)" if v.rrule else ""),
                v.status,
                f"{v.confidence:.0%}",
                ", ".join(a.email for a in v.attendees) or "-",
            ]
            for v in views
        ],
        flexible=(3, 7),
    )


@meetings.command("show")
@click.argument("meeting_id", metavar="ID", type=int)
@json_option
@pass_app
def show(app: App, meeting_id: int, as_json: bool) -> None:
    """Show one meeting: when, status, how sure and why, its people and their answers.

    For a meeting arranged in words, every message of the thread that said something about it is listed.

    \b
    Example:
      followupd meetings show 12
    """
    from followupd.store import meetings_views

    with app.db().read() as session:
        view = meetings_views.get_meeting(session, meeting_id)
        found = meetings_views.evidence(session, view)
        state = meetings_views.state_json(session, meeting_id)
    if as_json:
        emit_json({**_json(view), "evidence": [asdict(e) for e in found], "state": state})
        return
    _echo(view, found)


def _json(view: MeetingView) -> dict[str, Any]:
    data = asdict(view)
    data["attendees"] = [asdict(a) for a in view.attendees]
    return data


def _echo(view: MeetingView, found: list[EvidenceView]) -> None:
    when = f"{table.stamp(view.start_at)} - {table.stamp(view.end_at)}" + (
        " (all day)" if view.all_day else ""
    )
    lines = [
        ("subject", view.subject or "(no subject)"),
        ("when", when),
        ("repeats", view.rrule or "-"),
        ("status", view.status),
        ("source", view.source),
        ("confidence", f"{view.confidence:.0%}"),
        ("why", view.reason or "-"),
        ("organizer", view.organizer or "-"),
        ("counts", "yes: its people count as met" if view.counts else "no"),
        ("last ended", table.stamp(view.last_end_at)),
        ("uid", view.uid),
    ]
    for key, value in lines:
        click.echo(f"{key:>10}: {value}")
    click.echo(f"{'people':>10}:" + ("" if view.attendees else " -"))
    for person in view.attendees:
        name = f" ({person.name})" if person.name else ""
        click.echo(f"{'':>12}{person.email}{name}  {person.partstat.lower()}")
    if found:
        click.echo(f"{'evidence':>10}:")
        for item in found:
            who = "you" if item.from_user else "they"
            click.echo(f"{'':>12}{table.stamp(item.sent_at)}  {who}: {item.kind} - {item.reason}")
