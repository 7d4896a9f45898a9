"""Fast bulk writes on SQLite: a Core statement compiled once, rows bound without SQLAlchemy's per-row work.

SQLAlchemy's executemany path costs more per row than SQLite's own insert on a first scan of a large mailbox;
here the statement is compiled once per table and the columns' own bind processors are applied to plain row
tuples. PostgreSQL keeps the ordinary Core path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

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
