"""The project's error family and the exit codes of docs/spec.md §2.

Everything below the CLI raises one of these; the CLI base turns them into one
line on stderr and the exit code. Never ``sys.exit`` below the CLI.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_EXTRACT = 1  # extraction failed
EXIT_CREATE = 2  # creation failed
EXIT_USAGE = 3  # bad usage or configuration
EXIT_INCOMPATIBLE = 4  # nothing in the image fits this host
EXIT_NOT_FOUND = 5  # image not found, registry unreachable, or not a cache image
EXIT_INTERRUPTED = 130


class TcvError(Exception):
    """A failure a person can act on: what went wrong and what to do."""

    exit_code = EXIT_EXTRACT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The one line shown to the user."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ExtractError(TcvError):
    exit_code = EXIT_EXTRACT


class CreateError(TcvError):
    exit_code = EXIT_CREATE


class UsageError(TcvError):
    exit_code = EXIT_USAGE


class IncompatibleError(TcvError):
    exit_code = EXIT_INCOMPATIBLE


class ImageNotFoundError(TcvError):
    exit_code = EXIT_NOT_FOUND


class NotACacheError(TcvError):
    """The image exists but is not a Triton cache image (same exit as not found)."""

    exit_code = EXIT_NOT_FOUND


class ToolError(TcvError):
    """An external tool (buildah, podman, skopeo) failed.

    Carries the argv, return code and the last lines of its stderr. Callers
    that know the action (create, extract) re-raise it with their exit code.
    """

    def __init__(
        self,
        message: str,
        *,
        argv: list[str],
        returncode: int | None,
        stderr_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.argv = argv
        self.returncode = returncode
        self.stderr_tail = stderr_tail
