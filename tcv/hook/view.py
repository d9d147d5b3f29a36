"""Rendered views: the read-only lower layer a container's Triton cache is mounted from.

One view per (image digest, set of fitting kernels, container-side cache path,
owning uid:gid), rendered once and reused by every later container of that
tuple, across host restarts (docs/spec.md §7)::

    views/<key>/tree/<KEY>/...   the fitting kernel directories: group files
                                 naming the container path, files owned by the
                                 container user; copies, never hard links into
                                 the stored image (a chown or a write through a
                                 link would change the image for every tuple)
    views/<key>/view.json        what the view is for, its size, when rendered
    views/<key>/used             its mtime is the view's last use (LRU)

Rendered into ``tmp/view-*`` under the image's lock and renamed into place,
so a reader sees a whole view or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tcv.hook.state import HookError

VIEWS = "views"
TREE = "tree"
VIEW_FILE = "view.json"
USED_FILE = "used"
# Part of the key: a change of what a view holds renders new ones.
RENDER_FORMAT = 1


@dataclass(frozen=True)
class ViewSpec:
    """What a view is for."""

    digest: str
    keys: tuple[str, ...]
    container_path: str
    owner: tuple[int, int]

    @classmethod
    def of(
        cls, digest: str, keys: Sequence[str], container_path: str, owner: tuple[int, int]
    ) -> ViewSpec:
        return cls(digest, tuple(sorted(set(keys))), container_path, owner)

    @property
    def key(self) -> str:
        doc = [RENDER_FORMAT, self.digest, list(self.keys), self.container_path, *self.owner]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class View:
    key: str
    dir: Path
    digest: str
    container_path: str
    owner: tuple[int, int]
    kernels: int
    size: int
    rendered: float

    @property
    def tree(self) -> Path:
        return self.dir / TREE

    def last_used(self) -> float:
        try:
            return (self.dir / USED_FILE).stat().st_mtime
        except OSError:
            return self.rendered


def views_dir(store_root: Path) -> Path:
    return Path(store_root) / VIEWS


def read_view(folder: Path) -> View | None:
    """The view in ``folder``, or None when there is none (or a damaged one)."""
    try:
        doc = json.loads((folder / VIEW_FILE).read_bytes())
        return View(
            key=folder.name,
            dir=folder,
            digest=str(doc["digest"]),
            container_path=str(doc["container_path"]),
            owner=(int(doc["owner"][0]), int(doc["owner"][1])),
            kernels=int(doc["kernels"]),
            size=int(doc["size"]),
            rendered=float(doc["rendered"]),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def find_view(store_root: Path, spec: ViewSpec) -> View | None:
    return read_view(views_dir(store_root) / spec.key)


def list_views(store_root: Path) -> list[View]:
    try:
        names = sorted(os.listdir(views_dir(store_root)))
    except FileNotFoundError:
        return []
    return [v for v in (read_view(views_dir(store_root) / n) for n in names) if v is not None]


def touch(view: View) -> None:
    """Mark ``view`` as used now (best effort: the LRU order only)."""
    path = view.dir / USED_FILE
    try:
        os.utime(path)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            path.touch()
    except OSError:
        pass


def tree_size(root: Path) -> int:
    """Disk use of a tree (allocated blocks), without following links."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def render_view(store_root: Path, spec: ViewSpec, cache_root: Path) -> View:
    """Render ``spec`` from the stored image's ``cache_root``; the caller holds the
    image's lock and has checked that no view exists yet."""
    from tcv.cache.keys import LOCK_NAME
    from tcv.install import install_kernels

    root = Path(store_root)
    (root / "tmp").mkdir(mode=0o700, parents=True, exist_ok=True)
    views_dir(root).mkdir(mode=0o700, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="view-", dir=root / "tmp"))
    try:
        tree = work / TREE
        tree.mkdir(mode=0o755)
        install_kernels(
            cache_root, spec.keys, tree, target_root=spec.container_path, owner=spec.owner
        )
        # The install lock is no kernel: the container must not see it.
        (tree / LOCK_NAME).unlink(missing_ok=True)
        os.chown(tree, *spec.owner)
        doc = {
            "digest": spec.digest,
            "container_path": spec.container_path,
            "owner": list(spec.owner),
            "kernels": len(spec.keys),
            "size": tree_size(tree),
            "rendered": time.time(),
        }
        (work / VIEW_FILE).write_text(json.dumps(doc))
        (work / USED_FILE).touch()
        final = views_dir(root) / spec.key
        try:
            os.rename(work, final)
        except OSError as err:
            raise HookError(f"cannot place the rendered view {final}: {err.strerror}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    view = read_view(final)
    assert view is not None
    return view


def remove_view(view: View) -> None:
    """Remove a view (the caller holds its image's lock and knows no container uses it):
    renamed aside first, so no start ever mounts half of one."""
    aside = view.dir.parent.parent / "tmp" / f"gone-{view.key}-{os.getpid()}"
    try:
        os.rename(view.dir, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)
