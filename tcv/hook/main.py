"""The hook's entry point: decide cheaply, never stand in the way (docs/spec.md §7, STYLE #5).

- No ``cache.triton.image/inject`` annotation: exit 0 before anything heavy is
  imported or any storage is touched.
- Fail-open by default: any failure is logged and the hook exits 0, so the
  container starts without injected kernels. With
  ``cache.triton.image/inject-policy=strict`` the failure fails the start.
- Its own time bound (``$TCV_HOOK_TIMEOUT``, default 30 s), below the runtime's
  (the hooks.d ``timeout``). Children get pipes, never the hook's stdout/stderr
  (runc waits on those pipes even after a hook times out), and are killed when
  the bound is hit (:mod:`tcv.hook.timebound`).
- Logs go where an operator looks: ``$TCV_HOOK_LOG`` (a file, or ``syslog``),
  else syslog when ``/dev/log`` exists, else ``<store>/hook.log``. A file is
  bounded (``$TCV_HOOK_LOG_MAX``, default 4 MiB) and rotated (``.1`` .. ``.3``).
  One info line per start; the kernel keys at debug (``TCV_LOG_LEVEL=debug``)
  (:mod:`tcv.hook.logsetup`; every setting in :mod:`tcv.hook.settings`).
- At ``poststop`` (status ``stopped``) it removes the container's upper layer
  and those of containers that no longer exist.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from tcv.hook.settings import DEFAULT_PATH, HookSettings
from tcv.hook.state import HookError, State, parse_state
from tcv.hook.timebound import HookTimeout, kill_children, time_bound, timeout_line

# The OCI state's status when prestart/createRuntime hooks run (runc says "creating";
# some runtimes said "created"); "" when a runtime leaves it out.
INJECT_STATUSES = ("creating", "created", "")
STOPPED = "stopped"


def _annotations_from_bundle(state: State) -> State:
    """Runtimes that leave annotations out of the state still have them in config.json."""
    if state.annotations:
        return state
    try:
        from tcv.hook.state import load_config

        config = load_config(state.bundle)
    except HookError:
        return state
    return State(state.id, state.bundle, state.pid, state.status, dict(config.annotations))


def main(
    argv: Sequence[str] = (),
    *,
    stdin: BinaryIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run the hook once; returns the process exit code."""
    env = os.environ if env is None else env
    raw = (stdin or sys.stdin.buffer).read()
    try:
        state = _annotations_from_bundle(parse_state(raw))
    except HookError as err:
        # Nothing says strict yet: a runtime that sends no state gets fail-open.
        _log_safely(env, "warning", f"ignored: {err.line()}")
        return 0
    if state.status == STOPPED:
        return run_poststop(state, env)
    if state.image is None:
        return 0  # the container asked for nothing (STYLE #5: leave before any import)
    if state.status not in INJECT_STATUSES:
        # Run at another stage (poststart, poststop): nothing to do, not an error.
        _log_safely(env, "debug", f"container {state.id[:12]}: nothing to do at {state.status!r}")
        return 0
    return run(state, env)


def _log_safely(env: Mapping[str, str], level: str, message: str) -> None:
    try:
        from tcv.hook.logsetup import setup_logging

        getattr(setup_logging(HookSettings.from_env(env)), level)(message)
    except OSError:
        print(f"tcv-hook: {message}", file=sys.stderr)


def run_poststop(state: State, env: Mapping[str, str]) -> int:
    """Remove what the store holds for the stopped container; never fails."""
    try:
        from tcv.hook.inject import poststop

        removed = poststop(state, HookSettings.from_env(env))
    except (HookError, OSError) as err:
        msg = err.line() if isinstance(err, HookError) else str(err)
        _log_safely(env, "warning", f"container {state.id[:12]}: cleanup failed: {msg}")
        return 0
    if removed:
        _log_safely(env, "debug", f"poststop removed the upper layers of {', '.join(removed)}")
    return 0


def run(state: State, env: Mapping[str, str]) -> int:
    """Inject for one container under the time bound and the failure policy."""
    if not os.environ.get("PATH"):
        # The runtime passes only the JSON's env; skopeo must still be found.
        os.environ["PATH"] = DEFAULT_PATH
    settings = HookSettings.from_env(env)
    try:
        from tcv.hook.logsetup import setup_logging

        log = setup_logging(settings)
    except OSError as err:
        print(f"tcv-hook: cannot open the log: {err}", file=sys.stderr)
        log = None
    cid = state.id[:12] or "?"
    seconds = settings.timeout
    started = time.monotonic()
    message = ""
    try:
        with time_bound(seconds):
            from tcv.hook.inject import inject

            report = inject(state, env, deadline=started + seconds, settings=settings)
    except HookTimeout:
        killed = kill_children()
        from tcv.hook.inject import PROGRESS

        message = timeout_line(seconds, PROGRESS.phase, PROGRESS.store_warm, PROGRESS.delivered)
        message += f" (stopped child processes {killed})" if killed else ""
    except HookError as err:
        message = err.line()
    except Exception as err:
        from tcv.errors import TcvError

        if isinstance(err, TcvError):
            message = err.line()
        else:
            message = f"unexpected {type(err).__name__}: {err}"
            if log is not None:
                log.debug("traceback", exc_info=True)
    else:
        if log is not None:
            log.info("container %s: %s", cid, report.line())
            log.debug("container %s: kernels %s", cid, " ".join(report.keys))
        return 0
    what = f"container {cid}: cannot inject {state.image}: {message}"
    if state.strict:
        if log is not None:
            log.error("%s; failing the start (inject-policy=strict)", what)
        print(f"tcv-hook: {what}", file=sys.stderr)
        return 1
    if log is not None:
        log.warning("%s; starting the container anyway (fail-open)", what)
    return 0
