"""Staging directories under ``/tmp/.tcv/`` (SPEC §8).

A fresh 0700 directory per run, removed on success, failure and Ctrl-C.

``/tmp/.tcv`` is shared by every user of the host, like ``/tmp`` itself: TCV
makes it sticky and world-writable (1777) and each run's directory private
(0700), so a rootless ``tcv -c`` works after root has used TCV. When the shared
root is unusable (a symlink, someone else's private directory), a per-user
``/tmp/.tcv-<uid>`` is used instead. ``$TCV_STAGING_ROOT`` overrides both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

STAGING_ROOT_ENV = "TCV_STAGING_ROOT"
DEFAULT_STAGING_ROOT = "/tmp/.tcv"


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


@contextlib.contextmanager
def staging_dir(prefix: str = "run-") -> Iterator[Path]:
    """Yield a fresh private directory; always removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=usable_root()))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
