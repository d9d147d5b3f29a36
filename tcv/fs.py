"""Atomic filesystem work, in one place: a rename that never replaces, a lock
file, and a write that readers see whole or not at all.

- :func:`rename_noreplace` — ``renameat2(RENAME_NOREPLACE)`` (Linux 3.15+):
  a plain ``rename(2)`` silently replaces an empty directory at the target,
  so two installers racing for one kernel KEY would both "win". Where the
  kernel or filesystem lacks the flag, check-then-rename (not atomic, but the
  callers hold a lock there too).
- :func:`lock` — an ``flock(2)`` on a lock file, opened without following a
  symlink and released by closing it; ``flock`` locks die with the process, so
  a killed holder never leaves a stale lock.
- :func:`write_atomic` — write a temporary file beside the target (named as
  Triton names its own, ``<name>.tmp.pid_<pid>_<uuid>``, which cache scans
  skip) and ``os.replace`` it over the target.
- :func:`is_real_dir`, :func:`is_real_file` — what a path is without following
  a symlink there (an unpacked image's trees are checked this way).

Two locks stay with their owners because they lock differently: staging's
liveness probe (``LOCK_NB`` on a run's own file, :mod:`tcv.staging`) and the
hook log's rotation (a lock on the log itself, :mod:`tcv.hook.logfile`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc: ctypes.CDLL | None = None


def rename_noreplace(
    src: str, dst: str, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None
) -> None:
    """Rename ``src`` to ``dst``; :class:`FileExistsError` when anything is at
    ``dst``, even an empty directory."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    rc = _libc.renameat2(
        _AT_FDCWD if src_dir_fd is None else src_dir_fd,
        os.fsencode(src),
        _AT_FDCWD if dst_dir_fd is None else dst_dir_fd,
        os.fsencode(dst),
        _RENAME_NOREPLACE,
    )
    if rc == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.ENOSYS, errno.EINVAL):
        raise OSError(err, os.strerror(err), dst)
    # Old kernel or filesystem without the flag: check, then rename.
    try:
        os.stat(dst, dir_fd=dst_dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def open_lock(path: str | Path, *, dir_fd: int | None = None, mode: int = 0o600) -> int:
    """Open (creating) the lock file ``path`` for :func:`lock`; never through a
    symlink. Raises :class:`OSError` — callers word it for their user."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, mode, dir_fd=dir_fd)


@contextlib.contextmanager
def lock(fd: int, *, shared: bool = False) -> Iterator[None]:
    """Hold ``flock`` on ``fd`` (from :func:`open_lock`) for the ``with`` body,
    exclusive unless ``shared``; the descriptor is closed on the way out,
    which releases the lock. A wait may be interrupted by a signal handler
    (the hook's time bound)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_atomic(
    path: str | Path,
    data: bytes | str,
    *,
    mode: int = 0o644,
    fsync: bool = False,
    dir_fd: int | None = None,
) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old file or the
    new one, never part of either; ``fsync`` makes the new bytes durable
    before the rename. ``dir_fd``: ``path`` is a name in that directory (the
    walk to it was made without following links). A failure leaves no
    temporary file behind."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f"{path.name}.tmp.pid_{os.getpid()}_{uuid.uuid4().hex}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)  # whatever the umask
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def is_real_dir(path: str | Path) -> bool:
    """A directory itself, not a symlink to one (nor missing, nor unreadable)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def is_real_file(path: str | Path) -> bool:
    """A regular file itself, not a symlink to one (nor missing, nor unreadable)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
