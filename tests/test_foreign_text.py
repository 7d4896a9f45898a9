"""Text from outside (a hostile server's reply in an error) is stored with its NULs made visible, on both
backends, whichever code path writes it (PostgreSQL refuses NUL in text columns)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update

from followupd.store import status_repo
from followupd.store.db import Database
from followupd.store.models import Account

NOW = datetime(2024, 4, 3, 10, 0, tzinfo=UTC)
HOSTILE = "* BYE \x00\x00 garbage\x00"


def test_scan_errors_keep_nuls_visibly(db: Database) -> None:
    with db.write() as session:
        session.add(Account(name="main", email="me@example.org"))
    with db.write() as session:
        status_repo.record_scan(session, "main", now=NOW, error=HOSTILE)
    with db.read() as session:
        assert session.scalar(select(Account.last_error)) == "* BYE \\x00\\x00 garbage\\x00"


def test_core_updates_go_through_the_type_too(db: Database) -> None:
    with db.write() as session:
        session.add(Account(name="main", email="me@example.org"))
    with db.write() as session:
        session.execute(update(Account).values(last_error="a\x00b"))
    with db.read() as session:
        assert session.scalar(select(Account.last_error)) == "a\\x00b"
