"""Writing what a scan learned: message rows, address and thread aggregates, and folder rows.

Every function takes the caller's session; the engine decides the transaction (one per batch, together with
the cursor it covers). Bulk rows go through :func:`followupd.store.bulk.executemany`, never one ORM object per
row. Which addresses are contacts is decided in :mod:`followupd.store.contacts_refresh`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import (
    Table,
    bindparam,
    case,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from followupd.core.digest import AddressDelta, Digest, ThreadDelta
from followupd.store.bulk import executemany, insert_for
from followupd.store.models import Account, AddressRow, Folder, Message, Thread

_CHUNK = 900  # stays under every SQLite build's bound-parameter limit
MESSAGES = cast(Table, Message.__table__)
ADDRESSES = cast(Table, AddressRow.__table__)
THREADS = cast(Table, Thread.__table__)


def ensure_account(session: Session, name: str, email: str) -> int:
    """The id of the account row called ``name``, created if missing."""
    account_id = session.scalar(select(Account.id).where(Account.name == name))
    if account_id is None:
        account = Account(name=name, email=email)
        session.add(account)
        session.flush()
        account_id = account.id
    return account_id


def ensure_folder(session: Session, account_id: int, name: str, role: str) -> Folder:
    """The folder row (with its cursor), created if missing."""
    folder = session.scalar(select(Folder).where(Folder.account_id == account_id, Folder.name == name))
    if folder is None:
        folder = Folder(account_id=account_id, name=name, role=role, last_uid=0)
        session.add(folder)
        session.flush()
    return folder


def existing_message_ids(session: Session, account_id: int, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are already stored for the account."""
    found: set[str] = set()
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        # One statement with the ids as one array parameter: the unique index (account_id, message_id) is
        # probed once per id. An IN list of 900 parameters got a generic plan (psycopg prepares a statement
        # run 5 times) that scanned the whole table comparing each row with every parameter: 0.4 s a call.
        result = session.connection().exec_driver_sql(_EXISTING_PG, (account_id, list(ids)))
        return {row[0] for row in result}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        if dialect.name == "sqlite":
            # The same SELECT with its IN list rendered once per length (rendering it each call cost more
            # than the query).
            rows: Iterable[Any] = session.connection().exec_driver_sql(
                _existing_sql(dialect, len(chunk)), (account_id, *chunk)
            )
        else:
            rows = session.execute(
                select(Message.message_id).where(
                    Message.account_id == account_id, Message.message_id.in_(chunk)
                )
            )
        found.update(row[0] for row in rows)
    return found


_EXISTING_PG = "SELECT message_id FROM messages WHERE account_id = %s AND message_id = ANY(%s::text[])"


@functools.lru_cache(maxsize=8)
def _existing_sql(dialect: Any, count: int) -> str:
    stmt = select(Message.message_id).where(Message.account_id == 0, Message.message_id.in_([""] * count))
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    if compiled.positiontup is None or len(compiled.positiontup) != count + 1:
        raise AssertionError("expected account_id then the ids as positional parameters")
    return compiled.string


# PostgreSQL plans with the statistics ANALYZE left, and a first scan fills the tables far faster than
# autovacuum re-analyzes them (50 rows + 10 % changed, checked once a minute). Without statistics the planner
# takes ``account_id = 1`` for a rare value and probes the existence check through ix_messages_thread with a
# filter over every stored row (a 50,000-message first scan spent 30 s there). So the scan analyzes the
# tables it fills itself each time they have doubled since (as this process knows), from 1,000 rows up:
# log2(n) ANALYZEs of at most 30,000 sampled rows each. Run in the batch's transaction, so they see its rows.
_MIN_GROWTH = 1000
# Whole tables: restricted to the columns the queries select on, the owed-reply join lost its plan (the
# selectivity of threads.last_direction / last_automated then defaults) and cost 3x what the columns saved.
_ANALYZE = "ANALYZE messages, addresses, threads, contacts"
_GROWTH: dict[str, list[int]] = {}  # database -> [messages at the last ANALYZE, inserted since]


def keep_statistics(session: Session, inserted: int) -> None:
    """After ``inserted`` new messages: ANALYZE the scan's tables on PostgreSQL once they have doubled."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or inserted <= 0:
        return
    key = connection.engine.url.render_as_string(hide_password=True)
    state = _GROWTH.get(key)
    if state is None:
        known = session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass"))
        state = _GROWTH[key] = [max(int(known or 0), 0), 0]
    state[1] += inserted
    if state[1] >= max(_MIN_GROWTH, state[0]):
        session.execute(text(_ANALYZE))
        state[0], state[1] = state[0] + state[1], 0


def rebind(session: Session, account_id: int, folder_id: int, uids: dict[str, int]) -> None:
    """Point already-stored messages at their new location (after a UIDVALIDITY change or a move)."""
    if not uids:
        return
    table = MESSAGES
    stmt = (
        update(table)
        .where(table.c.account_id == account_id, table.c.message_id == bindparam("mid"))
        .values(folder_id=folder_id, uid=bindparam("new_uid"))
    )
    session.execute(stmt, [{"mid": mid, "new_uid": uid} for mid, uid in uids.items()])


def write_digest(session: Session, account_id: int, folder_id: int, dig: Digest) -> None:
    """Insert the digest's new messages and fold its aggregates into addresses and threads."""
    if dig.messages:
        rows = [
            (
                account_id,
                folder_id,
                m.uid,
                m.message_id,
                m.thread_key,
                m.date_at,
                m.tz_offset,
                m.direction,
                m.sender,
                m.recipients,
                m.subject,
                m.in_reply_to,
                m.automated,
                m.reason,
                m.asks,
                False,
            )
            for m in dig.messages
        ]
        executemany(session, _messages_insert, _MESSAGE_KEYS, rows)
        keep_statistics(session, len(rows))
    if dig.addresses:
        _upsert_addresses(session, account_id, dig.addresses.values())
    if dig.threads:
        _upsert_threads(session, account_id, dig.threads.values())


_MESSAGE_KEYS = (
    "account_id",
    "folder_id",
    "uid",
    "message_id",
    "thread_key",
    "date_at",
    "tz_offset",
    "direction",
    "sender",
    "recipients",
    "subject",
    "in_reply_to",
    "automated",
    "reason",
    "asks",
    "has_calendar",
)
_ADDRESS_KEYS = (
    "account_id",
    "email",
    "name",
    "first_seen_at",
    "last_inbound_at",
    "last_outbound_at",
    "inbound_count",
    "outbound_count",
    "bulk_count",
    "is_list",
    "met",
    "excluded_reason",
    "tz_offset",
)
_THREAD_KEYS = (
    "account_id",
    "thread_key",
    "subject",
    "message_count",
    "last_at",
    "last_message_id",
    "last_direction",
    "last_sender",
    "last_automated",
)


def _later(current: Any, new: Any) -> Any:
    return case((current.is_(None), new), (new.is_(None), current), (new > current, new), else_=current)


def _earlier(current: Any, new: Any) -> Any:
    return case((current.is_(None), new), (new.is_(None), current), (new < current, new), else_=current)


def _messages_insert(session: Session) -> Any:
    return MESSAGES.insert()


def _addresses_upsert(session: Session) -> Any:
    table = ADDRESSES
    stmt = insert_for(session, table, _ADDRESS_KEYS)
    ex, cur = stmt.excluded, table.c
    return stmt.on_conflict_do_update(
        index_elements=[cur.account_id, cur.email],
        set_={
            "name": case((ex.name != "", ex.name), else_=cur.name),
            "first_seen_at": _earlier(cur.first_seen_at, ex.first_seen_at),
            "last_inbound_at": _later(cur.last_inbound_at, ex.last_inbound_at),
            "last_outbound_at": _later(cur.last_outbound_at, ex.last_outbound_at),
            "inbound_count": cur.inbound_count + ex.inbound_count,
            "outbound_count": cur.outbound_count + ex.outbound_count,
            "bulk_count": cur.bulk_count + ex.bulk_count,
            "is_list": cur.is_list | ex.is_list,
            "tz_offset": func.coalesce(ex.tz_offset, cur.tz_offset),
        },
    )


def _threads_upsert(session: Session) -> Any:
    table = THREADS
    stmt = insert_for(session, table, _THREAD_KEYS)
    ex, cur = stmt.excluded, table.c
    newer = ex.last_at >= cur.last_at
    return stmt.on_conflict_do_update(
        index_elements=[cur.account_id, cur.thread_key],
        set_={
            "message_count": cur.message_count + ex.message_count,
            "subject": case((cur.subject == "", ex.subject), else_=cur.subject),
            "last_at": case((newer, ex.last_at), else_=cur.last_at),
            "last_message_id": case((newer, ex.last_message_id), else_=cur.last_message_id),
            "last_direction": case((newer, ex.last_direction), else_=cur.last_direction),
            "last_sender": case((newer, ex.last_sender), else_=cur.last_sender),
            "last_automated": case((newer, ex.last_automated), else_=cur.last_automated),
        },
    )


def _upsert_addresses(session: Session, account_id: int, deltas: Iterable[AddressDelta]) -> None:
    rows = [
        (
            account_id,
            d.email,
            d.name,
            d.first_seen_at,
            d.last_inbound_at,
            d.last_outbound_at,
            d.inbound_count,
            d.outbound_count,
            d.bulk_count,
            d.is_list,
            False,
            d.role_reason,
            d.tz_offset,
        )
        for d in deltas
    ]
    executemany(session, _addresses_upsert, _ADDRESS_KEYS, rows)


def _upsert_threads(session: Session, account_id: int, deltas: Iterable[ThreadDelta]) -> None:
    rows = [
        (
            account_id,
            t.key,
            t.subject,
            t.count,
            t.last_at,
            t.last_message_id,
            t.last_direction,
            t.last_sender,
            t.last_automated,
        )
        for t in deltas
    ]
    executemany(session, _threads_upsert, _THREAD_KEYS, rows)
