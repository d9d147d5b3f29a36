"""Installing kernel directories into a Triton cache (docs/spec.md §4, §8).

Atomic per kernel, the way Triton's own cache writes (``runtime/cache.py``:
write into a ``tmp.pid_*`` directory, then rename): each ``<key>/`` is built
in a temporary directory inside DEST, its group files rewritten for where
Triton will read them, then renamed into place. Nothing already in DEST is
deleted or changed, except a differing kernel under ``force``. One exclusive
lock per DEST (``.tcv.lock``, a dot-file the cache scanner and Triton ignore)
makes concurrent extractions and hook runs safe: the second one finds the
kernels present.

Every operation inside DEST goes through a directory descriptor, without
following symlinks, so a symlink planted in DEST never redirects a write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tcv import fs
from tcv.cache.keys import LOCK_NAME
from tcv.errors import ExtractError
from tcv.image import jsonbound

log = logging.getLogger(__name__)

GROUP_PREFIX = "__grp__"
_GROUP_MAX = 1 << 20

# Triton keys: md5/sha256 hex, urlsafe base64 or base32 of sha256 (docs/spec.md §4).
# Anything else (a "/", "..", a dot-name) never becomes a path in DEST.
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class InstallResult:
    """Per key: ``installed`` (new), ``present`` (an identical kernel was there),
    ``replaced`` (a differing one was replaced under ``force``), ``differing``
    (a differing one was there and kept, without ``force``)."""

    installed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)


def is_valid_key(key: str) -> bool:
    return bool(_KEY.match(key))


def is_group_file(name: str) -> bool:
    return name.startswith(GROUP_PREFIX) and name.endswith(".json")


@contextlib.contextmanager
def dest_lock(dfd: int, owner: tuple[int, int] | None = None) -> Iterator[None]:
    """Hold the exclusive lock of the cache directory open as ``dfd``."""
    try:
        fd = fs.open_lock(LOCK_NAME, dir_fd=dfd, mode=0o644)
    except OSError as err:
        raise ExtractError(
            f"cannot lock the cache directory: {err.strerror}",
            f"check that {LOCK_NAME} in it is a regular file you may write",
        ) from None
    with fs.lock(fd):
        if owner is not None and os.fstat(fd).st_uid != owner[0]:
            with contextlib.suppress(OSError):
                os.fchown(fd, *owner)
        yield


def install_kernels(
    source_root: Path,
    keys: Iterable[str],
    dest: Path,
    *,
    target_root: str | None = None,
    force: bool = False,
    owner: tuple[int, int] | None = None,
    link: bool = False,
    move: bool = False,
) -> InstallResult:
    """Install ``source_root/<key>`` as ``dest/<key>`` for each key.

    ``target_root``: the path under which Triton will read the kernels (the
    container-side path for the hook; default ``dest``): group files get their
    ``child_paths`` rewritten to ``target_root/<key>/…``, since Triton treats a
    group whose paths do not exist as a miss (``runtime/cache.py``). ``owner``:
    chown everything written to this uid/gid. ``link``: hard-link regular files
    instead of copying where the filesystem allows (group files are always
    written fresh; files that would need a chown are copied so the source is
    never changed). ``move``: the source is disposable staging — rename each
    kernel directory into DEST whole when it is on the same filesystem.
    """
    keys = list(dict.fromkeys(keys))
    for key in keys:
        if not is_valid_key(key):
            raise ExtractError(f"refusing to install a kernel with the unsafe key {key!r}")
    result = InstallResult()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        dfd = os.open(dest, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except OSError as err:
        raise ExtractError(
            f"cannot open the cache directory {dest}: {err.strerror}",
            "check the path and its permissions, or pick another with -d DEST",
        ) from None
    root_for_groups = target_root if target_root is not None else str(dest)
    installer = _Installer(source_root, dfd, root_for_groups, force, owner, link, move)
    try:
        with dest_lock(dfd, owner):
            sweep_temporaries(dfd)
            for key in keys:
                try:
                    outcome = installer.one(key)
                except OSError as err:
                    raise ExtractError(
                        f"cannot install kernel {key} into {dest}: {err.strerror or err}",
                        "check free space and permissions there; nothing already in it changed",
                    ) from None
                getattr(result, outcome).append(key)
    finally:
        os.close(dfd)
    return result


class _Installer:
    def __init__(
        self,
        source_root: Path,
        dfd: int,
        target_root: str,
        force: bool,
        owner: tuple[int, int] | None,
        link: bool,
        move: bool,
    ) -> None:
        self.source_root = source_root
        self.dfd = dfd
        self.target_root = target_root
        self.force = force
        self.owner = owner
        self.link = link
        self.move = move

    def one(self, key: str) -> str:
        src = self.source_root / key
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            raise ExtractError(f"kernel {key} is missing from the unpacked image") from None
        if not stat.S_ISDIR(st.st_mode):
            raise ExtractError(f"kernel {key} in the unpacked image is not a directory")
        if self.move:
            outcome = self._move(src, key)
            if outcome is not None:
                return outcome
        tmp = _temp_name()
        os.mkdir(tmp, 0o755, dir_fd=self.dfd)
        try:
            tfd = os.open(tmp, _DIR_FLAGS, dir_fd=self.dfd)
            try:
                self._fill(src, tfd, key)
            finally:
                os.close(tfd)
            return self._place(tmp, key)
        finally:
            # Still there after _place: an identical/kept kernel, or a failure.
            _remove_in(self.dfd, tmp)

    # -- moving a disposable source whole --------------------------------

    def _move(self, src: Path, key: str) -> str | None:
        """Rewrite the groups in place, then rename the directory into DEST.
        None when DEST is on another filesystem (the caller copies instead)."""
        sfd = os.open(src, _DIR_FLAGS)
        try:
            with os.scandir(sfd) as it:
                # d_type from the directory read: no stat per file.
                listing = [(e.name, e.is_file(follow_symlinks=False)) for e in it]
            for name, regular in listing:
                if not regular:
                    # Triton writes only regular files; anything else stays behind.
                    _remove_in(sfd, name)
                    continue
                if is_group_file(name):
                    data = self._group(sfd, name, key)
                    if data is not None:
                        _write_new(sfd, name, data, replace=True)
                if self.owner is not None:
                    os.chown(name, *self.owner, dir_fd=sfd, follow_symlinks=False)
            if self.owner is not None:
                os.fchown(sfd, *self.owner)
            os.fchmod(sfd, 0o755)
        finally:
            os.close(sfd)
        try:
            fs.rename_noreplace(str(src), key, src_dir_fd=None, dst_dir_fd=self.dfd)
            return "installed"
        except OSError as err:
            if err.errno == errno.EXDEV:
                self.move = False
                return None
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        return self._settle(str(src), None, key)

    # -- building a temporary directory in DEST --------------------------

    def _fill(self, src: Path, tfd: int, key: str) -> None:
        with os.scandir(src) as it:
            names = sorted(e.name for e in it if e.is_file(follow_symlinks=False))
        for name in names:
            self._file(src, name, tfd, key)
        if self.owner is not None:
            for name in names:
                os.chown(name, *self.owner, dir_fd=tfd, follow_symlinks=False)
            os.fchown(tfd, *self.owner)
        os.fchmod(tfd, 0o755)

    def _group(self, sfd: int, name: str, key: str) -> bytes | None:
        """The group file rewritten for ``target_root/<key>``, or None to keep it
        as it is (list form, or unreadable: Triton treats the latter as a miss)."""
        from tcv.cache.relocate import relocate_group

        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
            with os.fdopen(fd, "rb") as f:
                data = jsonbound.loads(f.read(_GROUP_MAX + 1), "group file", max_bytes=_GROUP_MAX)
        except (OSError, jsonbound.JsonBoundError):
            return None
        moved = relocate_group(data, posixpath.join(self.target_root, key))
        if moved == data:
            return None
        # Same serialisation as Triton's put_group: json.dumps defaults.
        return json.dumps(moved).encode()

    def _file(self, src_dir: Path, name: str, tfd: int, key: str) -> None:
        src = src_dir / name
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            sst = os.fstat(sfd)
            mode = 0o755 if sst.st_mode & 0o111 else 0o644
            if is_group_file(name):
                dfd = os.open(src_dir, _DIR_FLAGS)
                try:
                    data = self._group(dfd, name, key)
                finally:
                    os.close(dfd)
                if data is not None:
                    _write_new(tfd, name, data, mode=0o644)
                    return
            elif self.link and self._may_link(sst):
                try:
                    os.link(src, name, dst_dir_fd=tfd, follow_symlinks=False)
                    return
                except OSError as err:
                    if err.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    # Another filesystem (or linking refused): copy from now on.
                    self.link = False
            dfd = os.open(name, _NEW_FILE, mode, dir_fd=tfd)
            try:
                _copy_fd(sfd, dfd, sst.st_size)
                os.fchmod(dfd, mode)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)

    def _may_link(self, sst: os.stat_result) -> bool:
        # A link shares the inode: never chown a source file through it.
        return self.owner is None or (sst.st_uid, sst.st_gid) == self.owner

    # -- putting it in place -------------------------------------------

    def _place(self, tmp: str, key: str) -> str:
        try:
            fs.rename_noreplace(tmp, key, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
            return "installed"
        except OSError as err:
            # Already there (an earlier install, or Triton itself).
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        return self._settle(tmp, self.dfd, key)

    def _settle(self, new: str, new_dfd: int | None, key: str) -> str:
        """``key`` exists in DEST: identical, kept, or replaced under force."""
        if _same_tree(new, new_dfd, key, self.dfd):
            return "present"
        if not self.force:
            return "differing"
        old = _temp_name()
        os.rename(key, old, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
        try:
            fs.rename_noreplace(new, key, src_dir_fd=new_dfd, dst_dir_fd=self.dfd)
        except OSError:
            os.rename(old, key, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
            raise
        _remove_in(self.dfd, old)
        return "replaced"


_TEMP = re.compile(r"^tmp\.pid_(\d+)_[0-9a-f]+$")


def sweep_temporaries(dfd: int) -> list[str]:
    """Remove the ``tmp.pid_*`` directories a killed install left in DEST.

    Called under the DEST lock, which every install holds while it has a
    temporary there, so one found then belongs to a run that died; its pid is
    checked too. (Triton's own temporaries live inside the kernel directories,
    never at the top.) Returns the names removed."""
    from tcv.staging import process_alive

    removed = []
    for name in os.listdir(dfd):
        m = _TEMP.match(name)
        if m is None or process_alive(int(m.group(1))):
            continue
        try:
            _remove_in(dfd, name)
        except OSError as err:
            log.warning("cannot remove the leftover %s: %s", name, err.strerror)
            continue
        removed.append(name)
    if removed:
        log.info("removed %d leftover temporary directories of killed runs", len(removed))
    return removed


def _temp_name() -> str:
    # Triton's own temporary naming (runtime/cache.py put): scans and Triton skip it.
    return f"tmp.pid_{os.getpid()}_{uuid.uuid4().hex}"


def _write_new(
    dir_fd: int, name: str, data: bytes, *, mode: int = 0o644, replace: bool = False
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_TRUNC if replace else os.O_EXCL
    fd = os.open(name, flags, mode, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _copy_fd(src: int, dst: int, size: int) -> None:
    offset = 0
    while offset < size:
        sent = os.sendfile(dst, src, offset, size - offset)
        if sent == 0:
            break
        offset += sent


def _same_tree(new: str, new_dfd: int | None, old: str, old_dfd: int) -> bool:
    """Whether directory ``old`` holds exactly the regular files of ``new``,
    byte for byte (a symlink or anything else at ``old`` differs)."""
    try:
        ofd = os.open(old, _DIR_FLAGS, dir_fd=old_dfd)
    except OSError:
        return False  # a symlink (O_NOFOLLOW) or not a directory
    try:
        nfd = os.open(new, _DIR_FLAGS, dir_fd=new_dfd)
    except OSError:
        os.close(ofd)
        raise
    try:
        new_names = sorted(os.listdir(nfd))
        old_names = sorted(os.listdir(ofd))
        if new_names != old_names:
            return False
        return all(_same_file(nfd, ofd, name) for name in new_names)
    finally:
        os.close(nfd)
        os.close(ofd)


def _same_file(nfd: int, ofd: int, name: str) -> bool:
    try:
        a = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=nfd)
    except OSError:
        return False
    try:
        try:
            b = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=ofd)
        except OSError:
            return False
        try:
            sa, sb = os.fstat(a), os.fstat(b)
            if not (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)):
                return False
            if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
                return True
            if sa.st_size != sb.st_size:
                return False
            with os.fdopen(a, "rb", closefd=False) as fa, os.fdopen(b, "rb", closefd=False) as fb:
                while True:
                    ca, cb = fa.read(1 << 16), fb.read(1 << 16)
                    if ca != cb:
                        return False
                    if not ca:
                        return True
        finally:
            os.close(b)
    finally:
        os.close(a)


def _remove_in(dfd: int, name: str) -> None:
    """Remove ``name`` (a directory this run made) inside ``dfd`` if it exists."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)
