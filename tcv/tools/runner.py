"""The one door for external tools (buildah, podman, skopeo).

Every call goes through :func:`run`, which returns a small typed result and
raises :class:`~tcv.errors.ToolError` carrying the tool's last stderr lines.
plumbum runs the commands through ``subprocess.Popen``, so unit tests fake
them with pytest-subprocess.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from plumbum import local
from plumbum.commands.base import BaseCommand
from plumbum.commands.processes import CommandNotFound, ProcessTimedOut, run_proc

from tcv.errors import ToolError

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 5
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_tail(self) -> str:
        return tail(self.stderr)


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last non-empty lines of ``text``, joined by ' | ' for one-line messages."""
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


# Switches whose value is a secret, in any of the containers tools' spellings.
_SECRET_SWITCHES = ("creds", "registry-token", "password")
_SECRET_PREFIXES = ("--", "--src-", "--dest-")
REDACTED = "***"


def _secret_switch(arg: str) -> str | None:
    """The switch name of ``arg`` when it carries (or precedes) a secret."""
    name = arg.split("=", 1)[0]
    for prefix in _SECRET_PREFIXES:
        for switch in _SECRET_SWITCHES:
            if name == prefix + switch:
                return switch
    return None


def _redact_value(switch: str, value: str) -> str:
    # USER:PASSWORD keeps the user, which is what a person debugging needs to see.
    if switch == "creds" and ":" in value:
        return value.split(":", 1)[0] + ":" + REDACTED
    return REDACTED if switch != "creds" else value


def redact(argv: Sequence[str]) -> list[str]:
    """``argv`` with every password and token replaced by ``***`` (for logs)."""
    out: list[str] = []
    pending: str | None = None
    for arg in argv:
        if pending is not None:
            out.append(_redact_value(pending, arg))
            pending = None
            continue
        switch = _secret_switch(arg)
        if switch is None:
            out.append(arg)
        elif "=" in arg:
            name, value = arg.split("=", 1)
            out.append(f"{name}={_redact_value(switch, value)}")
        else:
            out.append(arg)
            pending = switch
    return out


def available(tool: str) -> bool:
    return shutil.which(tool) is not None


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    stdin: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    what: str | None = None,
) -> Result:
    """Run ``argv`` and capture its output.

    ``what`` names the action for the error message ("commit the image").
    With ``check`` a non-zero exit raises :class:`ToolError`.
    """
    argv = [str(a) for a in argv]
    action = what or f"run {argv[0]}"
    try:
        cmd: BaseCommand = local[argv[0]]
    except CommandNotFound:
        raise ToolError(
            f"cannot {action}: {argv[0]} is not installed",
            argv=redact(argv),
            returncode=None,
            hint=f"install {argv[0]} (apt-get install {argv[0]}) and try again",
        ) from None
    cmd = cmd[argv[1:]]
    if env:
        cmd = cmd.with_env(**env)
    log.debug("running: %s", " ".join(redact(argv)))
    if stdin is not None:
        cmd = cmd << stdin
    proc = None
    try:
        # Inside the try: an interrupt that lands as soon as the tool runs still stops it.
        proc = cmd.popen()
        returncode, stdout, stderr = run_proc(proc, None, timeout)
    except BaseException as exc:
        # Ctrl-C, SIGTERM (see cli.base.sigterm_as_interrupt) or a timeout: the tool
        # must not outlive us (a skopeo copy would go on writing into staging).
        if proc is not None:
            _stop(proc)
        if not isinstance(exc, ProcessTimedOut):
            raise
        raise ToolError(
            f"cannot {action}: {argv[0]} did not finish within {timeout:.0f}s",
            argv=redact(argv),
            returncode=None,
        ) from None
    assert returncode is not None  # run_proc waits for the process
    result = Result(argv, int(returncode), stdout or "", stderr or "")
    log.debug("%s exited %s", argv[0], returncode)
    if check and result.returncode != 0:
        detail = result.stderr_tail or f"exit status {result.returncode}"
        raise ToolError(
            f"cannot {action}: {detail}",
            argv=redact(argv),
            returncode=result.returncode,
            stderr_tail=result.stderr_tail,
        )
    return result


def _stop(proc: object) -> None:
    """Terminate a child still running, then kill it if it ignores that."""
    import subprocess

    if proc.poll() is not None:  # type: ignore[attr-defined]
        return
    proc.terminate()  # type: ignore[attr-defined]
    try:
        proc.wait(timeout=STOP_GRACE_SECONDS)  # type: ignore[attr-defined]
    except subprocess.TimeoutExpired:
        proc.kill()  # type: ignore[attr-defined]
        proc.wait()  # type: ignore[attr-defined]
