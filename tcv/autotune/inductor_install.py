"""Inductor's ``*.best_config`` files on extract (:mod:`tcv.cache.bestconfig`):
read from an unpacked image, installed into the Inductor cache directory.

They come from an image, so before anything is written: the manifest lists
each (a file in the tree it does not list refuses the image), each name is a
plain file name in a two-character directory (else skipped with the reason:
nothing is ever joined from an unchecked name), the layer's copy matches the
manifest's sha256 (else the image is refused), it is a regular file and its
JSON is what Inductor reads.

The install writes ``<inductor dir>/<xx>/<name>`` through directory file
descriptors opened without following a symlink, as a temporary file renamed
over the name (readers see the old file or the new one); a file already there
with other bytes is kept unless ``force`` — the kernels' semantics.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tcv import fs
from tcv.autotune.inductor_pack import file_problem
from tcv.cache import autotune, bestconfig
from tcv.errors import ExtractError
from tcv.image.unpack import UnpackResult
from tcv.image.verify import listed_sha256

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR | os.O_NOFOLLOW
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DAMAGED = "the image is damaged or was altered: rebuild it with tcv -c"


@dataclass(frozen=True)
class BestConfigFile:
    """One checked file: ``<cache tree>/inductor.best_config/<subdir>/<name>``."""

    subdir: str
    name: str

    @property
    def ident(self) -> str:
        return bestconfig.ident(self.subdir, self.name)


@dataclass
class Installed:
    installed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _read(path: Path) -> bytes | None:
    try:
        fd = os.open(path, _READ)
    except OSError:
        return None
    try:
        return os.read(fd, bestconfig.FILE_MAX + 1)
    finally:
        os.close(fd)


def resolve_best_configs(
    unpacked: UnpackResult, manifest: object
) -> tuple[list[BestConfigFile], list[tuple[str, str]], bool]:
    """The files safe to install, the others with the reason, and whether the
    manifest lists any (then the tree is no "not listed" directory)."""
    try:
        entries = bestconfig.parse_items(manifest)
    except autotune.SectionError as err:
        raise ExtractError(str(err), "the image is damaged: rebuild it with tcv -c") from None
    prefix = bestconfig.TREE + "/"
    listed = {prefix + bestconfig.ident(e.key, n) for e in entries for n in e.files}
    extra = sorted(r for r in unpacked.files if r.startswith(prefix) and r not in listed)
    if extra:
        raise ExtractError(
            f"best_config {extra[0][len(prefix) :]} is in the layer but not in the image manifest",
            _DAMAGED,
        )
    tree = unpacked.cache_root / bestconfig.TREE
    ok: list[BestConfigFile] = []
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        for name, info in sorted(entry.files.items()):
            where = bestconfig.ident(entry.key, name)
            if not bestconfig.is_subdir(entry.key):
                skipped.append((where, "not an Inductor two-character directory: not installed"))
                continue
            if not bestconfig.is_file_name(name):
                skipped.append((where, "not a plain best_config file name: not installed"))
                continue
            if bestconfig.TREE in unpacked.bad:
                skipped.append((where, unpacked.bad[bestconfig.TREE]))
                continue
            got = unpacked.files.get(prefix + where)
            want = listed_sha256(info.sha256)
            if got is None or got != want:
                raise ExtractError(
                    f"best_config {where} is missing from the layer or does not match the "
                    "sha256 in the image manifest",
                    _DAMAGED,
                )
            path = tree / entry.key / name
            dirs = fs.is_real_dir(tree) and fs.is_real_dir(path.parent)
            if not (dirs and fs.is_real_file(path)):
                skipped.append((where, "not a regular file in the image: not installed"))
                continue
            data = _read(path)
            problem = "cannot be read" if data is None else file_problem(data, name)
            if problem is not None:
                skipped.append((where, f"{name} {problem}"))
                continue
            ok.append(BestConfigFile(entry.key, name))
    return ok, skipped, bool(entries)


# ---------------------------------------------------------------- install


def _open_subdir(base_fd: int, name: str) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=base_fd)
    return os.open(name, _NOFOLLOW_DIR, dir_fd=base_fd)


def _is_link(dfd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dfd).st_mode)
    except OSError:
        return False


def _existing(dfd: int, name: str) -> bytes | None:
    """The bytes of ``name`` in ``dfd`` (b"" for something that is not a small
    regular file: never equal to a best_config), or None when absent."""
    try:
        fd = os.open(name, _READ, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, bestconfig.FILE_MAX + 1)
    finally:
        os.close(fd)


def install_best_configs(
    cache_root: Path, files: Iterable[BestConfigFile], base: Path, *, force: bool = False
) -> Installed:
    """Install each of ``files`` (checked by :func:`resolve_best_configs`) from the
    unpacked cache tree ``cache_root`` as ``base/<xx>/<name>``."""
    out = Installed()
    files = list(files)
    if not files:
        return out
    try:
        base.mkdir(parents=True, exist_ok=True)
        base_fd = os.open(base, _DIR)
    except OSError as err:
        raise ExtractError(
            f"cannot open the Inductor cache directory {base}: {err.strerror}",
            "check the path and its permissions, or pick another with -d DIR",
        ) from None
    try:
        for f in files:
            data = (cache_root / bestconfig.TREE / f.subdir / f.name).read_bytes()
            try:
                dfd = _open_subdir(base_fd, f.subdir)
            except OSError as err:
                why = (
                    "is a symlink, not followed"
                    if err.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(base_fd, f.subdir)
                    else f"cannot be opened ({err.strerror})"
                )
                out.skipped.append((f.ident, f"{base}/{f.subdir} {why}: not installed"))
                continue
            try:
                old = _existing(dfd, f.name)
                if old == data:
                    out.present.append(f.ident)
                    continue
                if old is not None and not force:
                    out.skipped.append((f.ident, bestconfig.DIFFERING))
                    continue
                fs.write_atomic(f.name, data, dir_fd=dfd)
                out.installed.append(f.ident)
            except OSError as err:
                raise ExtractError(
                    f"cannot write {base}/{f.ident}: {err.strerror}",
                    "check free space and permissions of the Inductor cache directory",
                ) from None
            finally:
                os.close(dfd)
    finally:
        os.close(base_fd)
    return out
