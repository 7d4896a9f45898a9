"""The PostgreSQL write path of a scan batch (COPY for messages, unnest() upserts, the ANY() existence check,
the statistics kept on growing tables) against the SQLite path: the same batches store the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, text

from followupd.core.classify import AdmissionPolicy
from followupd.core.digest import digest
from followupd.core.headers import parse_headers
from followupd.engine.batch import BatchWriter
from followupd.mail.source import FolderInfo, RawMessage
from followupd.store import scan_repo
from followupd.store.bulk import copy_rows
from followupd.store.db import Database
from followupd.store.models import AddressRow, Contact, Folder, Message, Thread
from tests.mailgen import build_world, filler, named, person, reply

pytestmark = pytest.mark.postgres

ME = "me@example.org"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INBOX = FolderInfo("INBOX", "inbox")
SENT = FolderInfo("Sent", "sent")


def _raws(rendered: list[bytes], first_uid: int = 1) -> list[RawMessage]:
    return [
        RawMessage(uid=first_uid + n, headers=raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", internal_at=NOW)
        for n, raw in enumerate(rendered)
    ]


class Store:
    """A migrated database with one account and its INBOX and Sent folders, written through BatchWriter."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.db.upgrade()
        with self.db.write() as session:
            self.account_id = scan_repo.ensure_account(session, "acct", ME)
            self.folders = {
                f.name: scan_repo.ensure_folder(session, self.account_id, f.name, f.role).id
                for f in (INBOX, SENT)
            }
        self.writer = BatchWriter(self.db, self.account_id, frozenset({ME}), AdmissionPolicy())

    def write(self, folder: FolderInfo, raws: list[RawMessage]) -> tuple[int, int]:
        return self.writer.write(
            folder, self.folders[folder.name], raws, now=NOW, cursor={"last_uid": raws[-1].uid}
        )

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row the scan writes, without surrogate ids (contacts named through their addresses)."""
        with self.db.read() as session:
            names = {cid: name for cid, name in session.execute(select(Contact.id, Contact.name))}
            out: dict[str, list[tuple[Any, ...]]] = {}
            for model in (Message, AddressRow, Thread, Contact):
                table: Table = model.__table__  # type: ignore[assignment]
                columns = [c for c in table.c if c.name != "id"]
                rows = []
                for row in session.execute(select(*columns)):
                    values = dict(zip([c.name for c in columns], row, strict=True))
                    if "contact_id" in values:
                        values["contact_id"] = names.get(values["contact_id"])
                    if "folder_id" in values:
                        values["folder_id"] = {v: k for k, v in self.folders.items()}.get(values["folder_id"])
                    rows.append(tuple(sorted(values.items(), key=lambda kv: kv[0])))
                out[table.name] = sorted(rows, key=repr)
            return out

    def close(self) -> None:
        self.db.dispose()


@pytest.fixture
def stores(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    sqlite, pg = Store(f"sqlite:///{tmp_path / 'fu.db'}"), Store(postgres_url)
    yield sqlite, pg
    sqlite.close()
    pg.close()


def _batches() -> list[tuple[FolderInfo, list[RawMessage]]]:
    world = build_world(ME, fillers=30)
    inbox = [m.render() for m in world.inbox]
    sent = [m.render() for m in world.sent]
    return [
        (INBOX, _raws(inbox[:8])),
        (SENT, _raws(sent)),
        (INBOX, _raws(inbox[8:], first_uid=9)),
    ]


def test_the_same_batches_store_the_same_rows_on_both_backends(stores: tuple[Store, Store]) -> None:
    sqlite, pg = stores
    counts = {}
    for store in (sqlite, pg):
        counts[id(store)] = [store.write(folder, raws) for folder, raws in _batches()]
    assert counts[id(sqlite)] == counts[id(pg)]
    assert sum(new for new, _created in counts[id(pg)]) > 40
    expected, got = sqlite.snapshot(), pg.snapshot()
    assert got["messages"] == expected["messages"]
    assert got["addresses"] == expected["addresses"]
    assert got["threads"] == expected["threads"]
    assert got["contacts"] == expected["contacts"]
    assert len(got["contacts"]) >= 3  # Ada, Zoë, José, Eve ... were admitted through the PostgreSQL path
    owed = [dict(row)["owes_reply"] for row in got["contacts"]]
    assert True in owed and False in owed  # the owed-reply query (a grouped join on PostgreSQL) agreed


def test_rewriting_a_batch_stores_nothing_twice(stores: tuple[Store, Store]) -> None:
    _sqlite, pg = stores
    for folder, raws in _batches():
        pg.write(folder, raws)
    before = pg.snapshot()
    for folder, raws in _batches():  # a crash after commit and before the cursor was read back: same batches
        assert pg.write(folder, raws) == (0, 0)
    assert pg.snapshot() == before


def test_upserts_fold_a_later_batch_into_the_aggregates(stores: tuple[Store, Store]) -> None:
    sqlite, pg = stores
    first = person(named("ada@example.com", "Ada"), ME, "Hello", NOW - timedelta(days=3), "a-1")
    mine = reply(first, ME, NOW - timedelta(days=2), "me-1")
    later = reply(mine, named("ada@example.com", "Ada L."), NOW - timedelta(days=1), "a-2", to=ME)
    for store in (sqlite, pg):
        store.write(INBOX, _raws([first.render()]))
        store.write(SENT, _raws([mine.render()]))
        store.write(INBOX, _raws([later.render()], first_uid=2))
    assert pg.snapshot() == sqlite.snapshot()
    with pg.db.read() as session:
        ada = session.execute(select(AddressRow).where(AddressRow.email == "ada@example.com")).scalar_one()
        thread = session.execute(select(Thread)).scalars().one()
        assert (ada.inbound_count, ada.outbound_count, ada.name) == (2, 1, "Ada L.")
        assert ada.last_inbound_at == NOW - timedelta(days=1)
        assert ada.first_seen_at == NOW - timedelta(days=3)
        assert (thread.message_count, thread.last_sender, thread.last_direction) == (
            3,
            "ada@example.com",
            "in",
        )


def test_a_failed_batch_leaves_nothing_behind(stores: tuple[Store, Store]) -> None:
    _sqlite, pg = stores
    folder, raws = _batches()[0]

    class BoomError(Exception):
        pass

    parsed = [(r.uid, parse_headers(r.headers, fallback_date=NOW), r.headers, NOW) for r in raws]
    # The rows of a whole batch (statistics included: 1,000+ rows would ANALYZE), then a failure before the
    # cursor is written: everything is rolled back.
    with pytest.raises(BoomError), pg.db.write() as session:  # noqa: PT012
        assert scan_repo.existing_message_ids(session, pg.account_id, ["<x@y>"]) == set()
        scan_repo.write_digest(
            session, pg.account_id, pg.folders["INBOX"], digest(parsed, own=frozenset({ME}))
        )
        assert session.scalar(text("SELECT count(*) FROM messages")) == len(raws)
        raise BoomError
    snap = pg.snapshot()
    assert snap["messages"] == [] and snap["addresses"] == [] and snap["threads"] == []
    assert pg.write(folder, raws)[0] == len(raws)  # and the batch can be written afterwards


def test_existence_check_finds_exactly_the_stored_ids(stores: tuple[Store, Store]) -> None:
    _sqlite, pg = stores
    folder, raws = _batches()[0]
    pg.write(folder, raws)
    with pg.db.read() as session:
        stored = set(session.scalars(select(Message.message_id)))
        asked = [*sorted(stored)[:3], "<not-there@example.org>", "it's 'quoted', {braced}"]
        assert scan_repo.existing_message_ids(session, pg.account_id, asked) == set(sorted(stored)[:3])
        assert scan_repo.existing_message_ids(session, pg.account_id + 1, asked) == set()
        assert scan_repo.existing_message_ids(session, pg.account_id, []) == set()


def test_copy_refuses_naive_datetimes_and_overlong_values(stores: tuple[Store, Store]) -> None:
    _sqlite, pg = stores
    table: Table = Message.__table__  # type: ignore[assignment]
    keys = ("account_id", "message_id", "thread_key", "date_at", "direction")
    with pytest.raises(ValueError, match="naive datetime"), pg.db.write() as session:
        copy_rows(session, table, keys, [(pg.account_id, "<a@b>", "t", datetime(2026, 1, 1), "in")])
    with pytest.raises(Exception, match="too long"), pg.db.write() as session:
        copy_rows(session, table, keys, [(pg.account_id, "<" + "x" * 1000 + ">", "t", NOW, "in")])
    with pg.db.read() as session:
        assert session.scalar(text("SELECT count(*) FROM messages")) == 0


def test_a_large_first_batch_leaves_planner_statistics(stores: tuple[Store, Store]) -> None:
    _sqlite, pg = stores
    scan_repo._GROWTH.clear()
    mails = filler(named("frank@example.com", "Frank"), ME, 1500, start=NOW - timedelta(days=90), prefix="f")
    pg.write(INBOX, _raws([m.render() for m in mails]))
    with pg.db.read() as session:
        analyzed = session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass"))
        folder = session.get(Folder, pg.folders["INBOX"])
        assert folder is not None and folder.last_uid == 1500
    assert analyzed is not None and analyzed >= 1500  # ANALYZE ran inside the batch, seeing its own rows
