"""Staging directories under ``/tmp/.tcv/`` (docs/spec.md §8).

A fresh 0700 directory per run, removed on success, failure and Ctrl-C.

``/tmp/.tcv`` is shared by every user of the host, like ``/tmp`` itself: TCV
makes it sticky and world-writable (1777) and each run's directory private
(0700), so a rootless ``tcv -c`` works after root has used TCV. When the shared
root is unusable (a symlink, someone else's private directory), a per-user
``/tmp/.tcv-<uid>`` is used instead. ``$TCV_STAGING_ROOT`` overrides both.

A run killed outright (SIGKILL, a crash, the machine stopping) cannot remove
its directory, so the next run does: each directory is named
``<action>-<pid>-<random>`` and holds ``.owner``, a file its run keeps locked
(``flock``) while it lives. A directory whose lock is free and whose process
is gone is stale and is removed before a new one is made; the lock covers a
run in another pid namespace, the pid a run that has not taken its lock yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

STAGING_ROOT_ENV = "TCV_STAGING_ROOT"
DEFAULT_STAGING_ROOT = "/tmp/.tcv"
OWNER_FILE = ".owner"
_RUN_DIR = re.compile(r"^[a-z]+-(\d+)-[A-Za-z0-9_]+$")


def staging_root() -> Path:
    """The configured root (``$TCV_STAGING_ROOT`` or ``/tmp/.tcv``)."""
    return Path(os.environ.get(STAGING_ROOT_ENV, DEFAULT_STAGING_ROOT))


def _trusted_dir(path: Path, *, shared: bool) -> bool:
    """A real directory (not a link), owned by root or us, that we may write in;
    a shared one must be sticky so other users cannot remove our run dirs."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, os.geteuid()):
        return False
    if shared and st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def usable_root() -> Path:
    """The directory to make this run's staging directory in, created if needed."""
    if os.environ.get(STAGING_ROOT_ENV):
        root = staging_root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return root
    shared = Path(DEFAULT_STAGING_ROOT)
    with contextlib.suppress(FileExistsError):
        os.mkdir(shared, 0o700)
    with contextlib.suppress(OSError):
        st = os.lstat(shared)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            # Shared like /tmp (chmod: mkdir's mode is cut by the umask).
            os.chmod(shared, 0o1777)
    if _trusted_dir(shared, shared=True):
        return shared
    own = Path(f"{DEFAULT_STAGING_ROOT}-{os.geteuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(own, 0o700)
    if not _trusted_dir(own, shared=False):
        raise PermissionError(13, "neither it nor a private fallback is usable", str(own))
    return own


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (ours or another user's). A zombie does
    not: a killed run whose parent died too may stay one for good where
    nothing reaps orphans (pid 1 of many containers)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return True  # no /proc to ask: it exists
    return stat_line[stat_line.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def _abandoned(path: str, pid: int) -> bool:
    """Whether the run that made ``path`` is gone: its lock free, its pid dead."""
    if process_alive(pid):
        return False
    try:
        fd = os.open(os.path.join(path, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # killed before it took its lock
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: the run lives (in another pid namespace)
    finally:
        os.close(fd)
    return True


def sweep_stale(root: Path) -> list[str]:
    """Remove the run directories under ``root`` whose run is gone; returns
    their names. Only directories we own (or any, as root) are considered."""
    removed: list[str] = []
    try:
        listing = list(os.scandir(root))
    except OSError:
        return removed
    euid = os.geteuid()
    for entry in listing:
        m = _RUN_DIR.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or (euid != 0 and st.st_uid != euid):
            continue
        if _abandoned(entry.path, int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


@contextlib.contextmanager
def staging_dir(prefix: str = "run-") -> Iterator[Path]:
    """Yield a fresh private directory (0700, ours, locked while we run);
    always removed afterwards. Stale directories of dead runs go first."""
    root = usable_root()
    sweep_stale(root)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
    try:
        os.chmod(path, 0o700)
        fd = os.open(
            path / OWNER_FILE,
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
