"""The base of every TCV command: ``--log-level`` and one place for errors.

``plumbum.cli`` only handles switch errors (and exits 2 with the help text);
here bad usage becomes one line and exit 3, and the project's error family
becomes one line with its exit code (docs/spec.md §2). Tracebacks only at debug level.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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


def fail(prog: str, line: str, code: int, *, as_json: bool = False) -> None:
    """Print the one error line on stderr and, for ``--json``, the same as a JSON
    object on stdout, so scripts need not parse stderr (docs/spec.md §2)."""
    print(f"{prog}: error: {line}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": line, "exit_code": code}))


def run_main(app: type[cli.Application]) -> None:
    """A console script's entry point: run ``app`` and exit with its status.

    A reader that goes away (``tcv scan | head``) ends the program quietly with
    the status a shell expects of a command killed by SIGPIPE (141), not with a
    traceback or exit 1.
    """
    try:
        _, code = app.run(sys.argv, exit=False)
        sys.stdout.flush()
    except BrokenPipeError:
        _die_of_sigpipe()
    sys.exit(code)


def _die_of_sigpipe() -> None:
    # Nothing more can reach the reader; point stdout at /dev/null so the
    # interpreter's own flush at exit cannot raise again, then die as `head`'s
    # writers do.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(128 + signal.SIGPIPE)  # not reached where SIGPIPE can be raised


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a cancelled CI job, ``kill``) like Ctrl-C, so the same
    ``finally`` blocks remove working containers, staging and half-installed
    kernel directories (docs/spec.md §8)."""

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

    def _parse_and_dispatch(self, argv):
        prog = str(self.PROGNAME or "tcv")
        as_json = "--json" in argv
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
            fail(prog, f"{first} — run '{prog} --help' for usage", EXIT_USAGE, as_json=as_json)
            return self, EXIT_USAGE
        try:
            result = super()._parse_and_dispatch(argv)
            if getattr(self, "parent", None) is None:
                sys.stdout.flush()  # an EPIPE surfaces here, not in plumbum's handler
            return result
        except BrokenPipeError:
            _die_of_sigpipe()
            raise
        except TcvError as err:
            if tcvlog.debug_enabled():
                traceback.print_exc()
            fail(prog, err.line(), err.exit_code, as_json=as_json)
            return self, err.exit_code
        except KeyboardInterrupt:
            line = "interrupted; nothing half-done was left behind"
            fail(prog, line, EXIT_INTERRUPTED, as_json=as_json)
            return self, EXIT_INTERRUPTED
