"""The base of every TCV command: ``--log-level`` and one place for errors.

``plumbum.cli`` only handles switch errors (and exits 2 with the help text);
here bad usage becomes one line and exit 3, and the project's error family
becomes one line with its exit code (SPEC §2). Tracebacks only at debug level.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import Iterator

from plumbum import cli
from plumbum.cli.application import ShowCompletion, ShowHelp, ShowHelpAll, ShowVersion
from plumbum.cli.switches import SwitchError

from tcv import __version__
from tcv import log as tcvlog
from tcv.errors import EXIT_INTERRUPTED, EXIT_USAGE, TcvError

logger = logging.getLogger("tcv")

_HELP_ERRORS = (ShowHelp, ShowHelpAll, ShowVersion, ShowCompletion)


def fail(prog: str, line: str) -> None:
    """Print the one error line."""
    print(f"{prog}: error: {line}", file=sys.stderr)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a cancelled CI job, ``kill``) like Ctrl-C, so the same
    ``finally`` blocks remove working containers, staging and half-installed
    kernel directories (SPEC §8)."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _escape_undecodable_output() -> None:
    """Names from an image may not be UTF-8 (they arrive surrogate-escaped);
    print them escaped rather than fail after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


class TcvApplication(cli.Application):
    """Shared switches and error handling; subclasses implement ``main``."""

    VERSION = __version__
    COLOR_USAGE = None  # type: ignore[assignment]

    @cli.switch(["--log-level"], cli.Set(*tcvlog.LEVELS, case_sensitive=False))
    def log_level(self, level: str) -> None:
        """How much to log on stderr (default warning, or $TCV_LOG_LEVEL); debug shows
        every command run and tracebacks"""
        tcvlog.configure(level.lower())

    def _parse_and_dispatch(self, argv):  # type: ignore[no-untyped-def]
        prog = self.PROGNAME or "tcv"
        if getattr(self, "parent", None) is None:
            tcvlog.configure(tcvlog.default_level())
            _escape_undecodable_output()
        try:
            swfuncs, tailargs = self._parse_args(list(argv))
            self._validate_args(swfuncs, tailargs)
        except _HELP_ERRORS:
            return super()._parse_and_dispatch(argv)
        except SwitchError as ex:
            first = str(ex).strip().splitlines()[0].rstrip(":") if str(ex).strip() else "bad usage"
            fail(prog, f"{first} — run '{prog} --help' for usage")
            return self, EXIT_USAGE
        try:
            return super()._parse_and_dispatch(argv)
        except TcvError as err:
            if tcvlog.debug_enabled():
                traceback.print_exc()
            fail(prog, err.line())
            return self, err.exit_code
        except KeyboardInterrupt:
            fail(prog, "interrupted; nothing half-done was left behind")
            return self, EXIT_INTERRUPTED
