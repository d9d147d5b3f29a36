"""A Triton cache manager that reads read-only caches and writes elsewhere.

A cache image mounted read-only (Kubernetes ImageVolume, ``podman run --mount
type=image``) cannot be Triton's ``TRITON_CACHE_DIR``: Triton's own
``FileCacheManager`` creates ``<dir>/<KEY>/`` for every lookup and writes every
new kernel (and the launcher ``.so`` it builds on first launch) there, so the
first miss fails with ``OSError: [Errno 30] Read-only file system``.

Triton's extension point is ``TRITON_CACHE_MANAGER=MODULE:CLASS`` (triton/knobs.py
``cache.manager_class``, a subclass of ``triton.runtime.cache.CacheManager``,
constructed as ``cls(key, override=..., dump=...)`` by ``runtime/cache.py``
``get_cache_manager``). With::

    TRITON_CACHE_MANAGER=tcv.triton_cache:ReadOnlyFallbackCacheManager
    TCV_TRITON_READONLY_DIRS=/triton-cache            # ':'-separated, searched in order
    TRITON_CACHE_DIR=/tmp/triton-cache                 # writable (Triton's usual default)

lookups try each read-only directory first, then the writable one; every write
goes to the writable one. A read-only hit needs group files that name the
mount's own paths: build the image with ``tcv -c --mount-path /triton-cache``.

This module is loaded by Triton, inside the workload: it imports only the
standard library and Triton.
"""

from __future__ import annotations

import json
import os

from triton import knobs
from triton.runtime.cache import CacheManager, FileCacheManager

READONLY_DIRS_ENV = "TCV_TRITON_READONLY_DIRS"


def readonly_dirs(env: dict[str, str] | None = None) -> list[str]:
    """The read-only cache roots from ``$TCV_TRITON_READONLY_DIRS``, in order."""
    value = (os.environ if env is None else env).get(READONLY_DIRS_ENV, "")
    return [d for d in value.split(os.pathsep) if d]


def _group(path: str) -> dict[str, str] | None:
    """A group file's children when every one exists (Triton's own rule,
    runtime/cache.py ``FileCacheManager.get_group``), else None."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    children = data.get("child_paths") if isinstance(data, dict) else None
    if not isinstance(children, dict):
        return None
    if not all(isinstance(p, str) and os.path.exists(p) for p in children.values()):
        return None
    return dict(children)


class ReadOnlyFallbackCacheManager(CacheManager):
    """Read from the read-only roots, then the writable one; write only to the
    writable one (``TRITON_CACHE_DIR``, else Triton's default), created on the
    first write."""

    def __init__(self, key: str, override: bool = False, dump: bool = False) -> None:
        self.key = key
        self._plain = override or dump
        self._writer: FileCacheManager | None = None
        if self._plain:  # TRITON_OVERRIDE_DIR / TRITON_DUMP_DIR: Triton's own handling
            self._writer = FileCacheManager(key, override=override, dump=dump)
            self._roots: list[str] = []
        else:
            self._roots = [os.path.join(d, key) for d in readonly_dirs()]
            if knobs.cache.dir:
                self._roots.append(os.path.join(knobs.cache.dir, key))

    @property
    def writer(self) -> FileCacheManager:
        if self._writer is None:
            self._writer = FileCacheManager(self.key)
        return self._writer

    def get_file(self, filename: str) -> str | None:
        if self._plain:
            return self.writer.get_file(filename)
        for root in self._roots:
            path = os.path.join(root, filename)
            if os.path.exists(path):
                return path
        return None

    def get_group(self, filename: str) -> dict[str, str] | None:
        if self._plain:
            return self.writer.get_group(filename)
        for root in self._roots:
            found = _group(os.path.join(root, f"__grp__{filename}"))
            if found is not None:
                return found
        return None

    def put(self, data: bytes | str, filename: str, binary: bool = True) -> str:
        return self.writer.put(data, filename, binary=binary)

    def put_group(self, filename: str, group: dict[str, str]) -> str:
        return self.writer.put_group(filename, group)
