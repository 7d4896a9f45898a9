"""Fast bulk writes: each backend's own fast path, with the values SQLAlchemy itself would bind.

SQLite: SQLAlchemy's executemany path costs more per row than SQLite's own insert on a first scan of a large
mailbox; here the statement is compiled once per table and the columns' own bind processors are applied to
plain row tuples.

PostgreSQL: plain inserts go through ``COPY ... FROM STDIN``, upserts are one
``INSERT ... SELECT FROM unnest(<one array per column>) ON CONFLICT ...`` per batch (see :func:`insert_for`),
so a batch costs a few round trips whatever its size instead of one statement per row. Other statements
(UPDATEs keyed by id) keep psycopg's executemany, which pipelines them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Insert, Table, Text, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from followupd.store.types import UTCDateTime


@dataclass(frozen=True)
class _RawPlan:
    """A Core statement compiled once for SQLite's DBAPI, and how to turn a row tuple into its parameters."""

    sql: str
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position in the row, bind processor)
    constants: tuple[Any, ...]  # literal parameters of the statement (e.g. '' in a CASE), appended to a row
    order: tuple[int, ...] | None  # parameter positions in row + constants; None when already in order


Statement = Callable[[Session], Any]
_RAW_PLANS: dict[tuple[Statement, str], _RawPlan] = {}


def executemany(
    session: Session, build: Statement, keys: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """``executemany`` of the statement ``build(session)`` with rows given as tuples in ``keys`` order.

    On SQLite the statement is compiled once and run through ``exec_driver_sql`` with each row converted by
    the columns' own bind processors: SQLAlchemy's per-row parameter assembly (a dict per row, every
    parameter looked up and processed through the compiled statement) cost as much as SQLite's own insert
    work. The SQL and the stored values are exactly those of ``session.execute(statement, dicts)``, which is
    what other backends get.
    """
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        _pg_executemany(session, build(session), keys, rows)
        return
    if dialect.name != "sqlite":
        session.execute(build(session), [dict(zip(keys, row, strict=True)) for row in rows])
        return
    plan = _RAW_PLANS.get((build, dialect.name))
    if plan is None:
        plan = _RAW_PLANS[(build, dialect.name)] = _raw_plan(build(session), dialect, keys)
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


def insert_for(session: Session, table: Table, keys: tuple[str, ...]) -> Any:
    """The dialect's INSERT for rows given in ``keys`` order, to which a builder adds ``on_conflict_do_*``.

    On PostgreSQL it reads its rows from ``unnest()`` of one array parameter per column (``executemany``
    then binds the columns, not the rows); elsewhere it is a plain ``INSERT ... VALUES``.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _unnest_insert(table, keys)
    return sqlite.insert(table)


# ------------------------------------------------------------------------------------------------ PostgreSQL


def _unnest_insert(table: Table, keys: tuple[str, ...]) -> Any:
    missing = [c.name for c in table.c if c.name not in keys and c.default is not None]
    if missing:  # from_select would fill them with their Python defaults: callers pass every column
        raise AssertionError(f"{table.name}: {', '.join(missing)} must be given explicitly")
    # One array parameter per column, typed by the column but with strings as text[]: the assignment to the
    # column then checks lengths as a row-wise INSERT does (a cast to varchar(n)[] would truncate).
    arrays = [
        bindparam(_array_key(key), type_=postgresql.ARRAY(_element_type(table.c[key].type))) for key in keys
    ]
    source = func.unnest(*arrays).table_valued(*keys).render_derived()
    stmt = postgresql.insert(table).from_select(list(keys), select(*(source.c[key] for key in keys)))
    return stmt.execution_options(followupd_unnest=True)


def update_by_id(session: Session, table: Table, keys: tuple[str, ...]) -> Any:
    """``UPDATE table SET <column> = b_<column>, ... WHERE id = b_id`` for rows given in ``keys`` order
    (``b_`` + a column name each, ``b_id`` among them).

    On PostgreSQL the rows come from ``unnest()`` of one array per key (``UPDATE ... FROM``): one statement
    per call instead of one per row. The ids must be distinct (an UPDATE ... FROM applies one row per target).
    """
    columns = [key.removeprefix("b_") for key in keys]
    if session.get_bind().dialect.name != "postgresql":
        return (
            table.update()
            .where(table.c.id == bindparam("b_id"))
            .values({c: bindparam(k) for c, k in zip(columns, keys, strict=True) if c != "id"})
        )
    arrays = [
        bindparam(_array_key(key), type_=postgresql.ARRAY(_element_type(table.c[column].type)))
        for key, column in zip(keys, columns, strict=True)
    ]
    source = func.unnest(*arrays).table_valued(*keys).render_derived()
    stmt = (
        table.update()
        .where(table.c.id == source.c.b_id)
        .values({c: source.c[k] for c, k in zip(columns, keys, strict=True) if c != "id"})
    )
    return stmt.execution_options(followupd_unnest=True)


def _element_type(kind: Any) -> Any:
    return Text() if isinstance(kind, String) else kind


def _array_key(key: str) -> str:
    return f"u_{key}"


def _pg_executemany(session: Session, stmt: Any, keys: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if stmt.get_execution_options().get("followupd_unnest"):  # insert_for / update_by_id: columns as arrays
        columns = list(zip(*rows, strict=True))
        session.execute(stmt, {_array_key(k): list(v) for k, v in zip(keys, columns, strict=True)})
    elif isinstance(stmt, Insert) and not stmt._post_values_clause and stmt.table is not None:
        copy_rows(session, stmt.table, keys, rows)
    else:
        session.execute(stmt, [dict(zip(keys, row, strict=True)) for row in rows])


def copy_rows(session: Session, table: Any, keys: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """``COPY table (keys) FROM STDIN`` in the session's transaction (PostgreSQL through psycopg 3).

    The values go through the columns' own bind processors first (a naive datetime is refused as on any other
    path), then psycopg's adapters. Same semantics as a plain INSERT: constraints are checked, nothing is
    skipped; a failure aborts the transaction like any other statement's.
    """
    dialect = session.get_bind().dialect
    processors = [
        (i, process)
        for i, key in enumerate(keys)
        if (process := table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    preparer = dialect.identifier_preparer
    sql = f"COPY {preparer.format_table(table)} ({', '.join(preparer.quote(k) for k in keys)}) FROM STDIN"
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            if processors:
                values = list(row)
                for index, process in processors:
                    values[index] = process(values[index])
                copy.write_row(values)
            else:
                copy.write_row(row)


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
