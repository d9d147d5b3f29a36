"""Is an unpacked kernel directory safe to install? (docs/spec.md §4, §8)

The files of a kernel came from an image, so what they say is checked before
the kernel reaches DEST, whether or not the image manifest lists them:

- every entry is a regular file (a symlink or anything else: skipped);
- the metadata JSON, when the kernel has one, is an object;
- every group file (``__grp__*.json``) names only files of this same
  directory: the dict form of Triton 3.x (``{name: path}``, the path ending in
  that name) and the list form of 2.x (bare names, which Triton joins to the
  cache directory, so ``/etc/passwd`` would be read as it is).

:func:`kernel_problem` returns the reason a kernel is skipped, or None.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Collection
from pathlib import Path

from tcv.cache.metadata import group_name, metadata_filename
from tcv.image.jsonbound import JsonBoundError, loads

MAX_GROUP_BYTES = 1 << 20  # a group file lists a handful of names
MAX_METADATA_BYTES = 16 << 20  # as the cache scanner allows


def _plain(name: object) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\0" not in name
    )


def group_problem(doc: object, names: Collection[str]) -> str | None:
    """Why the decoded group document ``doc`` of a kernel holding the files
    ``names`` is unsafe, or None. Pure."""
    if not isinstance(doc, dict):
        return "is not a JSON object"
    children = doc.get("child_paths")
    if isinstance(children, dict):
        for child, path in children.items():
            if not _plain(child) or child not in names:
                return f"names {child!r}, not a file of this kernel directory"
            if not isinstance(path, str) or "\0" in path or ".." in path.split("/"):
                return f"gives {child!r} the path {path!r}"
            if posixpath.basename(path) != child:
                return f"gives {child!r} the path {path!r}, of another file"
        return None
    if isinstance(children, list):
        for child in children:
            if not _plain(child) or child not in names:
                return f"names {child!r}, not a file of this kernel directory"
        return None
    return "has no child_paths list or object"


def _load(dir_fd: int, name: str, limit: int, what: str) -> object:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise JsonBoundError(f"{what} is implausibly large ({size} bytes, at most {limit})")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    return loads(data, what, max_bytes=limit)


def kernel_problem(path: Path) -> str | None:
    """Why the kernel directory ``path`` must not be installed, or None."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"cannot read the kernel directory: {err.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return "the kernel directory is not a directory in the image"
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        return f"cannot read the kernel directory: {err.strerror}"
    try:
        names: list[str] = []
        with os.scandir(dfd) as it:
            for entry in it:
                if entry.is_symlink():
                    return f"{entry.name} is a symlink"
                if entry.is_file(follow_symlinks=False):
                    names.append(entry.name)
                elif not entry.is_dir(follow_symlinks=False):
                    return f"{entry.name} is not a regular file"
        present = set(names)
        for name in sorted(names):
            if group_name(name) is None:
                continue
            try:
                doc = _load(dfd, name, MAX_GROUP_BYTES, f"group file {name}")
            except JsonBoundError as err:
                return err.message
            except OSError as err:
                return f"cannot read group file {name}: {err.strerror}"
            why = group_problem(doc, present)
            if why is not None:
                return f"group file {name} {why}"
        meta = metadata_filename(names)
        if meta is not None:
            try:
                doc = _load(dfd, meta, MAX_METADATA_BYTES, f"metadata {meta}")
            except JsonBoundError as err:
                return err.message
            except OSError as err:
                return f"cannot read metadata {meta}: {err.strerror}"
            if not isinstance(doc, dict):
                return f"metadata {meta} is a JSON {type(doc).__name__}, not an object"
        return None
    finally:
        os.close(dfd)
