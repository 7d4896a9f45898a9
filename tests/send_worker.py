"""A sending worker for the multi-worker tests, plus the rows and the config they share.

Run as ``python -m tests.send_worker CONFIG DIRECTORY NAME`` (from the repository root): it loads the config,
writes ``DIRECTORY/NAME.ready``, waits for ``DIRECTORY/go`` (so that workers start together), then calls
:func:`followupd.engine.send.send_due` over every account until no approved draft is left, and prints one
JSON line: ``{"worker": NAME, "sent": [ids of the drafts this process sent]}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from followupd.store.db import Database
from followupd.store.models import Account, Contact, Draft

NOW = datetime(2024, 4, 3, 10, 0, tzinfo=UTC)
"""The moment every run uses: inside the always-open window, the drafts due an hour before."""


def config_text(
    db_url: str,
    accounts: Sequence[str],
    *,
    smtp_port: int,
    send: str = "",
    daily_cap: int = 2000,
    per_minute: int = 60,
) -> str:
    """A config with one account per name, ``<name>@example.org``, sending to the loopback SMTP server.

    Set ``SMTP_PW`` (to anything) in the environment of whatever sends with it.
    """
    lines = [
        f'[database]\nurl = "{db_url}"\n',
        '[send]\nreview = false\nhold = "0s"\nwindow = "daily 00:00-23:59"\n'
        f"daily_cap = {daily_cap}\nper_minute = {per_minute}\n{send}\n",
    ]
    for name in accounts:
        lines.append(
            f'[[accounts]]\nname = "{name}"\nemail = "{name}@example.org"\n'
            f'[accounts.maildir]\npath = "/nonexistent/{name}/Maildir"\n'
            f'[accounts.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\ntimeout = "10s"\n'
            'password_env = "SMTP_PW"\n'  # required; the server offers no AUTH, so it is never used
        )
    return "\n".join(lines)


def seed(db: Database, accounts: Sequence[str], per_account: int, *, state: str = "approved") -> list[int]:
    """``per_account`` drafts in ``state`` for each account (created when missing), each to its own contact.

    One contact per draft: a sent draft touches its contact, which would supersede a second draft to it.
    """
    ids: list[int] = []
    with db.write() as session:
        for name in accounts:
            account_id = session.scalar(select(Account.id).where(Account.name == name))
            if account_id is None:
                row = Account(name=name, email=f"{name}@example.org")
                session.add(row)
                session.flush()
                account_id = row.id
            base = session.scalar(select(func.count(Draft.id))) or 0
            contacts = [
                Contact(account_id=account_id, name=f"P {base + i}", status="active", tags="", notes="")
                for i in range(per_account)
            ]
            session.add_all(contacts)
            session.flush()
            drafts = [
                Draft(
                    account_id=account_id,
                    contact_id=contact.id,
                    key=f"{contact.id}:keep_in_touch",
                    reason="keep_in_touch",
                    template="keep_in_touch",
                    state=state,
                    from_addr=f"{name} <{name}@example.org>",
                    to_addrs=f"p{contact.id}@example.com",
                    subject=f"Hello {contact.id}",
                    body=f"Hi,\n\nthe notes you asked for ({contact.id}).\n",
                    message_id=f"<draft{contact.id}.{name}@example.org>",
                    planned_at=NOW - timedelta(days=1),
                    scheduled_at=NOW - timedelta(hours=1),
                    updated_at=NOW - timedelta(days=1),
                )
                for contact in contacts
            ]
            session.add_all(drafts)
            session.flush()
            ids.extend(d.id for d in drafts)
    return ids


def main(argv: Sequence[str]) -> int:
    from followupd import config as config_mod
    from followupd.engine.deliver import TAKEN
    from followupd.engine.send import send_due
    from followupd.store.models import DraftState

    config_path, directory, name = Path(argv[0]), Path(argv[1]), argv[2]
    config = config_mod.parse(config_path.read_text(), env={})
    db = Database(config.database.url)
    (directory / f"{name}.ready").touch()
    while not (directory / "go").exists():
        time.sleep(0.005)
    sent: list[int] = []
    try:
        for _ in range(50):  # each run sends all it can; a few more mop up what the other left
            report = send_due(db, config, now=NOW)
            # A draft the other worker sent is reported SENT too, with the reason TAKEN.
            sent.extend(
                d.draft_id for d in report.drafts if d.state == DraftState.SENT.value and d.reason != TAKEN
            )
            with db.read() as session:
                left = session.scalar(
                    select(func.count(Draft.id)).where(Draft.state == DraftState.APPROVED.value)
                )
            if not left:
                break
    finally:
        db.dispose()
    print(json.dumps({"worker": name, "sent": sent}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
