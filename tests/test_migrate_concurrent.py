"""Several workers starting together on a new PostgreSQL database: one creates the schema, none fails."""

from __future__ import annotations

import threading

import pytest

from followupd.store.db import Database
from followupd.store.migrate import current_revision, head_revision

pytestmark = pytest.mark.postgres

WORKERS = 4


def test_concurrent_upgrades_of_an_empty_database(postgres_url: str) -> None:
    databases = [Database(postgres_url) for _ in range(WORKERS)]
    start = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def upgrade(db: Database) -> None:
        start.wait()
        try:
            db.upgrade()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(db,)) for db in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert all(current_revision(db) == head_revision() for db in databases)
    finally:
        for db in databases:
            db.dispose()
