"""What the hook's store holds, and removing from it: by age, by total size (least
recently used first), images no longer in local storage. Used by ``tcv hook
store`` and by the hook itself to stay under its cap.

Every removal takes the image's lock (the lock a fill or a render holds, and a
start holds shared while it records which view it mounts), and a view that a
running container uses (``upper.views_in_use``) is never removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tcv.hook import upper
from tcv.hook.lru import Entry, choose_evictions, older_than
from tcv.hook.store import STORE_FILE, Store, local_digest, split_transport
from tcv.hook.view import list_views, remove_view, tree_size

SIZE_FILE = "size"


@dataclass(frozen=True)
class ImageInfo:
    digest: str
    image: str
    dir: Path


def _image_digest(name: str) -> str:
    algo, _, hexpart = name.partition("-")
    return f"{algo}:{hexpart}"


def stored_images(store: Store) -> list[ImageInfo]:
    try:
        names = sorted(os.listdir(store.images))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        folder = store.images / name
        try:
            record = json.loads((folder / STORE_FILE).read_bytes())
        except (OSError, ValueError):
            continue
        out.append(ImageInfo(_image_digest(name), str(record.get("image", "")), folder))
    return out


def image_size(folder: Path) -> int:
    """The image's disk use, measured once and kept beside it."""
    try:
        return int((folder / SIZE_FILE).read_text())
    except (OSError, ValueError):
        pass
    size = tree_size(folder)
    with contextlib.suppress(OSError):
        (folder / SIZE_FILE).write_text(str(size))
    return size


def _mtime(path: Path, default: float = 0.0) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def inventory(store: Store) -> list[Entry]:
    """Every image and view of the store, with size, last use, and whether in use.
    An image's last use is its newest view's (a start uses an image through a view)."""
    in_use = upper.views_in_use(store.root)
    views = list_views(store.root)
    entries = [
        Entry("view", v.key, v.size, v.last_used(), v.key in in_use, v.digest) for v in views
    ]
    for img in stored_images(store):
        views_used = [e.last_used for e in entries if e.digest == img.digest]
        used = max([_mtime(img.dir / STORE_FILE), *views_used])
        entries.append(Entry("image", img.image, image_size(img.dir), used, False, img.digest))
    return entries


def remove(store: Store, entry: Entry) -> bool:
    """Remove one entry under its image's lock; False when it is in use meanwhile."""
    with store.locked(entry.digest):
        if entry.kind == "view":
            if entry.name in upper.views_in_use(store.root):
                return False
            for v in list_views(store.root):
                if v.key == entry.name:
                    remove_view(v)
            return True
        from tcv.hook.store import digest_dirname

        folder = store.images / digest_dirname(entry.digest)
        aside = store.root / "tmp" / f"gone-{folder.name}-{os.getpid()}"
        try:
            os.rename(folder, aside)
        except FileNotFoundError:
            return True
        shutil.rmtree(aside, ignore_errors=True)
        return True


def absent_from_storage(entries: list[Entry], env: Mapping[str, str]) -> list[Entry]:
    """Images taken from local storage that local storage no longer holds under that
    digest, and their views (those not in use)."""
    gone: set[str] = set()
    for e in entries:
        if e.kind != "image":
            continue
        transport, name = split_transport(e.name)
        if transport == "containers-storage:" and local_digest(name, env) != e.digest:
            gone.add(e.digest)
    return [e for e in entries if e.digest in gone and not e.in_use]


def prune(
    store: Store,
    *,
    max_size: int | None = None,
    max_age: float | None = None,
    absent: bool = False,
    env: Mapping[str, str] | None = None,
    now: float | None = None,
) -> list[Entry]:
    """Remove what the rules ask for; the entries removed."""
    import time

    upper.sweep(store.root)  # containers that are gone use no view
    entries = inventory(store)
    chosen: dict[tuple[str, str, str], Entry] = {}
    if max_age is not None:
        for e in older_than(entries, (now or time.time()) - max_age):
            chosen[(e.kind, e.name, e.digest)] = e
    if absent:
        for e in absent_from_storage(entries, env or os.environ):
            chosen[(e.kind, e.name, e.digest)] = e
    if max_size is not None:
        rest = [e for e in entries if (e.kind, e.name, e.digest) not in chosen]
        for e in choose_evictions(rest, max_size):
            chosen[(e.kind, e.name, e.digest)] = e
    removed = []
    for e in chosen.values():
        if remove(store, e):
            removed.append(e)
    return removed
