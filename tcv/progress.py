"""A one-line progress bar on stderr, for pulls and unpacking (docs/spec.md §2).

Shown only when stdout is a terminal and the output is not ``--json``; the
library code calls the same methods whether or not anything is drawn.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from tcv.output import human_bytes

_MIN_INTERVAL = 0.1  # seconds between redraws


class Progress:
    """Phases of known (or unknown) size; draws nothing (the base for callers
    that want no display)."""

    def start(self, phase: str, total: int | None = None) -> None:
        pass

    def update(self, done: int) -> None:
        pass

    def finish(self) -> None:
        pass


class Bar(Progress):
    """``pull    [#########.........]  12.0 MiB / 40.0 MiB`` redrawn in place."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.phase = ""
        self.total: int | None = None
        self.done = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def start(self, phase: str, total: int | None = None) -> None:
        with self._lock:
            self.phase, self.total, self.done, self._last = phase, total, 0, 0.0
        self._draw(force=True)

    def update(self, done: int) -> None:
        with self._lock:
            self.done = done
        self._draw()

    def finish(self) -> None:
        self._draw(force=True)
        self.stream.write("\n")
        self.stream.flush()

    def render(self) -> str:
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            size = f"{human_bytes(self.done)} / {human_bytes(self.total)}"
            return f"{self.phase:<8} [{bar}] {size}"
        return f"{self.phase:<8} {human_bytes(self.done)}"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < _MIN_INTERVAL:
            return
        self._last = now
        self.stream.write("\r" + self.render().ljust(70))
        self.stream.flush()


def for_output(json_output: bool) -> Progress:
    """A bar when a person is watching (stdout a TTY, not --json), else nothing."""
    if not json_output and sys.stdout.isatty():
        return Bar()
    return Progress()


class DirWatcher:
    """Reports the bytes written under a directory while a tool (skopeo) fills it:
    the tool prints no machine-readable progress, the directory grows."""

    def __init__(self, path: Path, progress: Progress, interval: float = 0.2) -> None:
        self.path = path
        self.progress = progress
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> DirWatcher:
        if type(self.progress) is not Progress:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            if exc[0] is None:
                self.progress.update(_tree_bytes(self.path))  # the final size, however quick

    def _loop(self) -> None:
        # Event.wait is the pacing of a poll, not synchronisation.
        while not self._stop.wait(self.interval):
            self.progress.update(_tree_bytes(self.path))


def _tree_bytes(path: Path) -> int:
    total = 0
    try:
        for p in path.rglob("*"):
            try:
                total += p.lstat().st_size
            except OSError:
                continue
    except OSError:
        return total
    return total
