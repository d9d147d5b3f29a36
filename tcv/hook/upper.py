"""Per-container state in the store: the writable layer of a mounted cache, and
which view the container uses (so that no view in use is ever pruned)::

    containers/<id>/record.json   container pid and its start time, view, digest
    containers/<id>/upper/        the overlay's upper layer (cache in the rootfs)
    containers/<id>/work/         the overlay's work directory

Made at ``prestart``, removed at ``poststop``. A container whose stop was never
seen (SIGKILL of conmon, a host crash) is recognised by its pid: gone, or
reused by a process that started at another time. The sweep removes those.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tcv import fs
from tcv.hook.state import HookError

CONTAINERS = "containers"
RECORD = "record.json"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Record:
    id: str
    pid: int
    start: int
    view: str
    digest: str


def parse_start_time(stat: bytes) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks since boot); the
    command name (field 2) may hold spaces and parentheses."""
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return parse_start_time(f.read())
    except OSError:
        return None


def check_id(cid: str) -> str:
    if not _ID.match(cid):
        raise HookError(f"refusing the container id {cid!r}: not a plain name")
    return cid


def containers_dir(store_root: Path) -> Path:
    return Path(store_root) / CONTAINERS


def container_dir(store_root: Path, cid: str) -> Path:
    return containers_dir(store_root) / check_id(cid)


def write_record(store_root: Path, record: Record) -> Path:
    """Make the container's directory and its record; returns the directory."""
    folder = container_dir(store_root, record.id)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fs.write_atomic(folder / RECORD, json.dumps(record.__dict__))
    return folder


def make_layer_dirs(folder: Path, owner: tuple[int, int], *, upper: bool) -> tuple[Path, Path]:
    """``upper`` (owned by the container user: it becomes the cache directory the
    container writes into) and ``work`` under the container's directory."""
    up, work = folder / "upper", folder / "work"
    if upper:
        up.mkdir(mode=0o755, exist_ok=True)
        os.chown(up, *owner)
    work.mkdir(mode=0o700, exist_ok=True)
    return up, work


def read_record(folder: Path) -> Record | None:
    try:
        doc = json.loads((folder / RECORD).read_bytes())
        return Record(
            str(doc["id"]), int(doc["pid"]), int(doc["start"]), str(doc["view"]), str(doc["digest"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def alive(record: Record) -> bool:
    return process_start(record.pid) == record.start


def remove_container(store_root: Path, cid: str) -> bool:
    """Remove what the store holds for container ``cid``; True when there was something."""
    folder = container_dir(store_root, cid)
    if not folder.exists():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return not folder.exists()


def records(store_root: Path) -> list[tuple[Path, Record | None]]:
    try:
        names = sorted(os.listdir(containers_dir(store_root)))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        folder = containers_dir(store_root) / name
        out.append((folder, read_record(folder)))
    return out


def views_in_use(store_root: Path) -> set[str]:
    """The views mounted by containers that still run (or whose record is being
    written: a directory without a record yet counts as in use of nothing)."""
    return {r.view for _, r in records(store_root) if r is not None and alive(r)}


def sweep(store_root: Path) -> list[str]:
    """Remove the directories of containers that no longer exist; their names.
    A directory without a readable record is left to the start that is writing it."""
    removed = []
    for folder, record in records(store_root):
        if record is not None and not alive(record):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
