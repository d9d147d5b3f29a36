"""Which store entries to remove to stay under a size cap (pure; least recently used first).

Entries are stored images (fetched and unpacked) and rendered views. A view a
running container has mounted is never chosen; an image is, even when views
made from it exist (a view is a self-contained copy; the image is fetched
again when a new tuple needs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*$", re.I)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Entry:
    kind: str  # "image" or "view"
    name: str
    size: int
    last_used: float
    in_use: bool = False
    digest: str = ""


def parse_size(text: str) -> int:
    """``"10G"``, ``"512M"``, ``"1.5GiB"``, ``"1000"`` (bytes) -> bytes; ValueError otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 20G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def choose_evictions(entries: Sequence[Entry], cap: int) -> list[Entry]:
    """The entries to remove, oldest use first, until the rest fit in ``cap`` bytes.
    Entries in use are kept even when the cap cannot be met without them."""
    total = sum(e.size for e in entries)
    out: list[Entry] = []
    for e in sorted(entries, key=lambda e: (e.last_used, e.kind, e.name)):
        if total <= cap:
            break
        if e.in_use:
            continue
        out.append(e)
        total -= e.size
    return out


def older_than(entries: Iterable[Entry], cutoff: float) -> list[Entry]:
    """Entries not in use whose last use is before ``cutoff`` (a time stamp)."""
    return [e for e in entries if not e.in_use and e.last_used < cutoff]
