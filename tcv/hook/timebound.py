"""The hook's own time bound: below the runtime's (the hooks.d ``timeout``), so
the hook stops itself, kills what it started and says where it was, before the
runtime kills it (runc waits on a hook's pipes even after its timeout, so
children get pipes, never the hook's stdout/stderr)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from tcv.hook.settings import TIMEOUT_ENV
from tcv.hook.state import HookError


class HookTimeout(HookError):
    """The hook's own time bound ran out."""


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise :class:`HookTimeout` in this thread after ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise HookTimeout(f"gave up after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def kill_children() -> list[int]:
    """SIGKILL the hook's own child processes (by pid, found through /proc), so
    none outlives it; returns their pids."""
    me = os.getpid()
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 is the parent pid; the command name (field 2) may hold spaces.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            try:
                os.kill(int(name), signal.SIGKILL)
                os.waitpid(int(name), 0)
                killed.append(int(name))
            except (ProcessLookupError, ChildProcessError):
                pass
    return killed


def timeout_line(seconds: float, phase: str, store_warm: bool, delivered: int) -> str:
    """What the time bound says: where the start was, and what the container got."""
    got = (
        f"{delivered} kernel(s) were delivered before"
        if delivered
        else "the container starts without injected kernels"
    )
    hint = (
        "the first start of an image fills the store; run it once ahead, or raise "
        if not store_warm
        else "the store was warm; check the host's load and disk, or raise "
    )
    return f"gave up after {seconds:g}s while {phase}; {got} — {hint}{TIMEOUT_ENV}"
