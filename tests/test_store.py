"""The database: migrations from empty, refusal of a newer schema, SQLite set-up, constraints."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from followupd.errors import SchemaTooNewError
from followupd.store.db import Database
from followupd.store.migrate import current_revision, head_revision
from followupd.store.models import Account, Base, Contact, Draft

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/data/fu.db")
    database.upgrade()
    yield database
    database.dispose()


def _schema_diff(database: Database) -> list[object]:
    with database.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def test_migrations_build_exactly_the_models_schema(db: Database) -> None:
    assert current_revision(db) == head_revision()
    assert _schema_diff(db) == []


def test_upgrade_is_idempotent(db: Database) -> None:
    db.upgrade()
    assert current_revision(db) == head_revision()


def test_newer_database_is_refused_and_left_untouched(db: Database) -> None:
    with db.write() as session:
        session.add(Account(name="work", email="me@example.org"))
        session.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    with pytest.raises(SchemaTooNewError, match="newer followupd") as info:
        db.upgrade()
    assert info.value.exit_code == 3
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_sqlite_file_is_private_and_pragmas_are_set(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "data" / "fu.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def _contact(db: Database) -> tuple[int, int]:
    with db.write() as session:
        account = Account(name="work", email="me@example.org")
        session.add(account)
        session.flush()
        contact = Contact(account_id=account.id, name="Ada", status="active", tags="", notes="")
        session.add(contact)
        session.flush()
        return account.id, contact.id


def _draft(account_id: int, contact_id: int, key: str, **extra: object) -> Draft:
    values: dict[str, object] = {
        "account_id": account_id,
        "contact_id": contact_id,
        "key": key,
        "reason": "keep_in_touch",
        "template": "keep_in_touch",
        "from_addr": "me@example.org",
        "to_addrs": "ada@example.com",
        "subject": "s",
        "body": "b",
        "message_id": f"{key}@example.org",
        "planned_at": NOW,
        "scheduled_at": NOW,
        "updated_at": NOW,
        "state": "queued",
    }
    values.update(extra)
    return Draft(**values)


def test_the_same_follow_up_cannot_be_queued_twice(db: Database) -> None:
    account_id, contact_id = _contact(db)
    with db.write() as session:
        session.add(_draft(account_id, contact_id, "1:keep_in_touch:2026-01-01"))
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(_draft(account_id, contact_id, "1:keep_in_touch:2026-01-01", message_id="other@x"))


@pytest.mark.parametrize(("column", "value"), [("state", "lost"), ("attempts", -1)])
def test_check_constraints_hold(db: Database, column: str, value: object) -> None:
    account_id, contact_id = _contact(db)
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(_draft(account_id, contact_id, "k", **{column: value}))


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(_draft(999, 999, "k"))


def test_naive_datetimes_are_refused(db: Database) -> None:
    account_id, contact_id = _contact(db)
    with pytest.raises(Exception, match="naive datetime"), db.write() as session:
        session.add(_draft(account_id, contact_id, "k", planned_at=datetime(2026, 1, 1)))


def test_datetimes_come_back_aware_utc(db: Database) -> None:
    account_id, contact_id = _contact(db)
    with db.write() as session:
        session.add(
            _draft(account_id, contact_id, "k", planned_at=datetime.fromisoformat("2026-03-01T13:00+01:00"))
        )
    with db.read() as session:
        planned = session.scalar(select(Draft.planned_at))
    assert planned == NOW and planned is not None and planned.tzinfo is UTC


def test_concurrent_read_then_write_transactions_never_see_database_is_locked(db: Database) -> None:
    """BEGIN IMMEDIATE: two writers that read then write serialise instead of failing."""
    account_id, _ = _contact(db)
    errors: list[BaseException] = []

    def bump(times: int) -> None:
        try:
            for _ in range(times):
                with db.write() as session:
                    account = session.get(Account, account_id)
                    assert account is not None
                    count = int(account.last_error or "0")
                    account.last_error = str(count + 1)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(100,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.read() as session:
        account = session.get(Account, account_id)
        assert account is not None and account.last_error == "400"  # no lost update


def test_unwritable_location_is_a_clear_database_error(tmp_path: Path) -> None:
    from followupd.errors import DatabaseError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseError, match="cannot create database file"):
        Database(f"sqlite:///{blocker}/sub/fu.db")


@pytest.mark.postgres
def test_postgresql_runs_the_same_migrations(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        database.upgrade()
        assert current_revision(database) == head_revision()
        assert _schema_diff(database) == []
        account_id, contact_id = _contact(database)
        with pytest.raises(IntegrityError), database.write() as session:
            session.add(_draft(account_id, contact_id, "k", state="lost"))
    finally:
        database.dispose()
