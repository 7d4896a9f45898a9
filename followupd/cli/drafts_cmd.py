"""``followupd drafts``: the follow-up drafts followupd queued, and what the user does with them.

``drafts list`` runs on the fast read path (see :mod:`followupd.store.drafts_repo`): nothing here imports
SQLAlchemy, Alembic, Jinja2 or dateparser at module level. Every change goes through
:mod:`followupd.engine.review` (one short compare-and-set transaction per draft).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from followupd.cli import table
from followupd.cli.app import App, emit_json, json_option, pass_app
from followupd.errors import ConflictError, FollowupdError, NotFoundError

if TYPE_CHECKING:
    from followupd.engine.review import Changed
    from followupd.store.drafts_repo import DraftView

# The values of followupd.store.models.DraftState (a test keeps them equal; importing the models here would
# cost the fast path SQLAlchemy's start-up).
STATES = ("queued", "approved", "snoozed", "sending", "sent", "skipped", "superseded", "failed", "unknown")
PIPED_COLUMNS = ("ID", "STATE", "REASON", "SCHEDULED", "TO", "SUBJECT", "LINT")


@click.group()
def drafts() -> None:
    """The follow-up drafts: queued for review, approved, snoozed, sent, superseded...

    \b
    Examples:
      followupd drafts list
      followupd drafts show 12
      followupd drafts approve 12 14
      followupd drafts snooze 15 next monday
    """


@drafts.command("list")
@click.option(
    "--state", "states", multiple=True, type=click.Choice(STATES), help="Only this state (repeatable)."
)
@click.option("--contact", metavar="ADDR", help="Only drafts to the contact with this address.")
@click.option("--reason", help="Only drafts for this reason (new_contact, keep_in_touch, ...).")
@json_option
@pass_app
def list_(app: App, states: tuple[str, ...], contact: str | None, reason: str | None, as_json: bool) -> None:
    """List drafts, soonest first: who, why now, when it would go, lint warnings.

    Snoozed drafts whose time has come are queued again first. On a terminal the table fits its width;
    piped, each draft is one tab-separated line: ID, STATE, REASON, SCHEDULED, TO, SUBJECT, LINT.

    \b
    Examples:
      followupd drafts list --state queued --state approved
      followupd drafts list --contact ada@example.org --json
      followupd drafts list | cut -f1,5
    """
    now = app.now()
    views = load_views(app, states=states, contact=contact, reason=reason)
    if as_json:
        _emit_json_buffered(_as_dicts(views))
        return
    if not table.is_terminal():
        table.table(PIPED_COLUMNS, [_piped_row(v) for v in views])
        return
    if not views:
        click.echo(
            "No drafts." + ("" if states or contact or reason else " Run `followupd plan` to queue some.")
        )
        return
    headers = ("ID", "STATE", "WHO", "WHY NOW", "GOES", "LINT", "SUBJECT")
    table.table(headers, [_terminal_row(v, now) for v in views], flexible=(2, 3, 6))
    counts = Counter(v.state for v in views)
    summary = ", ".join(f"{n} {state}" for state, n in counts.most_common())
    hint = "; review them with `followupd review`" if counts["queued"] else ""
    click.echo(f"\n{len(views)} draft(s): {summary}{hint}")


def _as_dicts(views: list[DraftView]) -> list[dict[str, Any]]:
    """The views as ``--json`` dicts (see :func:`followupd.store.drafts_repo.as_dict`)."""
    from followupd.store.drafts_repo import as_dict

    return [as_dict(v) for v in views]


def _emit_json_buffered(value: Any) -> None:
    """:func:`emit_json` (the one JSON format), written in one piece: ``json.dump`` straight to stdout writes
    ~100,000 fragments for a thousand drafts, which costs more than everything else ``drafts list`` does."""
    import io
    from contextlib import redirect_stdout

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        emit_json(value)
    sys.stdout.write(buffer.getvalue())


def load_views(
    app: App, *, states: Sequence[str] = (), contact: str | None = None, reason: str | None = None
) -> list[DraftView]:
    """The drafts to list, after waking snoozed drafts whose time has come. Uses the fast read path when the
    database allows it (a current SQLite schema, nothing to wake)."""
    from followupd.store import drafts_repo

    now = app.now()
    reader = drafts_repo.fast_reader(app.config().database.url)
    if reader is not None:
        with closing(reader):
            views = drafts_repo.fast_list(reader, now=now, states=states, contact=contact, reason=reason)
        if views is not None:
            return views
    from followupd.engine.review import wake_due

    db = app.db()
    wake_due(db, now)
    with db.read() as session:
        return drafts_repo.list_drafts(session, states=states or None, contact=contact, reason=reason)


def _piped_row(v: DraftView) -> list[str]:
    lint = ",".join(item["code"] for item in v.lint)
    return [str(v.id), v.state, v.reason, f"{v.scheduled_at:%Y-%m-%d %H:%M}", v.contact, v.subject, lint]


def _terminal_row(v: DraftView, now: datetime) -> list[str]:
    codes = [item["code"] for item in v.lint] + (["unsaved-edit"] if v.invalid_edit is not None else [])
    return [str(v.id), v.state, who(v), why_short(v), goes(v, now), ",".join(codes) or "-", v.subject]


def who(v: DraftView) -> str:
    """``Ada Lovelace <ada@example.com>``, or the address alone."""
    return f"{v.name} <{v.contact}>" if v.name else v.contact


def why_short(v: DraftView) -> str:
    """The reason and the rule that made it due (``keep_in_touch: tier close: every 30 days``)."""
    parts = v.why.split("; ")
    return f"{v.reason}: {parts[1]}" if len(parts) > 1 else (v.why or v.reason)


def goes(v: DraftView, now: datetime) -> str:
    """When the draft would go out, in words (the sender's window and caps may add a little)."""
    due = v.scheduled_at <= now
    if v.state == "queued":
        return "on approval" if due else table.ago(v.scheduled_at, now)
    if v.state == "approved":
        return "next send" if due else table.ago(v.scheduled_at, now)
    if v.state == "snoozed":
        return f"snoozed, wakes {table.ago(v.snoozed_until, now)}"
    if v.state == "sent":
        return f"sent {table.ago(v.sent_at, now)}"
    return "sending" if v.state == "sending" else "-"


# --- show -------------------------------------------------------------------------------------------------


@drafts.command("show")
@click.argument("draft_id", metavar="ID", type=int)
@json_option
@pass_app
def show(app: App, draft_id: int, as_json: bool) -> None:
    """Show one draft: why now, lint warnings, and the full message as it would be sent, headers included.

    \b
    Examples:
      followupd drafts show 12
      followupd drafts show 12 --json | jq .headers
    """
    from followupd.cli.review_cmd import build, describe

    view = get_view(app, draft_id)
    message, problem = build(view, app.now())
    if as_json:
        headers = dict(message.items()) if message is not None else {}
        emit_json({**asdict(view), "headers": headers, "build_error": problem})
        return
    for line in describe(view, app.now(), message=message, problem=problem):
        click.echo(line)


def get_view(app: App, draft_id: int) -> DraftView:
    """One draft, read in a short read transaction."""
    from followupd.store import drafts_repo

    with app.db().read() as session:
        return drafts_repo.get_draft(session, draft_id)


# --- edit -------------------------------------------------------------------------------------------------


@drafts.command("edit")
@click.argument("draft_id", metavar="ID", type=int)
@click.option("--discard", is_flag=True, help="Drop an edit that was kept because it was invalid.")
@pass_app
def edit(app: App, draft_id: int, discard: bool) -> None:
    """Edit a draft in $VISUAL / $EDITOR: a "Subject: ..." line, a blank line, then the message.

    The edit is checked (a subject, no other header lines, a body) and the give-first lint runs again. An
    invalid edit is kept and opened again next time, never lost; the draft keeps its last valid text.

    \b
    Examples:
      followupd drafts edit 12
      EDITOR=nano followupd drafts edit 12
      followupd drafts edit 12 --discard
    """
    if discard:
        from followupd.engine import review

        changed = review.discard_edit(app.db(), draft_id, now=app.now())
        click.echo(f"draft {draft_id}: " + ("unsaved edit dropped" if changed.changed else "no unsaved edit"))
        return
    from followupd.cli.review_cmd import edit_draft

    edit_draft(app, get_view(app, draft_id), strict=True)


# --- state changes ------------------------------------------------------------------------------------------


def _ids_argument(func: Any) -> Any:
    return click.argument("draft_ids", metavar="ID...", nargs=-1, required=True, type=int)(func)


@drafts.command("approve")
@_ids_argument
@json_option
@pass_app
def approve(app: App, draft_ids: tuple[int, ...], as_json: bool) -> None:
    """Approve drafts: they go out when due, inside the send window and caps.

    \b
    Example:
      followupd drafts approve 12 14 15
    """
    from followupd.engine import review

    apply_each(app, draft_ids, lambda i: review.approve(app.db(), i, now=app.now()), as_json=as_json)


@drafts.command("skip")
@_ids_argument
@click.option("--reason", default="", help="Why (kept with the draft).")
@json_option
@pass_app
def skip(app: App, draft_ids: tuple[int, ...], reason: str, as_json: bool) -> None:
    """Skip drafts: they are never sent, and the same follow-up is not queued again.

    \b
    Example:
      followupd drafts skip 12 --reason "saw her at the conference"
    """
    from followupd.engine import review

    now = app.now()
    apply_each(app, draft_ids, lambda i: review.skip(app.db(), i, now=now, reason=reason), as_json=as_json)


@drafts.command("snooze")
@click.argument("draft_id", metavar="ID", type=int)
@click.argument("until", metavar="UNTIL", nargs=-1, required=True)
@json_option
@pass_app
def snooze(app: App, draft_id: int, until: tuple[str, ...], as_json: bool) -> None:
    """Put a draft aside until a time in words or a date; then it is queued for review again.

    UNTIL is read in the [send] timezone: "tomorrow 9am", "next monday", "in 2 weeks", "2026-12-01".

    \b
    Examples:
      followupd drafts snooze 12 next monday
      followupd drafts snooze 12 2026-12-01
    """
    from followupd.engine import review

    when = parse_until(app, " ".join(until))
    apply_each(app, (draft_id,), lambda i: review.snooze(app.db(), i, when, now=app.now()), as_json=as_json)


@drafts.command("unsnooze")
@_ids_argument
@json_option
@pass_app
def unsnooze(app: App, draft_ids: tuple[int, ...], as_json: bool) -> None:
    """Queue snoozed drafts for review again now.

    \b
    Example:
      followupd drafts unsnooze 12
    """
    from followupd.engine import review

    apply_each(app, draft_ids, lambda i: review.unsnooze(app.db(), i, now=app.now()), as_json=as_json)


@drafts.command("send-now")
@click.argument("draft_id", metavar="ID", type=int)
@json_option
@pass_app
def send_now(app: App, draft_id: int, as_json: bool) -> None:
    """Approve a draft and make it due now: the sender sends it at its next run, still inside the send
    window, the daily cap and the last-moment checks.

    \b
    Example:
      followupd drafts send-now 12
    """
    from followupd.engine import review

    apply_each(app, (draft_id,), lambda i: review.send_now(app.db(), i, now=app.now()), as_json=as_json)


@drafts.command("mark-sent")
@_ids_argument
@json_option
@pass_app
def mark_sent(app: App, draft_ids: tuple[int, ...], as_json: bool) -> None:
    """Settle UNKNOWN drafts that did go out: the connection was lost after the message was handed over, and
    it is not in the Sent folder, so followupd cannot tell. Check with the recipient (or your mail client)
    first; it is then SENT and the contact's clock restarts.

    \b
    Example:
      followupd drafts list --state unknown
      followupd drafts mark-sent 17
    """
    from followupd.engine import review

    apply_each(app, draft_ids, lambda i: review.mark_sent(app.db(), i, now=app.now()), as_json=as_json)


@drafts.command("retry")
@_ids_argument
@json_option
@pass_app
def retry(app: App, draft_ids: tuple[int, ...], as_json: bool) -> None:
    """Send UNKNOWN or FAILED drafts again: approved and due now, with a fresh retry budget. The Message-ID is
    kept, so if an UNKNOWN one did go out the recipient's mail client shows a single message. Fix what made it
    fail first (`followupd drafts show ID` has the server's reply).

    \b
    Example:
      followupd drafts retry 17
    """
    from followupd.engine import review

    apply_each(app, draft_ids, lambda i: review.retry(app.db(), i, now=app.now()), as_json=as_json)


def parse_until(app: App, text: str) -> datetime:
    """UNTIL in words or as a date, in the [send] timezone, relative to now."""
    from zoneinfo import ZoneInfo

    from followupd.engine.review import parse_when

    return parse_when(text, now=app.now(), zone=ZoneInfo(app.config().send.timezone))


def apply_each(app: App, ids: Sequence[int], action: Callable[[int], Changed], *, as_json: bool) -> None:
    """Run ``action`` on each draft in its own transaction; report each; then raise the worst failure
    (a conflict before a missing draft before a usage error) so the exit code tells a script."""
    done: list[dict[str, Any]] = []
    failures: list[FollowupdError] = []
    for draft_id in dict.fromkeys(ids):
        try:
            changed = action(draft_id)
        except FollowupdError as exc:
            failures.append(exc)
            continue
        done.append(asdict(changed))
        if not as_json:
            verb = changed.state if changed.changed else f"already {changed.state}"
            click.echo(f"draft {draft_id}: {verb}")
    if as_json:
        emit_json(done)
    if failures:
        raise _worst(failures)


def _worst(failures: list[FollowupdError]) -> FollowupdError:
    if len(failures) == 1:
        return failures[0]
    rank = {ConflictError: 0, NotFoundError: 1}
    first = min(failures, key=lambda e: rank.get(type(e), 2))
    message = "\n".join(f.message for f in failures)
    return type(first)(message, hint=first.hint)
