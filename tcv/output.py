"""Rendering for people (tables) and machines (JSON). Pure functions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def printable(text: str) -> str:
    """``text`` with what a terminal would act on or cannot show escaped:
    control characters and bytes that were not UTF-8 (surrogate-escaped)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table; ``None`` cells render as ``-``; cells
    are made :func:`printable`."""
    cells = [[("-" if c is None else printable(str(c))) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    return "\n".join(lines)


def render_json(data: Any) -> str:
    """Stable JSON for ``--json`` output."""
    return json.dumps(data, indent=2, sort_keys=False)


def human_bytes(n: int) -> str:
    step = 1024.0
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < step or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= step
    return f"{n} B"
