"""``followupd review``: go through the drafts that need review, one key per decision.

Also home of what review and ``followupd drafts show``/``edit`` share: the draft as people read it (why now,
lint, the message as it would be sent) and the editor round trip. The text goes to a private temporary file,
$VISUAL/$EDITOR opens it, and the result is saved with a compare-and-set on the version the user started
from. The file is removed only once the text is safely in the database (saved, or kept as an invalid edit);
if the draft changed meanwhile the file stays and the message says where.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from followupd.cli import drafts_cmd, table
from followupd.cli.app import App, pass_app
from followupd.errors import ConflictError, FollowupdError, UsageError

if TYPE_CHECKING:
    from email.message import EmailMessage

    from followupd.store.drafts_repo import DraftView

KEYS = "[a]pprove  [e]dit  [s]kip  s[n]ooze  ne[x]t  [q]uit"
SNOOZE_EXAMPLES = "tomorrow 9am, next monday, in 2 weeks, 2026-12-01"


@click.command()
@pass_app
def review(app: App) -> None:
    """Go through the drafts waiting for review, one at a time, one key per decision.

    For each draft: who, why now, the give-first lint warnings and the message; then [a]pprove, [e]dit
    (in $VISUAL/$EDITOR), [s]kip, s[n]ooze (asks until when), ne[x]t (leave it for later) or [q]uit.
    Ends with a summary. Needs a terminal: in scripts use `followupd drafts list` and
    `followupd drafts approve/skip/snooze`.

    \b
    Example:
      followupd review
    """
    if not sys.stdin.isatty():
        raise UsageError(
            "followupd review is interactive and needs a terminal",
            hint="In a script, use `followupd drafts list` and `followupd drafts approve ID...`"
            " (or skip / snooze).",
        )
    views = drafts_cmd.load_views(app, states=("queued",))
    if not views:
        click.echo("Nothing to review. `followupd drafts list` shows every draft.")
        return
    tally: Counter[str] = Counter()
    try:
        for index, view in enumerate(views):
            if _review_one(app, view, index, len(views), tally) == "quit":
                break
    except (KeyboardInterrupt, EOFError, click.exceptions.Abort):  # Ctrl-C / Ctrl-D: stop, still summarise
        click.echo()
    tally["left"] = len(views) - sum(tally[k] for k in ("approved", "skipped", "snoozed", "changed"))
    click.echo(summary(tally))


def summary(tally: Counter[str]) -> str:
    """``approved 2, skipped 1, snoozed 1, left 3`` (plus drafts that changed meanwhile, if any)."""
    text = ", ".join(f"{key} {tally[key]}" for key in ("approved", "skipped", "snoozed", "left"))
    return text + (f", changed meanwhile {tally['changed']}" if tally["changed"] else "")


def _review_one(app: App, view: DraftView, index: int, total: int, tally: Counter[str]) -> str:
    """One draft: show it, read keys until a decision; returns the outcome's tally key, or "quit"."""
    from followupd.engine import review as engine

    db, now = app.db(), app.now()
    while True:
        _show(app, view, index, total)
        key = _key()
        try:
            if key == "a":
                engine.approve(db, view.id, now=now, version=view.version)
                return _count(tally, "approved", f"draft {view.id} approved")
            if key == "s":
                engine.skip(db, view.id, now=now, version=view.version)
                return _count(tally, "skipped", f"draft {view.id} skipped")
            if key == "n":
                until = _ask_until(app)
                if until is not None:
                    engine.snooze(db, view.id, until, now=now, version=view.version)
                    return _count(
                        tally, "snoozed", f"draft {view.id} snoozed until {until:%Y-%m-%d %H:%M} UTC"
                    )
            if key == "e":
                view = edit_draft(app, view, strict=False) or view
            if key in ("x", "q"):
                return "quit" if key == "q" else "left"
        except ConflictError as exc:
            click.secho(str(exc), fg="red")
            return _count(tally, "changed", "")
        except UsageError as exc:  # e.g. approving with an invalid edit pending: say so, stay on the draft
            click.secho(str(exc), fg="red")


def _count(tally: Counter[str], key: str, message: str) -> str:
    tally[key] += 1
    if message:
        click.echo(message)
    return key


def _show(app: App, view: DraftView, index: int, total: int) -> None:
    click.echo()
    title = f"── {index + 1} of {total} "
    click.secho(title + "─" * (60 - len(title)), dim=True)
    message, problem = build(view, app.now())
    for line in describe(view, app.now(), message=message, problem=problem):
        click.echo(line)


def _key() -> str:
    """One key press, lower-cased; an unknown key asks again."""
    while True:
        click.echo(f"{KEYS} ? ", nl=False)
        key = click.getchar().lower()
        click.echo(key if key.isprintable() else "")
        if key in "aesnxq" and key:
            return key
        click.echo("Press a, e, s, n, x or q.")


def _ask_until(app: App) -> datetime | None:
    """Until when to snooze, asked until it can be read (empty answer: back to the draft)."""
    while True:
        text = click.prompt(f"Snooze until ({SNOOZE_EXAMPLES})", default="", show_default=False)
        if not text.strip():
            return None
        try:
            until = drafts_cmd.parse_until(app, text)
        except UsageError as exc:
            click.secho(str(exc), fg="red")
            continue
        if until <= app.now():
            click.secho("That is not in the future.", fg="red")
            continue
        return until


# --- showing a draft ----------------------------------------------------------------------------------------


def build(view: DraftView, now: datetime) -> tuple[EmailMessage | None, str | None]:
    """The message as the sender would build it (Date: now), or None and why it cannot be built."""
    from email.utils import getaddresses

    from followupd.core.compose import build_message
    from followupd.core.types import Address

    try:
        (from_name, from_email), *_ = getaddresses([view.from_addr])
        message = build_message(
            from_addr=Address(from_email, from_name),
            to=Address(view.contact, view.name),
            subject=view.subject,
            body=view.body,
            message_id=view.message_id,
            date=now,
            in_reply_to=view.in_reply_to,
            references=(view.references or "").split(),
        )
    except ValueError as exc:
        return None, str(exc)
    return message, None


def describe(
    view: DraftView, now: datetime, *, message: EmailMessage | None, problem: str | None = None
) -> list[str]:
    """The draft as people read it: a header block, why now, lint warnings, then the message itself."""
    lines = [
        click.style(f"Draft {view.id}", bold=True)
        + f" · {view.state} · {view.reason} · to {drafts_cmd.who(view)}",
        f"Why now:  {view.why or view.reason}",
        f"Goes:     {drafts_cmd.goes(view, now)} (scheduled {table.stamp(view.scheduled_at)})",
    ]
    if view.note or view.last_error:
        lines.append(f"Note:     {view.note or view.last_error}")
    lines += lint_lines(view)
    if view.invalid_edit is not None:
        lines.append(
            click.style("! an edit was not saved (it is invalid); ", fg="red")
            + f"`followupd drafts edit {view.id}` re-opens it"
        )
    lines.append("─" * 60)
    if message is None:
        lines.append(f"(cannot build the message: {problem})")
        return lines
    lines += [f"{name}: {value}" for name, value in message.items()]
    lines += ["", str(message.get_content()).rstrip("\n"), "─" * 60]
    return lines


def lint_lines(view: DraftView) -> list[str]:
    """One line per give-first warning, or a line saying there is none."""
    if not view.lint:
        return ["Lint:     " + click.style("no warnings", fg="green")]
    return ["Lint:"] + [
        "  " + click.style(f"! {item['code']}", fg="yellow") + f": {item['message']}" for item in view.lint
    ]


# --- the editor round trip ----------------------------------------------------------------------------------


def edit_draft(app: App, view: DraftView, *, strict: bool) -> DraftView | None:
    """Open the draft in the user's editor and save the result; returns the draft as it is afterwards.

    An invalid edit is kept in the database (and reported); with ``strict`` (``drafts edit``) that ends in a
    UsageError so the exit code says the text was not applied. A draft that changed meanwhile raises
    ConflictError, with the edited text left in a file.
    """
    from followupd.engine import review as engine

    if view.state not in {s.value for s in engine.REVIEWABLE}:
        raise engine_conflict(app, view.id)
    original = engine.editable_text(view)
    if view.invalid_edit is not None:
        problems = engine.parse_edit(view.invalid_edit)[2]
        click.secho(
            "Your last edit was not saved: " + "; ".join(problems) + ". Opening it again.", fg="yellow"
        )
    path = _write_private(view.id, original)
    click.edit(filename=str(path))
    text = path.read_text(encoding="utf-8")
    if text == original and view.invalid_edit is None:
        path.unlink()
        click.echo(f"draft {view.id}: no change")
        return view
    rules = app.config().lint.core_rules()
    try:
        outcome = engine.save_edit(app.db(), view.id, text, version=view.version, now=app.now(), rules=rules)
    except ConflictError as exc:
        raise ConflictError(f"{exc.message}; your edited text is kept in {path}", hint=exc.hint) from None
    path.unlink()
    updated = drafts_cmd.get_view(app, view.id)
    if not outcome.saved:
        message = f"draft {view.id}: the edit was not saved: " + "; ".join(outcome.problems)
        hint = f"It is kept: `followupd drafts edit {view.id}` opens it again to fix."
        if strict:
            raise UsageError(message, hint=hint)
        click.secho(f"{message}\n{hint}", fg="red")
        return updated
    click.echo(f"draft {view.id}: saved")
    for line in lint_lines(updated):
        click.echo(line)
    return updated


def engine_conflict(app: App, draft_id: int) -> FollowupdError:
    """The ConflictError for a draft that can no longer be edited (sent, superseded, skipped...)."""
    from followupd.engine import review as engine
    from followupd.store.models import Draft

    with app.db().read() as session:
        draft = session.get(Draft, draft_id)
        assert draft is not None
        return engine.conflict(draft)


def _write_private(draft_id: int, text: str) -> Path:
    """The text in a new 0600 file (drafts are private mail), named so the editor shows what it is."""
    handle, name = tempfile.mkstemp(prefix=f"followupd-draft-{draft_id}-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(name)
