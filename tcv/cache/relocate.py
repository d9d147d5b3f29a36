"""Point an entry's group files at where the consuming Triton will read it.

Triton 3.x writes ``__grp__<kernel>.json`` as ``{"child_paths": {file: absolute
path}}`` and treats a group whose paths do not exist as a miss, recompiling
silently (runtime/cache.py ``FileCacheManager.get_group``). So every install
rewrites the dict form to the new directory (SPEC §4). The list form (2.x, and
Triton's ``RemoteCacheManager.put_group``) holds bare names and needs nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import uuid
from pathlib import Path

from tcv.cache.metadata import group_filenames
from tcv.image import jsonbound


def relocate_group(data: object, new_dir: str) -> object:
    """The group document with dict-form ``child_paths`` moved to ``new_dir``
    (``new_dir/<basename of the old path>``); any other shape unchanged.
    Pure: returns a new object, never edits ``data``."""
    if not isinstance(data, dict):
        return data
    children = data.get("child_paths")
    if not isinstance(children, dict):
        return data
    moved = {
        name: posixpath.join(new_dir, posixpath.basename(path) if isinstance(path, str) else name)
        for name, path in children.items()
    }
    return {**data, "child_paths": moved}


def _write_atomically(path: Path, text: str, like: os.stat_result) -> None:
    """Write next to ``path`` under a Triton-style temp name (so a crash leaves
    a ``*.tmp.pid_*`` file that scans skip), keep mode and owner, then
    ``os.replace``: readers see the old or the new file, never half of one."""
    tmp = path.with_name(f"{path.name}.tmp.pid_{os.getpid()}_{uuid.uuid4().hex}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, like.st_mode & 0o7777)
        if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
            # The hook writes files for the container's user; keep them theirs.
            with contextlib.suppress(PermissionError):
                os.chown(tmp, like.st_uid, like.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def relocate_entry(entry_dir: Path, new_dir: str) -> int:
    """Rewrite each ``__grp__*.json`` in ``entry_dir`` for ``new_dir`` (where
    the consuming Triton will read this entry; inside a container for the
    hook). Returns how many files changed. Unreadable or corrupt group files
    are left as they are: Triton already treats them as a miss."""
    entry_dir = Path(entry_dir)
    changed = 0
    for name in group_filenames(os.listdir(entry_dir)):
        path = entry_dir / name
        try:
            st = os.stat(path, follow_symlinks=False)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            data = jsonbound.loads(path.read_bytes(), "group file", max_bytes=1 << 20)
        except (OSError, jsonbound.JsonBoundError):
            continue
        moved = relocate_group(data, new_dir)
        if moved == data:
            continue
        # Same serialisation as Triton's put_group: json.dumps defaults.
        _write_atomically(path, json.dumps(moved), st)
        changed += 1
    return changed
