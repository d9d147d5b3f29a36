"""The hook's log file when there is no syslog: bounded in size, rotated.

Many hook processes (concurrent container starts) append to one file, so the
rotation is done under an exclusive ``flock`` of the file itself, and each
record is one ``O_APPEND`` write: no line is lost or interleaved, and the
file never grows past ``max_bytes`` by more than one record. ``hook.log`` is
renamed to ``hook.log.1`` (and so on up to ``backups``) when full.
"""

from __future__ import annotations

import fcntl
import logging
import os

DEFAULT_MAX_BYTES = 4 << 20
DEFAULT_BACKUPS = 3


def rotation_names(path: str, backups: int) -> list[tuple[str, str]]:
    """The renames of one rotation, oldest first: (from, to)."""
    names = [path] + [f"{path}.{i}" for i in range(1, backups + 1)]
    return [(names[i], names[i + 1]) for i in range(backups - 1, -1, -1)]


class BoundedFileHandler(logging.Handler):
    def __init__(
        self, path: str, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        super().__init__()
        self.path = path
        self.max_bytes = max_bytes
        self.backups = max(1, backups)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode(errors="replace")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_size + len(data) > self.max_bytes:
                    same = os.stat(self.path)
                    if (same.st_ino, same.st_dev) == (os.fstat(fd).st_ino, os.fstat(fd).st_dev):
                        for old, new in rotation_names(self.path, self.backups):
                            if os.path.exists(old):
                                os.replace(old, new)
                    os.close(fd)
                    fd = os.open(
                        self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                    )
                    fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, data)
            finally:
                os.close(fd)
        except Exception:
            self.handleError(record)
