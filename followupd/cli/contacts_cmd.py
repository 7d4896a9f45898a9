"""``followupd contacts``: the people followupd learned from your mail."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime

import click

from followupd.cli.app import App, emit_json, json_option, pass_app


@click.group()
def contacts() -> None:
    """The people in your mailbox.

    \b
    Examples:
      followupd contacts list
      followupd contacts list --all --json
      followupd contacts show ada@example.org
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
    _table(
        ["EMAIL", "NAME", "LAST IN", "LAST OUT", "STATUS"],
        [
            [
                v.email,
                v.name,
                _day(v.last_inbound_at),
                _day(v.last_outbound_at),
                v.status + (" reply-owed" if v.owes_reply else ""),
            ]
            for v in views
        ],
    )
    if show_all:
        click.echo()
        _table(["NOT A CONTACT", "NAME", "WHY"], [[e.email, e.name, e.reason] for e in excluded])


@contacts.command("show")
@click.argument("address")
@json_option
@pass_app
def show(app: App, address: str, as_json: bool) -> None:
    """Show one contact: addresses, times, status.

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
    for key, value in asdict(view).items():
        text = (
            ", ".join(value)
            if isinstance(value, tuple)
            else _when(value)
            if isinstance(value, datetime)
            else value
        )
        click.echo(f"{key:>17}: {'' if text is None else text}")


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


def _set_status(app: App, addresses: tuple[str, ...], status: str) -> None:
    from followupd.store import contacts_repo
    from followupd.store.models import ContactStatus

    with app.db().write() as session:
        for address in addresses:
            view = contacts_repo.set_status(session, address, ContactStatus(status))
            click.echo(f"{view.email}: {view.status}")


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


def _when(value: datetime) -> str:
    return value.isoformat(timespec="minutes")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    """Aligned columns on a terminal; tab-separated when piped, so `cut` and `awk` work."""
    if not sys.stdout.isatty():
        for row in rows:
            click.echo("\t".join(row))
        return
    widths = [min(40, max([len(h), *(len(r[i]) for r in rows)])) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(c[:w].ljust(w) for c, w in zip(row, widths, strict=True)))
