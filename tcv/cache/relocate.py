"""Point an entry's group files at where the consuming Triton will read it.

Triton 3.x writes ``__grp__<kernel>.json`` as ``{"child_paths": {file: absolute
path}}`` and treats a group whose paths do not exist as a miss, recompiling
silently (runtime/cache.py ``FileCacheManager.get_group``). So every install
rewrites the dict form to the new directory (docs/spec.md §4). The list form (2.x, and
Triton's ``RemoteCacheManager.put_group``) holds bare names and needs nothing.
"""

from __future__ import annotations

import posixpath


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
