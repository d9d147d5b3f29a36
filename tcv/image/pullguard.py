"""A cap on what a pull may write to staging (docs/spec.md §8).

skopeo checks every blob against its digest, but only once the blob has
arrived: a registry that streams without end would fill the disk first. While
skopeo copies, :class:`PullGuard` watches the bytes under the layout
directory and, past the cap, stops the skopeo processes this process started;
the caller then reports the refusal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

# Without a size to go by (no label, no --max-size), a pull may still write
# this much: far beyond any cache image, far below a disk.
UNSIZED_PULL_CAP = 32 << 30
PULL_SLACK = 64 << 20


def pull_cap(cache_bound: int | None) -> int:
    """Most bytes a pull may write for an image of at most ``cache_bound``
    cache bytes: compressed layers are never much larger than what they hold."""
    if cache_bound is None:
        return UNSIZED_PULL_CAP
    return min(UNSIZED_PULL_CAP, 2 * cache_bound + PULL_SLACK)


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _children_named(name: str) -> list[int]:
    """The pids of this process's children whose command is ``name``."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.find(b"(") + 1 : stat.rfind(b")")]
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me and comm == name.encode():
            out.append(int(entry))
    return out


class PullGuard:
    """``with PullGuard(layout, cap) as guard:`` around the copy; afterwards
    ``guard.tripped`` says whether the cap stopped it."""

    def __init__(self, layout: Path, cap: int, interval: float = 0.1, tool: str = "skopeo"):
        self.layout = layout
        self.cap = cap
        self.interval = interval
        self.tool = tool
        self.tripped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PullGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        # Event.wait paces the poll; it is not synchronisation.
        while not self._stop.wait(self.interval):
            if _tree_bytes(self.layout) > self.cap:
                self.tripped = True
                for pid in _children_named(self.tool):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                return
