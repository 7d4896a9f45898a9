"""Summarise py-spy collapsed stacks (``py-spy record --format raw``): where the samples are.

Usage: python benchmarks/stacks.py FILE... [--top 25] [--match TEXT]

Prints the functions with the most samples of their own (self) and the most samples under them (inclusive),
as a share of all samples; idle threads waiting in a blocking call show up as their waiting frame, so read
the inclusive list for "what was the worker busy with". ``--match`` keeps only stacks that contain TEXT (e.g.
``batch.py`` for the scan's write path).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def read(paths: list[Path], match: str | None) -> tuple[Counter[str], Counter[str], int]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit() or (match and match not in stack):
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    return own, inclusive, total


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only stacks containing this text")
    args = parser.parse_args()
    own, inclusive, total = read(args.files, args.match)
    if not total:
        raise SystemExit("no samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"--- top {args.top} by {title} samples ({total} samples in all) ---")
        for frame, count in counter.most_common(args.top):
            print(f"{100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
