"""Output helpers shared by the commands: tables, progress bars, times in words.

Kept free of heavy imports: ``followupd drafts list`` loads this on its fast path.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta

import click

MIN_WIDTH = 6


def is_terminal() -> bool:
    """True when stdout is a terminal (tables aligned and shortened) rather than a pipe (plain rows)."""
    return sys.stdout.isatty()


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, flexible: Sequence[int] = (), width: int = 0
) -> None:
    """Aligned columns on a terminal, shortened to fit its width (the ``flexible`` columns first);
    tab-separated rows without a header when piped, so ``cut`` and ``awk`` work."""
    if not is_terminal():
        for row in rows:
            click.echo("\t".join(" ".join(cell.split()) for cell in row))
        return
    width = width or shutil.get_terminal_size().columns
    for line in aligned(headers, rows, width=width, flexible=flexible):
        click.echo(line)


def aligned(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int, flexible: Sequence[int] = ()
) -> list[str]:
    """The lines of an aligned table at most ``width`` characters wide: the widest of the ``flexible``
    columns gives way first, then the widest of all."""
    cells = [[" ".join(cell.split()) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    budget = width - 2 * (len(headers) - 1)
    for candidates in (list(flexible), list(range(len(widths)))):
        while sum(widths) > budget and candidates:
            widest = max(candidates, key=lambda i: widths[i])
            if widths[widest] <= MIN_WIDTH:
                candidates.remove(widest)
                continue
            widths[widest] -= 1
    return [
        "  ".join(clip(cell, w).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *cells]
    ]


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def bar(fraction: float, *, width: int = 10) -> str:
    """``[#######---]  70%`` for ``fraction`` 0.7: full from 1.0 on, while the percentage keeps counting."""
    filled = max(0, min(width, round(fraction * width)))
    return f"[{'#' * filled}{'-' * (width - filled)}] {round(fraction * 100):>3}%"


def ago(at: datetime | None, now: datetime) -> str:
    """``3d ago``, ``in 2h``, ``now``; ``-`` for None."""
    if at is None:
        return "-"
    delta = at - now
    if abs(delta) < timedelta(minutes=1):
        return "now"
    return f"in {span(delta)}" if delta > timedelta(0) else f"{span(-delta)} ago"


def span(delta: timedelta) -> str:
    """A duration in the largest sensible unit: ``45m``, ``5h``, ``3d``, ``6w``, ``8mo``, ``2y``."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h"
    days = minutes // (24 * 60)
    if days < 14:
        return f"{days}d"
    if days < 70:
        return f"{days // 7}w"
    if days < 730:
        return f"{days // 30}mo"
    return f"{days // 365}y"


def stamp(at: datetime | None) -> str:
    """``2024-04-01 09:00 UTC``; ``-`` for None."""
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "-"


def day(at: datetime | None) -> str:
    """``2024-04-01``; ``-`` for None."""
    return f"{at:%Y-%m-%d}" if at is not None else "-"
