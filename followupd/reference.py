"""Reference documentation generated from the code: the configuration (from the config dataclasses) and the
command line (from ``--help``). ``python -m followupd.reference`` rewrites ``docs/``; a test fails when the
committed files are out of date.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from followupd.config import Config
from followupd.tomlspec import format_duration


def config_reference() -> str:
    """Markdown describing every configuration key, its type, default and meaning."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `followupd/config.py` by `python -m followupd.reference`; do not edit by hand.",
        "`config/followupd.example.toml` is a commented example of all of it.",
        "",
    ]
    _section(Config, "", lines)
    return "\n".join(lines).rstrip() + "\n"


def _section(cls: Any, path: str, lines: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    nested: list[tuple[str, Any, str]] = []
    rows: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in ("path", "warnings") and cls is Config:
            continue
        inner, is_array = _unwrap(hints[f.name])
        key = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(inner):
            nested.append((f"{key}[]" if is_array else key, inner, f.metadata.get("doc", "")))
            continue
        rows.append(f"| `{f.name}` | {_type_name(hints[f.name])} | {_default(f)} | {_doc(f)} |")
    if rows:
        table = path.replace("[]", "")
        title = f"[[{table}]]" if path.endswith("[]") else f"[{table}]" if path else "top level"
        lines += [f"## {title}", "", (cls.__doc__ or "").strip(), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for key, inner, _doc_text in nested:
        _section(inner, key, lines)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0], True
    if origin in (typing.Union, __import__("types").UnionType) and args:
        return _unwrap(args[0])
    return hint, False


_TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "timedelta": "duration", "Path": "path"}


def _type_name(hint: Any) -> str:
    inner, _ = _unwrap(hint)
    args = typing.get_args(inner)
    if typing.get_origin(inner) is tuple:
        return f"list of {_TYPE_NAMES.get(args[0].__name__, args[0].__name__)}s"
    if typing.get_origin(inner) is dict:
        return f"table of {_TYPE_NAMES.get(args[1].__name__, args[1].__name__)}s"
    name = getattr(inner, "__name__", str(inner))
    return _TYPE_NAMES.get(name, name)


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    return f"`{_render(value)}`"


def _render(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, timedelta):
        value = format_duration(value)
    if isinstance(value, str):
        return f'"{value}"'
    return "unset" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _doc(f: dataclasses.Field[Any]) -> str:
    doc = str(f.metadata.get("doc", ""))
    choices = f.metadata.get("choices") or ()
    if choices:
        doc += f" One of: {', '.join(choices)}."
    return doc.replace("|", "\\|")


def cli_reference() -> str:
    """Markdown with the ``--help`` of every command."""
    from followupd.cli import cli

    lines = [
        "# Command-line reference",
        "",
        "Generated from `--help` by `python -m followupd.reference`.",
        "",
    ]
    # Contexts made the way the real CLI makes them (context_settings applied, children inheriting), so the
    # help shown is the same as `followupd ... --help` — click caches each command's help option.
    root = cli.make_context("followupd", ["--help"], resilient_parsing=True)
    _command(cli, ["followupd"], root, lines)
    return "\n".join(lines).rstrip() + "\n"


def _command(command: click.Command, path: list[str], ctx: click.Context, lines: list[str]) -> None:
    lines += [
        f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`",
        "",
        "```",
        command.get_help(ctx).rstrip(),
        "```",
        "",
    ]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                _command(sub, [*path, name], click.Context(sub, info_name=name, parent=ctx), lines)


def main() -> None:
    """Rewrite docs/configuration.md and docs/cli-reference.md from the code."""
    docs = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs")
    (docs / "configuration.md").write_text(config_reference(), encoding="utf-8")
    (docs / "cli-reference.md").write_text(cli_reference(), encoding="utf-8")


if __name__ == "__main__":
    main()
