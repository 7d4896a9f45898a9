"""Contacts in and out: CSV (import and export) and vCard 3.0 (export).

The CSV has a header row naming its columns, any of ``email,name,tier,tags,notes,cadence`` (``email`` is
required): ``tags`` separated by commas or semicolons, ``cadence`` a duration such as ``45d`` or ``6w``. An
empty cell leaves that setting as it is. :func:`read_csv` checks every row and reports every problem with its
line number; nothing is imported unless all rows are valid. Export writes the same columns, so an exported
file imports back unchanged.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable, Iterator
from datetime import timedelta
from typing import Protocol, TextIO

from followupd.errors import UsageError
from followupd.store.contacts_repo import ContactRecord, ContactView
from followupd.tomlspec import format_duration, parse_duration

CSV_COLUMNS = ("email", "name", "tier", "tags", "notes", "cadence")
_EMAIL = re.compile(r"^[^@\s,;<>\"()\[\]]+@[^@\s,;<>\"()\[\]]+\.[^@\s,;<>\"()\[\]]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TAG_SPLIT = re.compile(r"[,;]")
MAX_NAME = 300


def read_csv(text: str, *, tiers: Collection[str], own: Collection[str] = ()) -> list[ContactRecord]:
    """Every row of ``text`` as a validated record; UsageError listing every problem (``line N: ...``)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    problems: list[str] = []
    header = next(_rows(reader), (1, None))[1]
    if header is None:
        raise UsageError("the file is empty; it needs a header row such as: " + ",".join(CSV_COLUMNS))
    columns = [h.strip().lower() for h in header]
    problems += _header_problems(columns)
    records: list[ContactRecord] = []
    seen: dict[str, int] = {}
    for line, row in _rows(reader):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            problems.append(f"line {line}: {len(row)} cells but {len(columns)} columns in the header")
            continue
        cells = dict(zip(columns, [*row, *[""] * (len(columns) - len(row))], strict=True))
        record, row_problems = _record(line, cells, tiers=tiers, own=own)
        if record is not None and record.email in seen:
            row_problems.append(f"{record.email} is already on line {seen[record.email]}")
        elif record is not None:
            seen[record.email] = line
        problems += [f"line {line}: {p}" for p in row_problems]
        if record is not None and not row_problems:
            records.append(record)
    if problems:
        raise import_error(problems)
    return records


def import_error(problems: list[str]) -> UsageError:
    """The error for an import with problems: all of them, and the promise that nothing was written."""
    listed = "\n".join(f"  {p}" for p in problems)
    return UsageError(
        f"{len(problems)} problem(s); nothing was imported:\n{listed}",
        hint="Fix the file and run the import again.",
    )


class _Reader(Protocol):
    line_num: int

    def __next__(self) -> list[str]: ...


def _rows(reader: _Reader) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its cells): quoted cells may span lines. A malformed line (a NUL
    byte, an unterminated quote at the end) raises UsageError naming it."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise import_error([f"line {start}: {exc}"]) from None
        yield start, row


def _header_problems(columns: list[str]) -> list[str]:
    problems = [
        f"line 1: unknown column {c!r} (known: {', '.join(CSV_COLUMNS)})"
        for c in columns
        if c not in CSV_COLUMNS
    ]
    if "email" not in columns:
        problems.append("line 1: an 'email' column is required")
    problems += [f"line 1: column {c!r} appears twice" for c in sorted(set(columns)) if columns.count(c) > 1]
    return problems


def _record(
    line: int, cells: dict[str, str], *, tiers: Collection[str], own: Collection[str]
) -> tuple[ContactRecord | None, list[str]]:
    problems: list[str] = []
    email = cells.get("email", "").strip().lower()
    if not email:
        return None, ["the email is missing"]
    if not _EMAIL.match(email):
        problems.append(f"{email!r} is not an email address")
    elif email in own:
        problems.append(f"{email} is your own address")
    name = " ".join(cells.get("name", "").split())
    if _CONTROL.search(cells.get("name", "").replace("\t", " ")) or len(name) > MAX_NAME:
        problems.append("the name has control characters or is too long")
    tier = cells.get("tier", "").strip()
    if tier and tier not in tiers:
        problems.append(f"unknown tier {tier!r} (configured: {', '.join(sorted(tiers))})")
    cadence, problem = _cadence(cells.get("cadence", "").strip())
    problems += [problem] if problem else []
    tags = tuple(t.strip() for t in _TAG_SPLIT.split(cells.get("tags", "")) if t.strip())
    notes = cells.get("notes", "").strip()
    return ContactRecord(
        line, email, name or None, tier or None, tags or None, notes or None, cadence
    ), problems


def _cadence(text: str) -> tuple[float | None, str | None]:
    if not text:
        return None, None
    try:
        days = parse_cadence(text)
    except UsageError as exc:
        return None, exc.message
    return days, None


def parse_cadence(text: str) -> float:
    """A cadence such as ``45d``, ``6w`` or ``2w3d`` in days (Contact.cadence_days); UsageError otherwise."""
    try:
        value = parse_duration(text.strip())
    except ValueError:
        raise UsageError(f"cadence {text!r} is not a duration such as 45d, 6w or 2w3d") from None
    if value < timedelta(days=1):
        raise UsageError(f"cadence {text!r} is shorter than a day")
    return value.total_seconds() / 86400


def cadence_text(days: float | None) -> str:
    """Contact.cadence_days as a duration (``45.0`` -> ``6w3d``); "" for None."""
    return format_duration(timedelta(days=days)) if days else ""


# --- export -------------------------------------------------------------------------------------------------


def write_csv(contacts: Iterable[ContactView], out: TextIO) -> int:
    """The contacts as CSV with :data:`CSV_COLUMNS` (primary address only); returns the rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for c in contacts:
        writer.writerow(
            [c.email, c.name, c.tier or "", ",".join(c.tags), c.notes, cadence_text(c.cadence_days)]
        )
        count += 1
    return count


def write_vcards(contacts: Iterable[ContactView], out: TextIO) -> int:
    """The contacts as vCard 3.0 (RFC 2426): every address, tags as CATEGORIES, followupd's settings as X-
    properties; CRLF line ends, lines folded at 75 octets. Returns the cards written."""
    count = 0
    for c in contacts:
        for line in vcard_lines(c):
            out.write(_fold(line) + "\r\n")
        count += 1
    return count


def vcard_lines(c: ContactView) -> list[str]:
    """One contact's vCard 3.0 lines (unfolded)."""
    name = c.name or c.email
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{_escape(name)}", f"N:{_structured_name(c.name)}"]
    lines += [
        f"EMAIL;TYPE=INTERNET{',PREF' if i == 0 else ''}:{_escape(address)}"
        for i, address in enumerate(c.addresses or (c.email,))
    ]
    if c.tags:
        lines.append("CATEGORIES:" + ",".join(_escape(t) for t in c.tags))
    if c.notes:
        lines.append(f"NOTE:{_escape(c.notes)}")
    if c.tier:
        lines.append(f"X-FOLLOWUPD-TIER:{_escape(c.tier)}")
    if c.cadence_days:
        lines.append(f"X-FOLLOWUPD-CADENCE:{cadence_text(c.cadence_days)}")
    if c.status != "active":
        lines.append(f"X-FOLLOWUPD-STATUS:{c.status}")
    return [*lines, "END:VCARD"]


def _structured_name(name: str) -> str:
    """N: family;given;additional;prefix;suffix — a best effort from a display name."""
    if "," in name:
        family, _, given = name.partition(",")
        return f"{_escape(family.strip())};{_escape(given.strip())};;;"
    parts = name.split()
    if len(parts) < 2:
        return f";{_escape(name)};;;"
    return f"{_escape(parts[-1])};{_escape(' '.join(parts[:-1]))};;;"


def _escape(text: str) -> str:
    """RFC 2426 text escaping: backslash, comma, semicolon, newline."""
    text = text.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def _fold(line: str, limit: int = 75) -> str:
    """Fold a content line at ``limit`` octets (never inside a UTF-8 character): CRLF + one space."""
    pieces: list[str] = []
    current, size = "", 0
    for char in line:
        octets = len(char.encode())
        if size + octets > limit:
            pieces.append(current)
            current, size = " ", 1
        current += char
        size += octets
    pieces.append(current)
    return "\r\n".join(pieces)
