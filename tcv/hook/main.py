"""The hook's entry point: decide cheaply, never stand in the way (docs/spec.md §7, STYLE #5).

- No ``cache.triton.image/inject`` annotation: exit 0 before anything heavy is
  imported or any storage is touched.
- Fail-open by default: any failure is logged and the hook exits 0, so the
  container starts without injected kernels. With
  ``cache.triton.image/inject-policy=strict`` the failure fails the start.
- Its own time bound (``$TCV_HOOK_TIMEOUT``, default 30 s), below the runtime's
  (the hooks.d ``timeout``). Children get pipes, never the hook's stdout/stderr
  (runc waits on those pipes even after a hook times out), and are killed when
  the bound is hit.
- Logs go where an operator looks: ``$TCV_HOOK_LOG`` (a file, or ``syslog``),
  else syslog when ``/dev/log`` exists, else ``<store>/hook.log``. A file is
  bounded (``$TCV_HOOK_LOG_MAX``, default 4 MiB) and rotated (``.1`` .. ``.3``).
  One info line per start; the kernel keys at debug (``TCV_LOG_LEVEL=debug``).
- At ``poststop`` (status ``stopped``) it removes the container's upper layer
  and those of containers that no longer exist.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import BinaryIO

from tcv.hook.settings import DEFAULT_PATH, TIMEOUT_ENV, HookSettings
from tcv.hook.state import HookError, State, parse_state

# The OCI state's status when prestart/createRuntime hooks run (runc says "creating";
# some runtimes said "created"); "" when a runtime leaves it out.
INJECT_STATUSES = ("creating", "created", "")
STOPPED = "stopped"
LOGGER = "tcv"
SYSLOG_SOCKET = "/dev/log"  # syslog and journald both listen here when present


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


def setup_logging(settings: HookSettings):
    """The logger the hook reports to, and where it writes."""
    import logging

    logger = logging.getLogger(LOGGER)
    logger.setLevel(getattr(logging, settings.log_level, logging.INFO))
    logger.propagate = False
    for old in list(logger.handlers):  # the hook is its own program: only its log
        logger.removeHandler(old)
        if getattr(old, "_tcv_hook", False):
            old.close()
    target = settings.log_target
    handler: logging.Handler | None = None
    if target in ("syslog", "") and os.path.exists(SYSLOG_SOCKET):
        import logging.handlers  # only here: it loads socket, pickle and queue

        try:
            handler = logging.handlers.SysLogHandler(
                address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
            handler.ident = f"tcv-hook[{os.getpid()}]: "
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        except OSError:
            handler = None
    if handler is None:  # no syslog here: the file under the store
        path = target if target not in ("", "syslog") else str(settings.store_root / "hook.log")
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        from tcv.hook.logfile import BoundedFileHandler

        handler = BoundedFileHandler(path, max_bytes=settings.log_max_bytes)
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s tcv-hook[{os.getpid()}] %(levelname)s %(message)s",
                "%Y-%m-%dT%H:%M:%S%z",
            )
        )
    handler._tcv_hook = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    return logger


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


def run(state: State, env: Mapping[str, str]) -> int:
    """Inject for one container under the time bound and the failure policy."""
    if not os.environ.get("PATH"):
        # The runtime passes only the JSON's env; skopeo must still be found.
        os.environ["PATH"] = DEFAULT_PATH
    settings = HookSettings.from_env(env)
    try:
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
