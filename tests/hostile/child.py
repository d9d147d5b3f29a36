"""Run ``tcv`` as a child bounded in memory (RLIMIT_AS) and time, and measure it."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MEMORY_LIMIT = 1 << 30  # address space of tcv and everything it starts
TIME_LIMIT = 60.0


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    peak_rss_kib: int  # the largest resident size of tcv or a child it waited for
    timed_out: bool

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "backslashreplace")


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_bounded(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float = TIME_LIMIT,
    on_start=None,
) -> Outcome:
    """``tcv ARGS`` in its own session under RLIMIT_AS; killed (with its
    children) at ``timeout``. ``on_start(proc)`` runs once it is started."""
    tcv = str(Path(sys.executable).with_name("tcv"))
    start = time.monotonic()
    proc = subprocess.Popen(
        [tcv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
        preexec_fn=_limit,
        start_new_session=True,
    )
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read())),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read())),  # type: ignore[union-attr]
    ]
    for t in readers:
        t.start()
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        if on_start is not None:
            on_start(proc)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    return Outcome(
        returncode=proc.returncode,
        stdout=b"".join(out),
        stderr=b"".join(err),
        seconds=time.monotonic() - start,
        peak_rss_kib=usage.ru_maxrss,
        timed_out=fired.is_set(),
    )
