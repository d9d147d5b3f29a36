"""Safe layer unpacking (docs/spec.md §3, §8): media types, escapes, devices, sizes.

A cache image is data, never a root filesystem: the layers are applied in
order into a fresh staging directory, and any entry that could reach outside
it or carry privileges makes the whole image refused — absolute names, ``..``,
symlinks or hard links leaving the root, paths through a symlink, device
nodes, fifos, setuid/setgid bits. Only the two trees of docs/spec.md §3
(``io.triton.cache/`` and ``io.triton.manifest/``) are written; every regular
file of the cache tree is hashed while it streams past, so the manifest's
sha256 can be checked without reading the files again. The bytes written are
counted against a limit (the ``cache-size-bytes`` label or ``--max-size``),
and every decompressed byte of every layer — headers, padding, entries outside
the two trees — against an allowance derived from it, so no layer can make TCV
decompress more than it will keep, whatever its compression. The decompressor
hands out at most 1 MiB at a time: memory stays flat.

Links are never created in staging. A hard link becomes a copy of the file it
names; a symlink is only recorded, and once every layer is applied a symlink
from one file of a kernel directory to another (a bare name) becomes a copy of
it too. Any other symlink in the cache tree marks its kernel bad (skipped,
with the reason, in :attr:`UnpackResult.bad`); one standing for a tree itself
or for the manifest refuses the image. So nothing read from staging later can
lead out of it.

The tar stream is parsed by :mod:`tcv.image.tar` (its docstring says why not
:mod:`tarfile`); this module decides what each entry may be and writes it.
File creation, which costs the kernel the most, runs on a few threads while
the stream is parsed.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import queue
import shutil
import stat
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tcv.errors import ExtractError, TcvError
from tcv.image.manifest import CACHE_DIR, MANIFEST_DIR, MANIFEST_PATH
from tcv.image.tar import (
    BLOCKDEV,
    CHARDEV,
    CHUNK,
    DIRECTORY,
    FIFO,
    HARDLINK,
    REGULAR,
    SYMLINK,
    Header,
    Stream,
    UnsafeLayerError,
    padded,
    read_headers,
    short,
)

KEPT_TREES = (CACHE_DIR, MANIFEST_DIR)
_CACHE_PREFIX = CACHE_DIR + "/"

MEDIA_TAR = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
)
MEDIA_GZIP = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
MEDIA_ZSTD = (
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
)
# The layer of a TCV artifact (tcv.image.artifact), and the custom layer type of the
# thunderbolt-era images (an uncompressed tar, whatever its name suggests):
# the bytes decide the decompressor, as for every layer.
MEDIA_CACHE = (
    "application/vnd.triton.cache.layer.v1.tar+gzip",
    "application/cache.triton.content.layer.v1+triton",
)
LAYER_MEDIA_TYPES = MEDIA_TAR + MEDIA_GZIP + MEDIA_ZSTD + MEDIA_CACHE

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# What is not the cache (the manifest) gets its own allowance: a 10,000-kernel
# manifest is a few MB.
DEFAULT_OTHER_LIMIT = 64 << 20
_BIG_FILE = 1 << 20  # larger files stream to disk on the parsing thread
_BATCH_BYTES = 2 << 20
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_WRITERS = 1
_BATCH = 64
# Bounds on what a layer may make TCV hold or do, before its sizes are trusted.
MAX_MEMBERS = 1_000_000  # a 10,000-kernel image has about 90,000
MAX_CACHE_FILES = 250_000  # files in the cache tree: each costs a create
MAX_NAME = 4096  # bytes, PATH_MAX
MAX_COMPONENT = 255  # bytes, NAME_MAX
MAX_DEPTH = 16  # components of a name in the two trees (docs/spec.md §3 needs 3)
MAX_LINK_HOPS = 8
# Decompressed bytes a layer may spend beyond what it keeps: headers, padding,
# extension records and entries outside the two trees.
OVERHEAD_PER_MEMBER = 2048
OVERHEAD_BASE = 64 << 20


@dataclass
class UnpackResult:
    """What was written under ``root``.

    ``files`` maps each regular file of the cache tree, relative to it
    (``KEY/name``), to its sha256 digest (32 bytes: a 10,000-kernel image has
    80,000 files, and this map is what stays in memory).
    """

    root: Path
    files: dict[str, bytes] = field(default_factory=dict)
    cache_bytes: int = 0
    other_bytes: int = 0
    members: int = 0
    stream_bytes: int = 0  # decompressed bytes read, all layers
    # Kernel directories (KEY) that cannot be installed as the image has them,
    # with the reason: a symlink in them that is not a copy of a sibling file.
    bad: dict[str, str] = field(default_factory=dict)

    @property
    def cache_root(self) -> Path:
        return self.root / CACHE_DIR


# ---------------------------------------------------------------- pure checks


def compression_of(media_type: str, head: bytes) -> str:
    """``"gzip"``, ``"zstd"`` or ``"tar"`` for a layer.

    The media type must be a tar layer type (docs/spec.md §3); the bytes themselves
    decide the decompressor, as containers/image does, so a layer mislabelled by
    another tool still reads.
    """
    if media_type not in LAYER_MEDIA_TYPES:
        raise ExtractError(
            f"the image has a layer of media type {media_type!r}, which is not a tar layer",
            "TCV reads tar, tar+gzip and tar+zstd layers and Triton cache artifacts",
        )
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "tar"


def normalize_name(name: str) -> str:
    """The layer-relative path of a tar entry name, or raise
    :class:`UnsafeLayerError` for an absolute name or one with ``..``.
    ``""`` means the root itself."""
    if name.startswith("/"):
        raise UnsafeLayerError(f"the layer has an absolute path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayerError(f"the layer has a path that climbs out of the image: {name!r}")
    return "/".join(parts)


def check_header(h: Header) -> str:
    """Decide whether entry ``h`` may be unpacked at all; returns its normalized
    name. Pure: looks at the header only."""
    _check_text(h.name, "name")
    if h.linkname:
        _check_text(h.linkname, "link target")
    name = normalize_name(h.name)
    if name and _kept(name):
        parts = name.split("/")
        if len(parts) > MAX_DEPTH:
            raise UnsafeLayerError(
                f"the layer has a path nested {len(parts)} directories deep "
                f"(at most {MAX_DEPTH}): {short(h.name)!r}"
            )
    if h.mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafeLayerError(f"the layer has a setuid/setgid entry {h.name!r}")
    t = h.type
    if t in REGULAR or t == DIRECTORY:
        return name
    if t in (CHARDEV, BLOCKDEV):
        raise UnsafeLayerError(f"the layer has a device node {h.name!r}")
    if t == FIFO:
        raise UnsafeLayerError(f"the layer has a fifo {h.name!r}")
    if t == SYMLINK:
        target = h.linkname
        if target.startswith("/"):
            raise UnsafeLayerError(
                f"the layer has a symlink {h.name!r} to an absolute path {target!r}"
            )
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if not name or resolved == ".." or resolved.startswith("../"):
            raise UnsafeLayerError(
                f"the layer has a symlink {h.name!r} pointing out of the image ({target!r})"
            )
        return name
    if t == HARDLINK:
        try:
            target = normalize_name(h.linkname)
        except UnsafeLayerError:
            raise UnsafeLayerError(
                f"the layer has a hard link {h.name!r} pointing out of the image ({h.linkname!r})"
            ) from None
        if not target:
            raise UnsafeLayerError(f"the layer has a hard link {h.name!r} to the root")
        return name
    raise UnsafeLayerError(
        f"the layer has an entry of unsupported type {t.decode(errors='replace')!r}: {h.name!r}"
    )


def _check_text(text: str, what: str) -> None:
    """A name or link target the filesystem can hold: no NUL, not longer than
    PATH_MAX, no component longer than NAME_MAX."""
    if "\0" in text:
        raise UnsafeLayerError(f"the layer has a {what} with a NUL byte: {short(text)!r}")
    if len(text) <= MAX_COMPONENT and text.isascii():
        return  # the usual case: short enough whatever its components
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_NAME:
        raise UnsafeLayerError(
            f"the layer has a {what} of {len(raw)} bytes (at most {MAX_NAME}): {short(text)!r}"
        )
    if any(len(part) > MAX_COMPONENT for part in raw.split(b"/")):
        raise UnsafeLayerError(
            f"the layer has a {what} with a component longer than {MAX_COMPONENT} bytes: "
            f"{short(text)!r}"
        )


def _kept(name: str) -> bool:
    return name.split("/", 1)[0] in KEPT_TREES


# ---------------------------------------------------------------- writing


class _Writers:
    """A few threads that create files: the kernel's work per file dominates,
    and os.open/os.write release the GIL while the stream is parsed."""

    def __init__(self, count: int = _WRITERS) -> None:
        # Bounded by count and size, so memory stays flat whatever the layer holds.
        self.q: queue.Queue[list[tuple[str, bytes, int]] | None] = queue.Queue(maxsize=4)
        self.batch: list[tuple[str, bytes, int]] = []
        self.batch_bytes = 0
        self.error: BaseException | None = None
        self.cancelled = False
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            batch = self.q.get()
            try:
                if batch is None:
                    return
                if self.error is not None or self.cancelled:
                    continue
                for path, data, mode in batch:
                    fd = os.open(path, flags, mode)
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view) :]
                    finally:
                        os.close(fd)
            except BaseException as err:  # handed to the parsing thread
                self.error = err
            finally:
                self.q.task_done()

    def add(self, path: str, data: bytes, mode: int) -> None:
        self.batch.append((path, data, mode))
        self.batch_bytes += len(data)
        if len(self.batch) >= _BATCH or self.batch_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            self.q.put(self.batch)
            self.batch = []
            self.batch_bytes = 0
        self.check()

    def check(self) -> None:
        if self.error is not None:
            err = self.error
            if isinstance(err, OSError):
                raise ExtractError(
                    f"cannot unpack the image: {err.strerror or err}",
                    "check free space and permissions under the staging directory",
                ) from None
            raise err

    def drain(self) -> None:
        """Wait until everything queued is on disk."""
        self._flush()
        self.q.join()
        self.check()

    def close(self, cancel: bool = False) -> None:
        """Stop the threads; ``cancel`` drops what is still queued (the unpack failed
        and staging is about to be removed)."""
        self.cancelled = cancel
        self.batch = []
        for _ in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join()


class _Unpacker:
    def __init__(self, root: Path, max_bytes: int | None, max_other: int) -> None:
        self.root = root
        self.base = str(root) + "/"
        self.max_bytes = max_bytes
        self.max_other = max_other
        self.result = UnpackResult(root)
        # The directories ("d") and symlinks ("l") this run created under root; the
        # files are in result.files (cache tree) and other_sizes (manifest tree).
        # Everything under root is ours, so these maps are the truth: no lstat needed.
        self.kinds: dict[str, str] = {}
        self.other_sizes: dict[str, int] = {}
        # Names written by the current layer; whiteouts only delete older ones. Not
        # kept for the first layer (nothing older), which is every TCV image.
        self.layer_paths: set[str] = set()
        self.track_layer = False
        # Symlinks of the two trees, by name: never created on disk (see the
        # module docstring); settled by :meth:`links` after the last layer.
        self.symlinks: dict[str, str] = {}
        self.writers = _Writers()

    def allowance(self) -> int:
        """Decompressed bytes the layers may produce so far (see :class:`Stream`)."""
        kept = (self.max_bytes if self.max_bytes is not None else self.result.cache_bytes) + (
            self.max_other
        )
        return kept + OVERHEAD_BASE + OVERHEAD_PER_MEMBER * self.result.members

    def _is_file(self, name: str) -> bool:
        if name.startswith(_CACHE_PREFIX):
            return name[len(_CACHE_PREFIX) :] in self.result.files
        return name in self.other_sizes

    def _kind(self, name: str) -> str | None:
        return self.kinds.get(name) or ("f" if self._is_file(name) else None)

    def _files_under(self, prefix: str) -> list[str]:
        """Layer-relative names of the files below ``prefix`` (ending in "/")."""
        out = [n for n in self.other_sizes if n.startswith(prefix)]
        out += [
            _CACHE_PREFIX + k for k in self.result.files if (_CACHE_PREFIX + k).startswith(prefix)
        ]
        return out

    # -- paths ----------------------------------------------------------

    def _parents(self, name: str, original: str) -> None:
        """Make sure every ancestor of ``name`` is a real directory we made."""
        parent = name.rpartition("/")[0]
        if not parent or self.kinds.get(parent) == "d":
            return
        parts = parent.split("/")
        for i in range(1, len(parts) + 1):
            anc = "/".join(parts[:i])
            kind = self._kind(anc)
            if kind == "d":
                continue
            if kind == "l":
                raise UnsafeLayerError(f"the layer writes {original!r} through a symlink ({anc!r})")
            if kind == "f":
                raise UnsafeLayerError(f"the layer writes {original!r} below a file ({anc!r})")
            os.mkdir(self.base + anc, 0o755)
            self.kinds[anc] = "d"

    def _clear(self, name: str) -> None:
        """Remove what an earlier entry put at ``name`` (a later entry wins)."""
        kind = self._kind(name)
        if kind is None:
            return
        self.writers.drain()  # the earlier entry may still be in flight
        self.kinds.pop(name, None)
        path = self.base + name
        if kind == "d":
            prefix = name + "/"
            for k in self._files_under(prefix):
                self._uncount(k)
            shutil.rmtree(path)
            for k in [k for k in self.kinds if k.startswith(prefix)]:
                del self.kinds[k]
            for k in [k for k in self.symlinks if k.startswith(prefix)]:
                del self.symlinks[k]
        elif kind == "l":
            self.symlinks.pop(name, None)
        else:
            self._uncount(name)
            os.unlink(path)

    def _uncount(self, name: str) -> None:
        """A file removed by a later entry no longer counts against the limit:
        the limit is on what the image unpacks to."""
        if name.startswith(_CACHE_PREFIX):
            if self.result.files.pop(name[len(_CACHE_PREFIX) :], None) is not None:
                self.result.cache_bytes -= os.stat(self.base + name, follow_symlinks=False).st_size
        else:
            self.result.other_bytes -= self.other_sizes.pop(name, 0)

    # -- entries --------------------------------------------------------

    def entry(self, stream: Stream, h: Header) -> None:
        name = check_header(h)
        self.result.members += 1
        if self.result.members > MAX_MEMBERS:
            raise UnsafeLayerError(
                f"the image's layers hold more than {MAX_MEMBERS} entries: not a Triton cache"
            )
        if not name or not _kept(name):
            # outside the trees of docs/spec.md §3: never written
            self._skip(stream, padded(h.size))
            return
        base = name.rpartition("/")[2]
        if base.startswith(_WHITEOUT):
            self._skip(stream, padded(h.size))
            self._whiteout(name, base)
            return
        if self.track_layer:
            self.layer_paths.add(name)
        self._parents(name, h.name)
        if h.isreg():
            if name in self.kinds or self._is_file(name):
                self._clear(name)
            self._regular(stream, h, name)
        elif h.isdir():
            if self.kinds.get(name) == "d":
                return
            self._clear(name)
            os.mkdir(self.base + name, 0o755)
            self.kinds[name] = "d"
        elif h.type == SYMLINK:
            self._clear(name)
            self.symlinks[name] = h.linkname
            self.kinds[name] = "l"
        elif h.type == HARDLINK:
            self._hardlink(h, name)

    def _skip(self, stream: Stream, count: int) -> None:
        remaining = count
        while remaining > 0:
            got = len(stream.read(min(CHUNK, remaining)))
            if not got:
                raise ExtractError("the layer ends in the middle of an entry")
            remaining -= got

    def _count(self, name: str, size: int) -> None:
        if name.startswith(_CACHE_PREFIX):
            self.result.cache_bytes += size
            if self.max_bytes is not None and self.result.cache_bytes > self.max_bytes:
                raise UnsafeLayerError(
                    f"the image unpacks to more than {self.max_bytes} bytes of cache "
                    "(its cache-size-bytes label, --max-size, or the bound for an "
                    "unlabelled image)",
                    "raise --max-size if the image is trusted and really that large",
                )
        else:
            self.result.other_bytes += size
            self.other_sizes[name] = size
            if self.result.other_bytes > self.max_other:
                raise UnsafeLayerError(
                    f"the image's manifest tree is larger than {self.max_other} bytes"
                )

    def _regular(self, stream: Stream, h: Header, name: str) -> None:
        size = h.size
        if len(self.result.files) >= MAX_CACHE_FILES and name.startswith(_CACHE_PREFIX):
            raise UnsafeLayerError(
                f"the image's cache tree holds more than {MAX_CACHE_FILES} files: "
                "not a Triton cache (a 10,000-kernel cache has about 80,000)"
            )
        self._count(name, size)
        mode = 0o755 if h.mode & 0o111 else 0o644
        hashed = name.startswith(_CACHE_PREFIX)
        path = self.base + name
        if size <= _BIG_FILE:
            block = stream.read(padded(size))
            if len(block) < size:
                raise ExtractError(f"the layer ends in the middle of {h.name!r}")
            data = block[:size] if len(block) != size else block
            if hashed:
                self.result.files[name[len(_CACHE_PREFIX) :]] = hashlib.sha256(data).digest()
            self.writers.add(path, data, mode)
            return
        # A large file: stream it in chunks on this thread.
        digest = hashlib.sha256()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, mode)
        try:
            remaining = size
            while remaining > 0:
                chunk = stream.read(min(CHUNK, remaining))
                if not chunk:
                    raise ExtractError(f"the layer ends in the middle of {h.name!r}")
                remaining -= len(chunk)
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self._skip(stream, padded(size) - size)
        if hashed:
            self.result.files[name[len(_CACHE_PREFIX) :]] = digest.digest()

    def _hardlink(self, h: Header, name: str) -> None:
        """A hard link becomes a copy of the file it names: two names of one
        inode must never reach DEST, where writing one would change the other."""
        target = normalize_name(h.linkname)
        if not self._is_file(target):
            raise UnsafeLayerError(
                f"the layer has a hard link {h.name!r} to {h.linkname!r}, "
                "which is not a file unpacked before it"
            )
        if target == name:
            return  # a link to itself: the file is already there
        self._parents(name, h.name)
        self.writers.drain()  # the target must be on disk
        self._copy(target, name)

    def _copy(self, source: str, name: str) -> None:
        """Write a new file ``name`` with the bytes of the file ``source``
        (both layer-relative, both in our own tree of real directories)."""
        size = os.stat(self.base + source, follow_symlinks=False).st_size
        self._clear(name)
        self._count(name, size)
        digest = self._digest(source)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        src = os.open(self.base + source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            mode = 0o755 if os.fstat(src).st_mode & 0o111 else 0o644
            dst = os.open(self.base + name, flags, mode)
            try:
                offset = 0
                while offset < size:
                    sent = os.sendfile(dst, src, offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent
            finally:
                os.close(dst)
        finally:
            os.close(src)
        if name.startswith(_CACHE_PREFIX):
            self.result.files[name[len(_CACHE_PREFIX) :]] = digest

    def _digest(self, name: str) -> bytes:
        if name.startswith(_CACHE_PREFIX):
            known = self.result.files.get(name[len(_CACHE_PREFIX) :])
            if known is not None:
                return known
        return _sha256_file(self.base + name)

    # -- symlinks, once every layer is applied --------------------------

    def links(self) -> None:
        """Settle the recorded symlinks (see the module docstring)."""
        for name in sorted(self.symlinks):
            target = self.symlinks[name]
            parts = name.split("/")
            if len(parts) <= 2 and (parts[0] == CACHE_DIR or name == MANIFEST_DIR):
                if len(parts) == 1:
                    raise UnsafeLayerError(
                        f"the layer makes {name} a symlink (to {target!r}); "
                        "a cache image has it as a directory"
                    )
                self.result.bad[parts[1]] = (
                    f"the kernel directory is a symlink in the image (to {target!r})"
                )
                continue
            if name == MANIFEST_PATH:
                raise UnsafeLayerError(
                    f"the layer makes {name} a symlink (to {target!r}); it must be a file"
                )
            if parts[0] != CACHE_DIR:
                continue  # the manifest tree: only manifest.json is ever read
            key = parts[1]
            if len(parts) > 3:
                continue  # below a subdirectory of a kernel: never installed
            source = self._sibling(name)
            if source is None:
                self.result.bad[key] = (
                    f"{parts[2]} is a symlink to {target!r}, not to another file of its "
                    "kernel directory"
                )
                continue
            self._copy(source, name)
            self.kinds.pop(name, None)

    def _sibling(self, name: str) -> str | None:
        """The regular file of the same directory that the symlink ``name``
        ends at, through at most a few symlinks naming siblings; else None."""
        folder = name.rpartition("/")[0]
        for _ in range(MAX_LINK_HOPS):
            target = self.symlinks[name].removeprefix("./")
            if not target or "/" in target or target in (".", ".."):
                return None
            name = f"{folder}/{target}"
            if self._is_file(name):
                return name
            if name not in self.symlinks:
                return None
        return None

    def _whiteout(self, name: str, base: str) -> None:
        """OCI whiteouts: ``.wh.NAME`` deletes NAME of earlier layers,
        ``.wh..wh..opq`` empties its directory of earlier layers' entries."""
        if not self.track_layer:
            return  # the first layer: there is nothing older to delete
        parent = posixpath.dirname(name)
        parts = parent.split("/") if parent else []
        for i in range(1, len(parts) + 1):
            anc = "/".join(parts[:i])
            if self.kinds.get(anc) == "l":
                raise UnsafeLayerError(f"the layer has a whiteout {name!r} through a symlink")
            if self.kinds.get(anc) != "d":
                return  # nothing there to delete
        if base == _OPAQUE:
            prefix = parent + "/" if parent else ""
            for k in sorted({*self.kinds, *self._files_under(prefix)}):
                if (
                    k.startswith(prefix)
                    and "/" not in k[len(prefix) :]
                    and k not in self.layer_paths
                ):
                    self._clear(k)
            return
        victim = posixpath.join(parent, base[len(_WHITEOUT) :])
        if victim not in self.layer_paths:
            self._clear(victim)

    def layer(self, stream: Stream, index: int) -> None:
        self.layer_paths = set()
        self.track_layer = index > 0
        for h in read_headers(stream):
            self.entry(stream, h)
        self.writers.drain()


def _sha256_file(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.digest()


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or truncated compressed layer raises while it is read."""
    import zstandard

    return (EOFError, zlib.error, zstandard.ZstdError)


def unpack_layers(
    layers: Iterable[tuple[Path, str]],
    root: Path,
    *,
    max_bytes: int | None = None,
    max_other: int = DEFAULT_OTHER_LIMIT,
    progress: Callable[[int], None] | None = None,
) -> UnpackResult:
    """Apply ``layers`` (blob path, media type), in order, into the empty
    directory ``root``. Raises :class:`UnsafeLayerError` on the first entry that
    is refused; the caller removes ``root`` (it is staging)."""
    unpacker = _Unpacker(root, max_bytes, max_other)
    base = 0
    try:
        for index, (path, media_type) in enumerate(layers):
            with open(path, "rb") as raw:
                kind = compression_of(media_type, raw.read(4))
                raw.seek(0)
                stream = Stream(
                    raw,
                    kind,
                    progress,
                    base,
                    out=unpacker.result.stream_bytes,
                    allowance=unpacker.allowance,
                )
                try:
                    unpacker.layer(stream, index)
                except TcvError:
                    raise
                except _read_errors() as err:
                    raise ExtractError(f"cannot read a {kind} layer of the image: {err}") from None
                except OSError as err:
                    raise ExtractError(
                        f"cannot unpack the image into {root}: {err.strerror or err}",
                        "check free space and permissions under the staging directory",
                    ) from None
                base = stream.done
                unpacker.result.stream_bytes = stream.out
        try:
            unpacker.links()
        except OSError as err:
            raise ExtractError(
                f"cannot unpack the image into {root}: {err.strerror or err}",
                "check free space and permissions under the staging directory",
            ) from None
    except BaseException:
        unpacker.writers.close(cancel=True)
        raise
    unpacker.writers.close()
    return unpacker.result
