"""Run one driver-library probe in a forked child, so a crash cannot take TCV down.

A GPU driver library that segfaults or hangs in its initialisation (a wedged
driver, a libcuda from the wrong driver branch) must not kill ``tcv`` or the OCI
hook. The probe runs in a child made with ``fork()`` (no new interpreter: it costs
about a millisecond), sends its answer back as JSON through a pipe, and the parent
turns a signal, an exception or a timeout into an ordinary "failed" outcome. The
parent never loads the driver library itself.
"""

from __future__ import annotations

import faulthandler
import json
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 20.0


@dataclass(frozen=True)
class Outcome:
    """The probe's JSON answer, or ``error`` saying why there is none."""

    data: dict[str, Any] | None
    error: str | None = None


def _child(fn: Callable[[], dict[str, Any]], wfd: int) -> None:
    code = 0
    # A crash here is reported by the parent; no Python traceback dump from the child.
    faulthandler.disable()
    try:
        try:
            payload: dict[str, Any] = {"ok": fn()}
        except BaseException as err:  # anything the library or binding raised
            payload = {"error": f"{type(err).__name__}: {err}"}
            code = 1
        data = json.dumps(payload).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(wfd, view) :]
    finally:
        os._exit(code)


def run_isolated(fn: Callable[[], dict[str, Any]], *, timeout: float = DEFAULT_TIMEOUT) -> Outcome:
    """Call ``fn`` in a forked child and return what it returned (JSON-able dict)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child always leaves through os._exit
        os.close(rfd)
        _child(fn, wfd)
    os.close(wfd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(rfd)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return Outcome(None, f"did not answer within {timeout:.0f}s (killed)")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return Outcome(None, f"crashed ({signal.Signals(sig).name})")
    try:
        payload = json.loads(b"".join(chunks) or b"null")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return Outcome(None, f"exited with status {os.waitstatus_to_exitcode(status)}, no answer")
    if "error" in payload:
        return Outcome(None, str(payload["error"]))
    return Outcome(payload.get("ok"))
