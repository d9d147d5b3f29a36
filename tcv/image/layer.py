"""The cache image's one layer as a reproducible tar (docs/spec.md §3).

:func:`plan_layer` decides, from the scan and the manifest, exactly which
paths go into the layer (pure); :func:`write_layer` writes them as a tar with
everything that varies between hosts and runs taken out: entries sorted with
each directory before its contents, uid/gid 0 and no user or group names,
modes 0644 (files) and 0755 (directories), one fixed mtime, POSIX (PAX)
format, and only layer paths, never a host path.

This tar is what ``buildah add`` unpacks into the working container. buildah
re-tars the container's contents when it commits; ``buildah commit
--timestamp`` then pins every mtime again, so the committed layer's digest
depends only on the paths, modes and bytes fixed here (see
:mod:`tcv.tools.buildah`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tcv.cache.kernel import KernelEntry
from tcv.errors import CreateError
from tcv.image.manifest import CACHE_DIR, MANIFEST_PATH

# Layer paths of docs/spec.md §3; the manifest module owns the names, repeated here
# only as defaults so the writer can be used on its own.

FILE_MODE = 0o644
DIR_MODE = 0o755


@dataclass(frozen=True)
class Member:
    """One path of the layer: a directory, a file read from ``source`` or a
    file whose bytes are ``data``."""

    path: str
    is_dir: bool = False
    source: Path | None = None
    data: bytes | None = None
    size: int = 0

    @property
    def sort_key(self) -> tuple[str, ...]:
        # Component-wise order puts every directory right before its contents.
        return tuple(self.path.split("/"))


def source_date_epoch(env: dict[str, str] | os._Environ[str] | None = None) -> int:
    """The fixed mtime: ``$SOURCE_DATE_EPOCH`` (reproducible-builds.org) or 0."""
    env = os.environ if env is None else env
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise CreateError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds",
            "set it to an integer such as $(git log -1 --format=%ct), or unset it",
        ) from None
    if value < 0:
        raise CreateError(f"SOURCE_DATE_EPOCH={raw!r} is negative", "use 0 or a later time")
    return value


def _check_relative(path: str) -> str:
    """Refuse anything that would put a host path or an escape into the layer."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or not pure.parts or any(p in ("", ".", "..") for p in pure.parts):
        raise CreateError(
            f"refusing to pack {path!r}: not a plain relative path",
            "report this cache entry; kernel files are plain names",
        )
    return str(pure)


def plan_layer(
    root: Path,
    entries: Iterable[KernelEntry],
    manifest: bytes,
    *,
    cache_dir: str = CACHE_DIR,
    manifest_path: str = MANIFEST_PATH,
    sources: Mapping[str, Path] | None = None,
    contents: Mapping[str, bytes] | None = None,
    roots: Mapping[str, Path] | None = None,
) -> list[Member]:
    """Every path of the layer, sorted: the kernel directories under
    ``cache_dir`` (only the files the scan listed) and the manifest.

    ``sources``: the cache root of an entry found outside ``root`` (a nested
    layout); ``contents``: the bytes of ``<key>/<file>`` when they are not the
    file's on disk (group files rewritten for ``--mount-path``); ``roots``:
    the cache of each key when several caches are merged (:mod:`tcv.cache.merge`)."""
    sources = {**(roots or {}), **(sources or {})}
    contents = contents or {}
    members: dict[str, Member] = {}

    def add_dirs(path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            members.setdefault(d, Member(d, is_dir=True))

    for entry in entries:
        key = _check_relative(entry.key)
        entry_dir = f"{cache_dir}/{key}"
        add_dirs(entry_dir + "/x")
        members.setdefault(entry_dir, Member(entry_dir, is_dir=True))
        for name, info in entry.files.items():
            rel = _check_relative(name)
            path = f"{entry_dir}/{rel}"
            add_dirs(path)
            data = contents.get(f"{key}/{rel}")
            if data is not None:
                members[path] = Member(path, data=data, size=len(data))
            else:
                source = sources.get(key, root) / key / rel
                members[path] = Member(path, source=source, size=info.size)
    add_dirs(manifest_path)
    members[manifest_path] = Member(manifest_path, data=manifest, size=len(manifest))
    return sorted(members.values(), key=lambda m: m.sort_key)


def _tarinfo(member: Member, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.path)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if member.is_dir:
        info.type = tarfile.DIRTYPE
        info.mode = DIR_MODE
    else:
        info.type = tarfile.REGTYPE
        info.mode = FILE_MODE
        info.size = member.size
    return info


def _unreadable(member: Member, err: OSError) -> CreateError:
    if err.errno in (errno.EACCES, errno.EPERM):
        return CreateError(
            f"cannot read {member.source}: permission denied",
            "make the cache readable by this user (chmod -R u+r), or run as its owner",
        )
    if err.errno == errno.ENOENT:
        return CreateError(
            f"{member.source} disappeared while packing",
            "let the program writing the cache finish, then run again",
        )
    return CreateError(f"cannot read {member.source}: {err.strerror or err}")


def write_layer(members: Sequence[Member], out: BinaryIO, *, mtime: int = 0) -> int:
    """Write ``members`` as a tar to ``out``; return the bytes of file content.

    A file whose size differs from the scan's is refused: the cache changed
    while being packed and the manifest would not describe the layer.
    """
    total = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = _tarinfo(member, mtime)
            if member.is_dir:
                tar.addfile(info)
                continue
            if member.data is not None:
                tar.addfile(info, io.BytesIO(member.data))
                total += member.size
                continue
            assert member.source is not None
            try:
                fh = open(member.source, "rb")  # noqa: SIM115 - closed below
            except OSError as err:
                raise _unreadable(member, err) from None
            with contextlib.closing(fh):
                actual = os.fstat(fh.fileno()).st_size
                if actual != member.size:
                    raise CreateError(
                        f"{member.source} changed while packing "
                        f"({member.size} bytes when scanned, {actual} now)",
                        "let the program writing the cache finish, then run again",
                    )
                try:
                    tar.addfile(info, fh)
                except OSError as err:
                    if err.errno in (errno.EACCES, errno.EPERM, errno.EIO):
                        raise _unreadable(member, err) from None
                    raise
            total += member.size
    return total


def write_layer_file(members: Sequence[Member], path: Path, *, mtime: int = 0) -> int:
    """:func:`write_layer` into a new file at ``path`` (buffered for speed)."""
    try:
        with open(path, "wb", buffering=1 << 20) as out:
            return write_layer(members, out, mtime=mtime)
    except CreateError:
        raise
    except OSError as err:
        raise CreateError(
            f"cannot write the layer to {path}: {err.strerror or err}",
            "free space under the staging directory (or point $TCV_STAGING_ROOT elsewhere)",
        ) from None
