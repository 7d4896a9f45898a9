"""Turn a TOML document into frozen dataclasses, reporting every problem at once.

The dataclasses *are* the specification: each field's type says how its value is checked, its default is the
default, and ``metadata`` (made with :func:`option`) carries the description, allowed choices and bounds that
both validation and the generated configuration reference use. Nothing here knows about followupd's keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_DURATION_RE = re.compile(r"(\d+)\s*(w|d|h|m|s)", re.IGNORECASE)
_DURATION_FULL_RE = re.compile(r"^\s*(?:\d+\s*[wdhms]\s*)+$", re.IGNORECASE)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def option(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    choices: Sequence[str] = (),
    minimum: int | None = None,
    maximum: int | None = None,
    example: str = "",
    factory: Any = dataclasses.MISSING,
) -> Any:
    """Declare a configuration key: its default, its description and its constraints."""
    meta = {"doc": doc, "choices": tuple(choices), "minimum": minimum, "maximum": maximum, "example": example}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def parse_duration(text: str) -> timedelta:
    """Read a duration such as ``"3d"``, ``"12h"``, ``"2w"`` or ``"1d12h"``; raise ValueError otherwise."""
    if not _DURATION_FULL_RE.match(text):
        raise ValueError(f"expected a duration such as '3d', '12h', '2w' or '1d12h', got {text!r}")
    seconds = sum(int(n) * _UNIT_SECONDS[u.lower()] for n, u in _DURATION_RE.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Write a duration back in the form :func:`parse_duration` reads (30 days -> ``"30d"``)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    days, seconds = divmod(seconds, 86400)
    parts = [f"{days // 7}w" if days % 7 == 0 else f"{days}d"] if days else []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass
class Report:
    """Problems (the config cannot be used) and warnings (it can, but something looks wrong)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, path: str, message: str) -> None:
        """Record a problem at a key path."""
        self.problems.append(f"{path}: {message}" if path else message)

    def warn(self, path: str, message: str) -> None:
        """Record a warning at a key path."""
        self.warnings.append(f"{path}: {message}" if path else message)


class _InvalidError(Exception):
    """A value did not fit its declared type; the message says what would."""


class _NestedError(_InvalidError):
    """A nested table or list had problems, already recorded with their own key paths."""


def load_section(cls: type[T], raw: Mapping[str, Any], path: str, report: Report) -> T | None:
    """Build ``cls`` from ``raw``; record every problem and unknown key in ``report``.

    Returns None when a problem was found in this section (the caller keeps going to find the rest).
    """
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            report.warn(_join(path, key), f"unknown key, ignored{hint}")
    values: dict[str, Any] = {}
    ok = True
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key_path = _join(path, f.name)
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                report.problem(key_path, "is required")
                ok = False
            continue
        try:
            values[f.name] = _convert(hints[f.name], raw[f.name], key_path, f.metadata, report)
        except _NestedError:
            ok = False
        except _InvalidError as exc:
            report.problem(key_path, str(exc))
            ok = False
    if not ok:
        return None
    return cls(**values)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(hint: Any, value: Any, path: str, meta: Mapping[str, Any], report: Report) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, meta, report)
    if origin is tuple:
        return _convert_tuple(args[0], value, path, meta, report)
    if origin is dict:
        return _convert_dict(args[1], value, path, meta, report)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _InvalidError(f"expected a table ([{path}]), got {_describe(value)}")
        built = load_section(hint, value, path, report)  # type: ignore[arg-type]
        if built is None:
            raise _NestedError
        return built
    return _convert_scalar(hint, value, meta)


def _convert_tuple(
    item: Any, value: Any, path: str, meta: Mapping[str, Any], report: Report
) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise _InvalidError(f"expected a list, got {_describe(value)}")
    out = []
    failed = False
    for index, element in enumerate(value):
        try:
            out.append(_convert(item, element, f"{path}[{index}]", meta, report))
        except _NestedError:
            failed = True
        except _InvalidError as exc:
            report.problem(f"{path}[{index}]", str(exc))
            failed = True
    if failed:
        raise _NestedError
    return tuple(out)


def _convert_dict(
    item: Any, value: Any, path: str, meta: Mapping[str, Any], report: Report
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _InvalidError(f"expected a table, got {_describe(value)}")
    out = {}
    for key, element in value.items():
        try:
            out[key] = _convert(item, element, _join(path, key), meta, report)
        except _NestedError:
            pass
        except _InvalidError as exc:
            report.problem(_join(path, key), str(exc))
    if len(out) != len(value):
        raise _NestedError
    return out


def _convert_scalar(hint: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise _InvalidError(f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        return _check_int(value, meta)
    if hint is timedelta:
        if not isinstance(value, str):
            raise _InvalidError(f"expected a duration such as '3d' or '12h', got {_describe(value)}")
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise _InvalidError(str(exc)) from exc
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise _InvalidError(f"expected a path, got {_describe(value)}")
        return Path(value).expanduser()
    if hint is str:
        return _check_str(value, meta)
    raise TypeError(f"tomlspec cannot read type {hint!r}")  # a programming error, not a user's


def _check_int(value: Any, meta: Mapping[str, Any]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _InvalidError(f"expected a whole number, got {_describe(value)}")
    low, high = meta.get("minimum"), meta.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _InvalidError(f"expected a number from {low} to {high}, got {value}")
    return value


def _check_str(value: Any, meta: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise _InvalidError(f"expected a string, got {_describe(value)}")
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise _InvalidError(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}")
    return value


def _describe(value: Any) -> str:
    kind = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "the string",
        list: "a list",
        dict: "a table",
    }
    name = kind.get(type(value), type(value).__name__)
    if isinstance(value, (str, int, float, bool)):
        return f"{name} {value!r}" if isinstance(value, str) else f"{name} ({str(value).lower()})"
    return name
