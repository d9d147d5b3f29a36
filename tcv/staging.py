"""Staging directories under ``/tmp/.tcv/`` (SPEC §8).

A fresh 0700 directory per run, removed on success, failure and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

STAGING_ROOT_ENV = "TCV_STAGING_ROOT"
DEFAULT_STAGING_ROOT = "/tmp/.tcv"


def staging_root() -> Path:
    return Path(os.environ.get(STAGING_ROOT_ENV, DEFAULT_STAGING_ROOT))


@contextlib.contextmanager
def staging_dir(prefix: str = "run-") -> Iterator[Path]:
    """Yield a fresh private directory; always removed afterwards."""
    root = staging_root()
    root.mkdir(mode=0o1777 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
