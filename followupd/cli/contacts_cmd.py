"""``followupd contacts``: the people followupd learned from your mail, and your settings for them."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from followupd.cli import table
from followupd.cli.app import App, emit_json, json_option, pass_app
from followupd.errors import UsageError

if TYPE_CHECKING:
    from followupd.config import AccountConfig
    from followupd.engine.contact_state import DueRow
    from followupd.store.contacts_repo import ContactView


@click.group()
def contacts() -> None:
    """The people in your mailbox.

    \b
    Examples:
      followupd contacts list
      followupd contacts due
      followupd contacts set ada@example.org --tier close --tag conference
      followupd contacts ignore newsletter-person@example.com
    """


@contacts.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list addresses that are not contacts, and why.")
@json_option
@pass_app
def list_(app: App, show_all: bool, as_json: bool) -> None:
    """List contacts, most recently in touch first.

    \b
    Examples:
      followupd contacts list
      followupd contacts list --json | jq '.[].email'
    """
    from followupd.store import contacts_repo

    with app.db().read() as session:
        views = contacts_repo.list_contacts(session)
        excluded = contacts_repo.list_excluded(session) if show_all else []
    if as_json:
        rows: list[dict[str, object]] = [asdict(v) for v in views]
        if show_all:
            rows += [{**asdict(e), "excluded": True} for e in excluded]
        emit_json(rows)
        return
    table.table(
        ["EMAIL", "NAME", "LAST IN", "LAST OUT", "STATUS", "TIER", "TAGS"],
        [
            [
                v.email,
                v.name,
                table.day(v.last_inbound_at),
                table.day(v.last_outbound_at),
                v.status + (" reply-owed" if v.owes_reply else ""),
                v.tier or "-",
                ",".join(v.tags) or "-",
            ]
            for v in views
        ],
        flexible=(1, 6),
    )
    if show_all:
        click.echo()
        table.table(["NOT A CONTACT", "NAME", "WHY"], [[e.email, e.name, e.reason] for e in excluded])


@contacts.command("show")
@click.argument("address")
@json_option
@pass_app
def show(app: App, address: str, as_json: bool) -> None:
    """Show one contact: addresses, times, status and your settings.

    \b
    Example:
      followupd contacts show ada@example.org
    """
    from followupd.store import contacts_repo

    with app.db().read() as session:
        view = contacts_repo.view(session, contacts_repo.find_contact(session, address))
    if as_json:
        emit_json(asdict(view))
        return
    _echo_view(view)


def _echo_view(view: ContactView) -> None:
    for key, value in asdict(view).items():
        if isinstance(value, tuple):
            text = ", ".join(value)
        elif isinstance(value, datetime):
            text = value.isoformat(timespec="minutes")
        else:
            text = "" if value is None else str(value)
        click.echo(f"{key:>17}: {text}")


@contacts.command("ignore")
@click.argument("addresses", nargs=-1, required=True)
@pass_app
def ignore(app: App, addresses: tuple[str, ...]) -> None:
    """Never draft for these contacts again (rescans keep them ignored).

    \b
    Example:
      followupd contacts ignore recruiter@example.com
    """
    _set_status(app, addresses, "ignored")


@contacts.command("unignore")
@click.argument("addresses", nargs=-1, required=True)
@pass_app
def unignore(app: App, addresses: tuple[str, ...]) -> None:
    """Undo ``ignore``.

    \b
    Example:
      followupd contacts unignore ada@example.org
    """
    _set_status(app, addresses, "active")


@contacts.command("mute")
@click.argument("address")
@click.argument("until", metavar="UNTIL", nargs=-1, required=True)
@pass_app
def mute(app: App, address: str, until: tuple[str, ...]) -> None:
    """No drafts for a contact until a time in words or a date ("forever": until unmuted).

    Live drafts are superseded at the next plan; the sender re-checks before every send.

    \b
    Examples:
      followupd contacts mute ada@example.org in 3 months
      followupd contacts mute ada@example.org 2026-12-01
    """
    from followupd.cli.drafts_cmd import parse_until
    from followupd.store import contacts_repo

    text = " ".join(until)
    when = None if text.strip().lower() in ("forever", "never") else parse_until(app, text)
    if when is not None and when <= app.now():
        raise UsageError(f"{table.stamp(when)} is not in the future")
    with app.db().write() as session:
        view = contacts_repo.mute(session, address, when)
    click.echo(f"{view.email}: muted " + (f"until {table.stamp(when)}" if when else "until unmuted"))


@contacts.command("unmute")
@click.argument("addresses", nargs=-1, required=True)
@pass_app
def unmute(app: App, addresses: tuple[str, ...]) -> None:
    """Undo ``mute``.

    \b
    Example:
      followupd contacts unmute ada@example.org
    """
    _set_status(app, addresses, "active")


def _set_status(app: App, addresses: tuple[str, ...], status: str) -> None:
    from followupd.store import contacts_repo
    from followupd.store.models import ContactStatus

    with app.db().write() as session:
        views = [contacts_repo.set_status(session, a, ContactStatus(status)) for a in addresses]
    for view in views:
        click.echo(f"{view.email}: {view.status}")


@contacts.command("set")
@click.argument("address")
@click.option("--tier", help="A tier from [cadence.tiers]; 'none' removes it.")
@click.option("--cadence", help="Own keep-in-touch interval such as 45d or 6w; 'none' removes it.")
@click.option("--tag", "tags", multiple=True, help="Add a tag (repeatable).")
@click.option("--untag", "untags", multiple=True, help="Remove a tag (repeatable).")
@click.option("--note", help="Add a line to the notes.")
@json_option
@pass_app
def set_(
    app: App,
    *,
    address: str,
    tier: str | None,
    cadence: str | None,
    tags: tuple[str, ...],
    untags: tuple[str, ...],
    note: str | None,
    as_json: bool,
) -> None:
    """Change your settings for a contact: tier, cadence, tags, notes.

    \b
    Examples:
      followupd contacts set ada@example.org --tier close --tag conference
      followupd contacts set ada@example.org --cadence 45d --note "prefers mornings"
      followupd contacts set ada@example.org --tier none --untag conference
    """
    from followupd.contacts_io import parse_cadence
    from followupd.store import contacts_repo

    if tier is None and cadence is None and not tags and not untags and not note:
        raise UsageError("nothing to set", hint="Give --tier, --cadence, --tag, --untag or --note.")
    clear_tier, clear_cadence = tier == "none", cadence == "none"
    tiers = app.config().cadence.tiers
    if tier is not None and not clear_tier and tier not in tiers:
        raise UsageError(f"unknown tier {tier!r}", hint=f"Configured tiers: {', '.join(tiers)} (or none).")
    bad = [t for t in tags if "," in t or not t.strip()]
    if bad:
        raise UsageError(f"a tag cannot be empty or contain a comma: {bad[0]!r}")
    days = parse_cadence(cadence) if cadence is not None and not clear_cadence else None
    with app.db().write() as session:
        view = contacts_repo.update_settings(
            session,
            address,
            tier=None if clear_tier else tier,
            clear_tier=clear_tier,
            cadence_days=days,
            clear_cadence=clear_cadence,
            add_tags=[t.strip() for t in tags],
            remove_tags=[t.strip() for t in untags],
            note=note,
        )
    if as_json:
        emit_json(asdict(view))
        return
    _echo_view(view)


@contacts.command("merge")
@click.argument("keep")
@click.argument("other")
@json_option
@pass_app
def merge(app: App, keep: str, other: str, as_json: bool) -> None:
    """Merge two contacts that are one person: OTHER's addresses and history join KEEP.

    KEEP's settings win; tags are united and notes appended; OTHER's drafts move over (live ones are
    superseded, so one person never gets two follow-ups).

    \b
    Example:
      followupd contacts merge ada@example.org ada.lovelace@work.example
    """
    from followupd.store import contacts_repo

    with app.db().write() as session:
        result = contacts_repo.merge(session, keep, other, now=app.now())
    if as_json:
        emit_json(asdict(result))
        return
    superseded = ", ".join(str(i) for i in result.drafts_superseded) or "none"
    click.echo(f"{result.contact.email}: now {', '.join(result.contact.addresses)}")
    click.echo(
        f"moved {', '.join(result.moved)}; drafts moved {result.drafts_moved}, superseded: {superseded}"
    )


@contacts.command("due")
@click.option("--days", default=14, show_default=True, help="How far ahead 'coming up' looks.")
@json_option
@pass_app
def due(app: App, days: int, as_json: bool) -> None:
    """Who is overdue, who is coming up, and who you owe a reply.

    The bar is the time since the last exchange against the contact's cadence: [#######---]  70%.

    \b
    Examples:
      followupd contacts due
      followupd contacts due --days 30 --json
    """
    from datetime import timedelta

    from followupd.engine.contact_state import who_is_due

    rows = who_is_due(app.db(), app.config(), now=app.now(), horizon=timedelta(days=days))
    if as_json:
        emit_json([asdict(r) for r in rows])
        return
    _due_table(rows, app.now(), days)


_SECTIONS = {
    "overdue": "Overdue",
    "upcoming": "Coming up in the next {days} days",
    "reply-owed": "You owe a reply",
}


def _due_table(rows: list[DueRow], now: datetime, days: int) -> None:
    if not table.is_terminal():
        table.table([], [[r.section, *_due_cells(r, now)] for r in rows])
        return
    if not rows:
        click.echo(f"Nobody is due in the next {days} days, and no reply is owed.")
    for section, title in _SECTIONS.items():
        part = [r for r in rows if r.section == section]
        if part:
            click.secho(f"\n{title.format(days=days)} ({len(part)})", bold=True)
            headers = ("WHO", "WHY", "DUE", "LAST", "CADENCE", "SINCE LAST TOUCH", "DRAFT")
            table.table(headers, [_due_cells(r, now) for r in part], flexible=(0,))


def _due_cells(r: DueRow, now: datetime) -> list[str]:
    from followupd.contacts_io import cadence_text

    who = f"{r.name} <{r.email}>" if r.name else r.email
    draft = f"#{r.draft_id} {r.draft_state}" if r.draft_id is not None else "-"
    last, why = table.ago(r.last_exchange_at, now), r.reason or "they wrote last"
    due_at = table.ago(r.due_at, now) if r.due_at is not None else "-"
    return [who, why, due_at, last, cadence_text(r.cadence_days), table.bar(r.elapsed), draft]


@contacts.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "vcard"]), default="csv", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@pass_app
def export(app: App, fmt: str, output: Path | None) -> None:
    """Export contacts as CSV (email,name,tier,tags,notes,cadence: importable again) or vCard 3.0.

    \b
    Examples:
      followupd contacts export > contacts.csv
      followupd contacts export --format vcard --output contacts.vcf
    """
    from followupd import contacts_io
    from followupd.store import contacts_repo

    with app.db().read() as session:
        views = contacts_repo.contacts_for_export(session)
    write = contacts_io.write_csv if fmt == "csv" else contacts_io.write_vcards
    if output is None:
        write(views, sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as file:
        count = write(views, file)
    click.echo(f"{count} contact(s) written to {output}", err=True)


@contacts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", help="The account to import into (needed when there are several).")
@click.option("--dry-run", is_flag=True, help="Check the file; write nothing.")
@json_option
@pass_app
def import_(app: App, file: Path, account: str | None, dry_run: bool, as_json: bool) -> None:
    """Import contacts from CSV with columns email,name,tier,tags,notes,cadence.

    Unknown addresses become contacts, known ones are updated (an empty cell leaves a setting as it is).
    Every row is checked first and every problem reported with its line number: nothing is written unless
    the whole file is valid.

    \b
    Examples:
      followupd contacts import people.csv
      followupd contacts import people.csv --dry-run
    """
    from followupd import contacts_io
    from followupd.store import contacts_repo, scan_repo

    config = app.config()
    target = _account(app, account)
    text = file.read_text(encoding="utf-8-sig")
    records = contacts_io.read_csv(text, tiers=config.cadence.tiers, own=target.addresses)
    db = app.db()
    with db.read() if dry_run else db.write() as session:
        account_id = contacts_repo.account_id(session, target.name)
        if account_id is None and not dry_run:
            account_id = scan_repo.ensure_account(session, target.name, target.email)
        problems = contacts_repo.import_problems(session, account_id, records)
        if problems:
            raise contacts_io.import_error(problems)
        if dry_run or account_id is None:
            updated = len(contacts_repo.known_contacts(session, account_id, [r.email for r in records]))
            created = len(records) - updated
        else:
            created, updated = contacts_repo.apply_import(session, account_id, records, now=app.now())
    if as_json:
        emit_json({"created": created, "updated": updated, "dry_run": dry_run})
        return
    prefix = "would import" if dry_run else "imported"
    click.echo(f"{prefix} {len(records)} contact(s): {created} new, {updated} updated")


def _account(app: App, name: str | None) -> AccountConfig:
    config = app.config()
    if name is not None:
        return config.account(name)
    if len(config.accounts) != 1:
        names = ", ".join(a.name for a in config.accounts) or "none configured"
        raise UsageError("choose the account to import into with --account", hint=f"Accounts: {names}.")
    return config.accounts[0]
