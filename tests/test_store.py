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
def migrated(empty_database_url: str) -> Iterator[Database]:
    """A database migrated from empty by this test (the shared ``db`` is a copy of a migrated template)."""
    database = Database(empty_database_url)
    database.upgrade()
    yield database
    database.dispose()


def _schema_diff(database: Database) -> list[object]:
    with database.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def test_migrations_build_exactly_the_models_schema(migrated: Database) -> None:
    db = migrated
    assert current_revision(db) == head_revision()
    assert _schema_diff(db) == []


def test_upgrade_is_idempotent(migrated: Database) -> None:
    db = migrated
    db.upgrade()
    assert current_revision(db) == head_revision()


def test_newer_database_is_refused_and_left_untouched(migrated: Database) -> None:
    db = migrated
    with db.write() as session:
        session.add(Account(name="work", email="me@example.org"))
        session.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    with pytest.raises(SchemaTooNewError, match="newer followupd") as info:
        db.upgrade()
    assert info.value.exit_code == 3
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 1


@pytest.mark.db_backend("sqlite")  # the database file's permissions and SQLite's pragmas
def test_sqlite_file_is_private_and_pragmas_are_set(migrated: Database, tmp_path: Path) -> None:
    db = migrated
    path = tmp_path / "data" / "followupd.sqlite"
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


# SQLite only: BEGIN IMMEDIATE makes SQLite's read-then-write transactions serialise. On PostgreSQL
# db.write() runs at READ COMMITTED, where this ORM read-modify-write loses updates (see issue 10's report);
# the product's own concurrent writers are checked on both backends in tests/adversarial/test_concurrency.py.
@pytest.mark.db_backend("sqlite")
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


def test_unwritable_location_is_a_clear_database_error(tmp_path: Path) -> None:  # SQLite: a file path
    from followupd.errors import DatabaseError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseError, match="cannot create database file"):
        Database(f"sqlite:///{blocker}/sub/fu.db")
