"""Run ``tcv`` as a child bounded in memory (RLIMIT_AS) and time, and measure it.

A small launcher sets the limit, starts ``tcv`` and reports its rusage: the
peak resident size of a process forked straight from the test run would start
at the test run's own (Linux carries it across exec), so ``tcv`` is forked
from the launcher instead. The launcher passes SIGTERM on and lets SIGINT
reach ``tcv`` through the process group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
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
    peak_rss_kib: int  # the largest resident size of tcv or a child it waited for (0: killed)
    timed_out: bool

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "backslashreplace")


_LAUNCHER = """
import os, resource, signal, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
signal.signal(signal.SIGINT, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(sys.argv[3], sys.argv[3:])
signal.signal(signal.SIGTERM, lambda n, f: os.kill(pid, n))
while True:
    try:
        _, status, usage = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
with open(sys.argv[2], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


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
    fd, rss_file = tempfile.mkstemp(prefix="tcv-rss-")
    os.close(fd)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(MEMORY_LIMIT), rss_file, tcv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
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
        _, status, _ = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    rss = Path(rss_file).read_text()
    os.unlink(rss_file)
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
        peak_rss_kib=int(rss) if rss else 0,
        timed_out=fired.is_set(),
    )
