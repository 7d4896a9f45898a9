"""Writing what a scan learned: message rows, address and thread aggregates, contacts and the folder cursor.

Every function takes the caller's session; the engine decides the transaction (one per batch, together with
the cursor it covers). Bulk rows go through Core ``executemany``, never one ORM object per row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Row,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from followupd.core.classify import AddressEvidence, AdmissionPolicy, admit
from followupd.core.digest import AddressDelta, Digest, ThreadDelta
from followupd.store.models import Account, AddressRow, Contact, Folder, Message, Thread
from followupd.store.types import UTCDateTime

_CHUNK = 900  # stays under every SQLite build's bound-parameter limit
_NEVER_A_PERSON = frozenset({"own-address", "list-address", "role-address"})
MESSAGES = cast(Table, Message.__table__)
ADDRESSES = cast(Table, AddressRow.__table__)
THREADS = cast(Table, Thread.__table__)
CONTACTS = cast(Table, Contact.__table__)


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


@functools.lru_cache(maxsize=8)
def _existing_sql(dialect: Any, count: int) -> str:
    stmt = select(Message.message_id).where(Message.account_id == 0, Message.message_id.in_([""] * count))
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    if compiled.positiontup is None or len(compiled.positiontup) != count + 1:
        raise AssertionError("expected account_id then the ids as positional parameters")
    return compiled.string


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
        _executemany(session, "messages", _MESSAGE_KEYS, rows)
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


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def _later(current: Any, new: Any) -> Any:
    return case((current.is_(None), new), (new.is_(None), current), (new > current, new), else_=current)


def _earlier(current: Any, new: Any) -> Any:
    return case((current.is_(None), new), (new.is_(None), current), (new < current, new), else_=current)


def _messages_insert(session: Session) -> Any:
    return MESSAGES.insert()


def _addresses_upsert(session: Session) -> Any:
    table = ADDRESSES
    stmt = _insert(session, table)
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
    stmt = _insert(session, table)
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


_STATEMENTS: dict[str, Callable[[Session], Any]] = {
    "messages": _messages_insert,
    "addresses": _addresses_upsert,
    "threads": _threads_upsert,
}


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
    _executemany(session, "addresses", _ADDRESS_KEYS, rows)


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
    _executemany(session, "threads", _THREAD_KEYS, rows)


@dataclass(frozen=True)
class _RawPlan:
    """A Core statement compiled once for SQLite's DBAPI, and how to turn a row tuple into its parameters."""

    sql: str
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position in the row, bind processor)
    constants: tuple[Any, ...]  # literal parameters of the statement (e.g. '' in a CASE), appended to a row
    order: tuple[int, ...] | None  # parameter positions in row + constants; None when already in order


_RAW_PLANS: dict[tuple[str, str], _RawPlan] = {}


def _executemany(session: Session, name: str, keys: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """``executemany`` of the statement ``name`` with rows given as tuples in ``keys`` order.

    On SQLite the statement is compiled once and run through ``exec_driver_sql`` with each row converted by
    the columns' own bind processors: SQLAlchemy's per-row parameter assembly (a dict per row, every
    parameter looked up and processed through the compiled statement) cost as much as SQLite's own insert
    work. The SQL and the stored values are exactly those of ``session.execute(statement, dicts)``, which is
    what other backends get.
    """
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        session.execute(_STATEMENTS[name](session), [dict(zip(keys, row, strict=True)) for row in rows])
        return
    plan = _RAW_PLANS.get((name, dialect.name))
    if plan is None:
        plan = _RAW_PLANS[(name, dialect.name)] = _raw_plan(_STATEMENTS[name](session), dialect, keys)
    processors, constants, order = plan.processors, plan.constants, plan.order
    params: list[tuple[Any, ...]] = []
    for row in rows:
        values = list(row)
        for index, process in processors:
            values[index] = process(values[index])
        if constants:
            values.extend(constants)
        params.append(tuple(values) if order is None else tuple([values[i] for i in order]))
    session.connection().exec_driver_sql(plan.sql, params)


def _raw_plan(stmt: Any, dialect: Any, keys: tuple[str, ...]) -> _RawPlan:
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    if not compiled.positional or compiled.positiontup is None:
        raise AssertionError("expected a positional paramstyle")
    table = stmt.table
    where = {key: i for i, key in enumerate(keys)}
    order: list[int] = []
    constants: list[Any] = []
    for name in compiled.positiontup:
        if name in where:
            order.append(where[name])
            continue
        if name in table.c:  # a column SQLAlchemy would fill with its default: callers must pass it
            raise AssertionError(f"{table.name}.{name} must be given explicitly")
        process = _processor(compiled, name, dialect)
        value = compiled.params[name]
        order.append(len(keys) + len(constants))
        constants.append(process(value) if process else value)
    processors = tuple(
        (i, process)
        for i, key in enumerate(keys)
        if (process := _processor(compiled, key, dialect)) is not None
    )
    in_order = order == list(range(len(order)))
    return _RawPlan(compiled.string, processors, tuple(constants), None if in_order else tuple(order))


def _processor(compiled: Any, name: str, dialect: Any) -> Callable[[Any], Any] | None:
    """The bind processor SQLAlchemy itself applies to parameter ``name`` (a column's type, a TypeDecorator's
    process_bind_param included)."""
    kind = compiled.binds[name].type
    process: Callable[[Any], Any] | None = kind.dialect_impl(dialect).bind_processor(dialect)
    if isinstance(kind, UTCDateTime) and process is not None:
        return _fast_utc_text(process)
    return process


def _fast_utc_text(official: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """UTCDateTime's SQLite bind processor with a short cut for datetimes already in UTC (all the scanner's):
    one C call instead of a conversion plus a %-format of a dict. Used only if it gives the official text."""

    def process(value: Any) -> Any:
        if value is not None and value.tzinfo is UTC:
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return official(value)

    samples = (
        datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 58, 7, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    return process if all(process(v) == official(v) for v in samples) else official


def update_contacts(
    session: Session,
    account_id: int,
    emails: Collection[str],
    *,
    own: frozenset[str],
    policy: AdmissionPolicy,
) -> int:
    """Re-decide admission for ``emails`` and refresh the contacts they belong to. Returns contacts created.

    A contact, once created, keeps the user's settings (ignored, tier, notes) whatever later scans find.
    Runs on Core rows, not ORM objects: it is called once per batch with every address the batch touched.
    """
    created = 0
    touched: set[int] = set()
    detached = False
    changes: list[dict[str, Any]] = []
    ordered = list(emails)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        rows = session.execute(
            select(*_ADMISSION_COLUMNS).where(
                ADDRESSES.c.account_id == account_id, ADDRESSES.c.email.in_(chunk)
            )
        ).all()
        for row in rows:
            previous = row.contact_id
            reason, contact_id = _admission(row, own, policy)
            if reason == "" and contact_id is None:
                contact_id = _new_contact(session, row.account_id, row.name)
                created += 1
            if reason != row.excluded_reason or contact_id != previous:
                changes.append({"b_id": row.id, "b_reason": reason, "b_contact": contact_id})
            detached = detached or (previous is not None and contact_id is None)
            touched.update(c for c in (previous, contact_id) if c is not None)
    if changes:
        stmt = (
            update(ADDRESSES)
            .where(ADDRESSES.c.id == bindparam("b_id"))
            .values(excluded_reason=bindparam("b_reason"), contact_id=bindparam("b_contact"))
        )
        session.execute(stmt, changes)
    if detached:  # only a detached address can leave a contact without any (every other keeps its own)
        _drop_orphans(session, touched)
    if touched:
        refresh_contacts(session, account_id, touched)
    return created


# What admission reads (no timestamps: converting them back from SQLite text is the costly part of a row).
_ADMISSION_COLUMNS = tuple(
    ADDRESSES.c[name]
    for name in (
        "id",
        "account_id",
        "email",
        "name",
        "contact_id",
        "inbound_count",
        "outbound_count",
        "bulk_count",
        "is_list",
        "met",
        "excluded_reason",
    )
)


def _drop_orphans(session: Session, contact_ids: set[int]) -> None:
    """Delete contacts left without any address (their only address turned out to be a list's or own)."""
    ids = list(contact_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        kept = set(session.scalars(select(AddressRow.contact_id).where(AddressRow.contact_id.in_(chunk))))
        orphans = set(chunk) - kept
        if orphans:
            session.execute(delete(Contact).where(Contact.id.in_(list(orphans))))
            contact_ids -= orphans


def _admission(row: Row[Any], own: frozenset[str], policy: AdmissionPolicy) -> tuple[str, int | None]:
    """The address's new (excluded_reason, contact_id); ("", None) means "admitted, needs a contact"."""
    evidence = AddressEvidence(
        user_wrote_to=row.outbound_count,
        wrote_directly=row.inbound_count,
        only_bulk=row.inbound_count == 0 and row.bulk_count > 0,
        is_list_address=row.is_list,
        is_role=bool(row.excluded_reason.startswith("role") or _is_role(row.email)),
        is_own=row.email in own,
        met=row.met,
    )
    admitted, reason = admit(evidence, policy)
    if not admitted:
        # Learned after admission (the user wrote to a list before its List-Post was seen): detach.
        return reason, None if reason in _NEVER_A_PERSON else row.contact_id
    return "", row.contact_id


def _new_contact(session: Session, account_id: int, name: str) -> int:
    result = session.connection().execute(
        insert(CONTACTS).values(account_id=account_id, name=name, status="active", tags="", notes="")
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _is_role(email: str) -> bool:
    from followupd.core.addresses import is_role_address

    return is_role_address(email) is not None


def refresh_contacts(session: Session, account_id: int, contact_ids: Collection[int]) -> None:
    """Recompute each contact's first/last times, name and reply-owed flag from its addresses and threads."""
    ids = list(contact_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        contacts = session.execute(select(*_CONTACT_COLUMNS).where(CONTACTS.c.id.in_(chunk))).all()
        addresses = session.execute(
            select(*_CONTACT_ADDRESS_COLUMNS).where(ADDRESSES.c.contact_id.in_(chunk))
        ).all()
        by_contact: dict[int, list[Row[Any]]] = {}
        for address in addresses:
            by_contact.setdefault(address.contact_id or 0, []).append(address)
        admitted = {c.id: _admitted(by_contact.get(c.id, [])) for c in contacts}
        # The times first: the owed-reply query reads the refreshed last_outbound_at. Then the flag.
        changed = []
        for contact in contacts:
            values = _refreshed(contact, admitted[contact.id])
            if values != tuple(contact[1 : len(values) + 1]):
                changed.append((*values, contact.id))
        if changed:
            _executemany(session, "contact_times", _CONTACT_TIME_KEYS, changed)
        owed = _last_unanswered(session, account_id, chunk)
        flags = []
        for contact in contacts:
            owes_reply = _owes_reply(admitted[contact.id], owed)
            if owes_reply != contact.owes_reply:
                flags.append((owes_reply, contact.id))
        if flags:
            _executemany(session, "contact_owes", ("b_owes_reply", "b_id"), flags)


_REFRESHED = ("first_seen_at", "last_inbound_at", "last_outbound_at", "last_touch_at", "name", "tz_offset")
_CONTACT_TIME_KEYS = (*("b_" + name for name in _REFRESHED), "b_id")
# id, then the refreshed columns in _REFRESHED order (compared as a slice), then what the refresh reads.
_CONTACT_COLUMNS = tuple(CONTACTS.c[name] for name in ("id", *_REFRESHED, "owes_reply", "last_meeting_at"))
_CONTACT_ADDRESS_COLUMNS = tuple(
    ADDRESSES.c[name]
    for name in (
        "contact_id",
        "email",
        "name",
        "excluded_reason",
        "first_seen_at",
        "last_inbound_at",
        "last_outbound_at",
        "tz_offset",
    )
)


def _update_contact_times(session: Session) -> Any:
    return (
        update(CONTACTS)
        .where(CONTACTS.c.id == bindparam("b_id"))
        .values({name: bindparam("b_" + name) for name in _REFRESHED})
    )


def _update_contact_owes(session: Session) -> Any:
    return (
        update(CONTACTS)
        .where(CONTACTS.c.id == bindparam("b_id"))
        .values(owes_reply=bindparam("b_owes_reply"))
    )


_STATEMENTS["contact_times"] = _update_contact_times
_STATEMENTS["contact_owes"] = _update_contact_owes


def _admitted(addresses: list[Row[Any]]) -> list[Row[Any]]:
    """The addresses a contact's figures come from: its admitted ones, or all of them when none is."""
    return [a for a in addresses if not a.excluded_reason] or addresses


def _owes_reply(admitted: list[Row[Any]], owed: dict[str, datetime]) -> bool:
    last_outbound = _max(a.last_outbound_at for a in admitted)
    last_owed = _max(owed.get(a.email) for a in admitted)
    return last_owed is not None and (last_outbound is None or last_owed > last_outbound)


def _refreshed(contact: Row[Any], admitted: list[Row[Any]]) -> tuple[Any, ...]:
    """The contact's recomputed columns, in _REFRESHED order."""
    last_inbound = _max(a.last_inbound_at for a in admitted)
    last_outbound = _max(a.last_outbound_at for a in admitted)
    return (
        _min(a.first_seen_at for a in admitted),
        last_inbound,
        last_outbound,
        _max([last_inbound, last_outbound, contact.last_meeting_at]),
        contact.name or next((a.name for a in admitted if a.name), ""),
        next((a.tz_offset for a in admitted if a.tz_offset is not None), contact.tz_offset),
    )


def _last_unanswered(session: Session, account_id: int, contact_ids: list[int]) -> dict[str, datetime]:
    """Per address of the contacts, the newest person thread in which that address wrote last — looked for
    only among threads newer than the contact's (already refreshed) ``last_outbound_at``.

    Older threads cannot make a reply owed. A thread's last message is a stored message of that thread with
    ``sender = last_sender`` and ``date_at = last_at``, so walking the address's messages after
    ``last_outbound_at`` on ``ix_messages_sender`` finds every thread that matters. (Filtering the threads
    table by ``last_sender`` scanned all of it once per batch, which made a first scan quadratic.)
    """
    a, c, m, t = ADDRESSES.c, CONTACTS.c, MESSAGES.c, THREADS.c
    result: dict[str, datetime] = {}
    for written_to in (True, False):
        newer = [m.date_at > c.last_outbound_at, t.last_at > c.last_outbound_at] if written_to else []
        # A correlated subquery per address: the sender is fixed inside it, so the messages index is used.
        owed = (
            select(func.max(t.last_at))
            .select_from(MESSAGES)
            .join(THREADS, and_(t.account_id == m.account_id, t.thread_key == m.thread_key))
            .where(
                m.account_id == a.account_id,
                m.sender == a.email,
                t.last_sender == a.email,
                t.last_direction == "in",
                t.last_automated.is_(False),
                *newer,
            )
            .scalar_subquery()
        )
        query = (
            select(a.email, owed)
            .select_from(ADDRESSES)
            .join(CONTACTS, c.id == a.contact_id)
            .where(
                a.contact_id.in_(contact_ids),
                c.account_id == account_id,
                c.last_outbound_at.is_not(None) if written_to else c.last_outbound_at.is_(None),
            )
        )
        for email, last_at in session.execute(query):
            if last_at is not None:
                result[email] = last_at if last_at.tzinfo else last_at.replace(tzinfo=UTC)
    return result


def _max(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _min(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None
