"""``--with-autotune`` on an Inductor cache: read its ``<xx>/*.best_config``
files (:mod:`tcv.cache.bestconfig`) to pack them beside the Triton results.

Only the two-character directories at the top of the Inductor cache directory
are looked into (``codecache.get_path``: ``cache_dir()/basename[1:3]``), never
through a symlink; each file is read once, bounded, checked as Inductor reads
it and kept in memory, so what is hashed is what is packed. A file that is not
one is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tcv.cache import bestconfig
from tcv.cache.autotune import AutotuneEntry
from tcv.cache.kernel import FileInfo
from tcv.image import jsonbound

_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass
class BestConfigs:
    """The files to pack, by ``<xx>`` directory, their bytes (keyed by their
    path in the cache tree, ``inductor.best_config/<xx>/<name>``) and what was
    skipped, as (``<xx>/<name>``, reason)."""

    entries: list[AutotuneEntry] = field(default_factory=list)
    contents: dict[str, bytes] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(len(b) for b in self.contents.values())


def _read(path: str) -> bytes:
    """At most FILE_MAX + 1 bytes of the regular file ``path`` (not a symlink)."""
    fd = os.open(path, _OPEN)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(0, "not a regular file")
        chunks = []
        left = bestconfig.FILE_MAX + 1
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def file_problem(data: bytes, name: str) -> str | None:
    """Why the bytes of ``name`` cannot be packed, or None."""
    if len(data) > bestconfig.FILE_MAX:
        return f"is larger than {bestconfig.FILE_MAX} bytes: not a best_config"
    try:
        doc = jsonbound.loads(
            data, name, max_bytes=bestconfig.FILE_MAX, max_depth=bestconfig.DEPTH_MAX
        )
    except jsonbound.JsonBoundError as err:
        return err.message.removeprefix(name + " ")
    problem = bestconfig.config_problem(doc)
    return f"{problem}: Inductor cannot read it" if problem else None


def _listing(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda d: d.name)
    except OSError:
        return []


def scan_best_configs(inductor_dir: Path) -> BestConfigs:
    """The ``<xx>/*.best_config`` files of the Inductor cache ``inductor_dir``."""
    out = BestConfigs()
    total = 0
    for sub in _listing(inductor_dir):
        if not bestconfig.is_subdir(sub.name) or not sub.is_dir(follow_symlinks=False):
            continue
        files: dict[str, FileInfo] = {}
        for f in _listing(Path(sub.path)):
            if not f.name.endswith(bestconfig.SUFFIX):
                continue
            where = bestconfig.ident(sub.name, f.name)
            if not bestconfig.is_file_name(f.name):
                out.skipped.append((where, "not a plain best_config file name"))
                continue
            if sum(len(e.files) for e in out.entries) + len(files) >= bestconfig.COUNT_MAX:
                out.skipped.append((where, f"more than {bestconfig.COUNT_MAX} best_config files"))
                continue
            try:
                data = _read(f.path)
            except OSError as err:
                if f.is_symlink():
                    reason = "a symlink, not followed"
                elif isinstance(err, IsADirectoryError):
                    reason = "not a regular file"
                else:
                    reason = f"cannot read: {err.strerror}"
                out.skipped.append((where, reason))
                continue
            problem = file_problem(data, f.name)
            if problem is None and total + len(data) > bestconfig.TOTAL_MAX:
                problem = f"the best_config files exceed {bestconfig.TOTAL_MAX} bytes in all"
            if problem is not None:
                out.skipped.append((where, problem))
                continue
            total += len(data)
            files[f.name] = FileInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest())
            out.contents[f"{bestconfig.TREE}/{where}"] = data
        if files:
            out.entries.append(AutotuneEntry(sub.name, files))
    return out
