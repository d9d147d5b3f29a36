"""The Triton kernel cache on disk: scan a cache root into kernel entries.

A cache root holds one directory per compiled kernel, named by its KEY
(docs/spec.md §4). Everything else found there is skipped with a reason a
person can read:
launcher/utils ``.so`` directories (host-specific; an option includes them),
autotuning results, ``tmp.pid_*`` leftovers and ``lock`` files, empty
directories, entries whose metadata is missing or corrupt, files that cannot be
read as regular files, and anything reached through a symlink that leaves the
root. Scanning reads and hashes every file once, in 1 MiB pieces, keeping only
the small heads needed for the metadata (no file is held in memory).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv.cache.autotune import FILE_MAX, AutotuneEntry, results_problem
from tcv.cache.kernel import FileInfo, KernelEntry
from tcv.cache.keys import LOCK_NAME, is_key, key_encoding
from tcv.cache.layout import MAX_DEPTH, Layout, detect, select
from tcv.cache.metadata import (
    AUTOTUNE_SUFFIX,
    MetadataError,
    group_filenames,
    group_name,
    metadata_filename,
    parse_metadata,
    ptx_version,
)
from tcv.errors import TcvError, UsageError
from tcv.image import jsonbound

_CHUNK = 1 << 20
# The `.version`/`.target` lines (PTX) and the target triple (AMDGCN) sit at
# the top of the file; keep this much of it, never the whole file.
_HEAD = 64 * 1024
_META_MAX = 16 << 20  # a metadata JSON is a few KiB; refuse to parse giants
_TMP_MARK = "tmp.pid_"  # runtime/cache.py put(): <entry>/tmp.pid_<pid>_<uuid>/
_LAUNCHER_HINT = "--include-launchers packs it"
AUTOTUNE_HINT = "--with-autotune packs them"


class NotAKernelError(TcvError):
    """A directory under the cache root that is not a kernel entry; the
    message says why."""


class AutotuneDirError(NotAKernelError):
    """A directory of autotuning results: skipped, or packed with
    ``--with-autotune`` (:mod:`tcv.cache.autotune`). ``files``: (name, path)."""

    def __init__(self, message: str, files: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.files = files


@dataclass(frozen=True)
class Skipped:
    """Something under the root that is not (part of) a kernel, and why.
    ``path`` is relative to the scanned root."""

    path: str
    reason: str


@dataclass
class ScanResult:
    """``layout``: where the kernels were found under ``root`` (None: ``root``
    is the Triton cache itself); ``sources``: the cache root holding each
    entry, for entries found in a nested root."""

    root: Path
    entries: list[KernelEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    layout: Layout | None = None
    sources: dict[str, Path] = field(default_factory=dict)
    # With ``with_autotune``: the autotuning result directories, and their roots.
    autotune: list[AutotuneEntry] = field(default_factory=list)
    autotune_sources: dict[str, Path] = field(default_factory=dict)

    def source_of(self, key: str) -> Path:
        """The cache root whose ``<key>/`` directory holds entry ``key``."""
        return self.sources.get(key, self.root)

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        """The ``tcv scan --json`` document (docs/spec.md §2)."""
        doc: dict[str, Any] = {
            "root": str(self.root),
            "entries": [
                {
                    "key": e.key,
                    "name": e.name,
                    "backend": e.backend,
                    "arch": e.arch,
                    "warp_size": e.warp_size,
                    "triton_version": e.triton_version,
                    "ptx_version": e.ptx_version,
                    "files": len(e.files),
                    "bytes": e.bytes,
                }
                for e in self.entries
            ],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }
        if self.layout is not None:  # a nested layout: where the kernels were found
            doc["layout"] = {
                "kind": self.layout.kind,
                "roots": [r.to_json() for r in self.layout.roots],
            }
        return doc


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where Triton keeps its cache: ``$TRITON_CACHE_DIR``, else
    ``$TRITON_HOME/.triton/cache``, else ``~/.triton/cache`` (triton/knobs.py
    ``cache.dir`` and ``cache.home_dir``). Empty values count as unset."""
    if value := env.get("TRITON_CACHE_DIR"):
        return Path(value)
    home = env.get("TRITON_HOME") or env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".triton" / "cache"


# ---------------------------------------------------------------- scanning


def _within(real_root: str, real_path: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def _kind(mode: int) -> str:
    for test, word in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return word
    return "not a regular file"


def _hash_file(path: str, keep: int) -> tuple[int, str, bytes]:
    """(size, sha256 hex, the first ``keep`` bytes). Opens non-blocking so a
    FIFO swapped in after the directory listing cannot hang the scan."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAKernelError(f"{os.path.basename(path)} is {_kind(st.st_mode)}")
        digest = hashlib.sha256()
        size = 0
        head = b""
        while chunk := os.read(fd, _CHUNK):
            if len(head) < keep:
                head += chunk[: keep - len(head)]
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest(), head
    finally:
        os.close(fd)


def _is_launcher(names: list[str]) -> bool:
    """``cuda_utils*.so``, ``hip_utils*.so``, ``__triton_launcher*.so``: the
    host stubs runtime/build.py compiles, one ``.so`` per directory."""
    return any(n.endswith(".so") for n in names) and not any(n.endswith(".json") for n in names)


def _entry_files(
    real_root: str, entry_path: str, rel: str, skipped: list[Skipped]
) -> list[tuple[str, str]]:
    """The (name, path) of the entry's kernel files; leftovers go to
    ``skipped``. Raises NotAKernelError when the entry cannot be trusted."""
    files: list[tuple[str, str]] = []
    try:
        listing = sorted(os.scandir(entry_path), key=lambda d: d.name)
    except OSError as err:
        raise NotAKernelError(f"cannot list the directory: {err.strerror}") from None
    for de in listing:
        name = de.name
        if name == "lock":
            skipped.append(Skipped(f"{rel}/{name}", "lock file, not part of the kernel"))
            continue
        if _TMP_MARK in name:
            skipped.append(
                Skipped(f"{rel}/{name}", "leftover of an interrupted Triton write (tmp.pid_*)")
            )
            continue
        if de.is_symlink():
            target = os.path.realpath(de.path)
            if not os.path.exists(target):
                raise NotAKernelError(f"{name} is a dangling symlink")
            if not _within(real_root, target):
                raise NotAKernelError(f"{name} is a symlink leading out of the cache root")
        try:
            is_dir = de.is_dir()
            is_file = de.is_file()
        except OSError as err:
            raise NotAKernelError(f"cannot stat {name}: {err.strerror}") from None
        if is_dir:
            reason = "subdirectory inside a kernel entry; Triton never writes one"
            skipped.append(Skipped(f"{rel}/{name}", reason))
            continue
        if not is_file:
            try:
                mode = de.stat().st_mode
            except OSError as err:
                raise NotAKernelError(f"cannot stat {name}: {err.strerror}") from None
            raise NotAKernelError(f"{name} is {_kind(mode)}, not a regular file")
        files.append((name, de.path))
    return files


def _read_entry(
    real_root: str, entry_path: str, key: str, *, include_launchers: bool, skipped: list[Skipped]
) -> KernelEntry:
    before = len(skipped)
    files = _entry_files(real_root, entry_path, key, skipped)
    names = [n for n, _ in files]
    if not names:
        if len(skipped) > before:
            raise NotAKernelError("no kernel files, only subdirectories or leftovers")
        raise NotAKernelError("empty directory")
    launcher = _is_launcher(names)
    if launcher and not include_launchers:
        raise NotAKernelError(f"launcher/utils .so directory (host-specific; {_LAUNCHER_HINT})")
    if not launcher and all(n.endswith(AUTOTUNE_SUFFIX) for n in names):
        raise AutotuneDirError(
            f"autotuning results (*{AUTOTUNE_SUFFIX}), not a kernel; {AUTOTUNE_HINT}", files
        )
    meta_name = None if launcher else metadata_filename(names)
    if meta_name is None and not launcher:
        raise NotAKernelError("no metadata: no __grp__<kernel>.json and no single <kernel>.json")
    stem = meta_name[: -len(".json")] if meta_name else None
    heads: dict[str, bytes] = {}
    infos: dict[str, FileInfo] = {}
    for name, path in files:
        if name == meta_name or group_name(name) is not None:
            keep = _META_MAX
        elif name.endswith((".ptx", ".amdgcn")):
            keep = _HEAD
        else:
            keep = 0
        try:
            size, sha, head = _hash_file(path, keep)
        except OSError as err:
            raise NotAKernelError(f"cannot read {name}: {err.strerror}") from None
        infos[name] = FileInfo(size=size, sha256=sha)
        if keep:
            heads[name] = head

    if meta_name is None:  # a launcher directory, asked for
        so = next(n for n in names if n.endswith(".so"))
        return KernelEntry(
            key=key, name=so.split(".", 1)[0], backend="", arch="", warp_size=None, files=infos
        )

    if infos[meta_name].size > _META_MAX:
        raise NotAKernelError(
            f"metadata {meta_name} is implausibly large ({infos[meta_name].size} bytes)"
        )
    try:
        meta = jsonbound.loads(
            heads.get(meta_name, b""), f"metadata {meta_name}", max_bytes=_META_MAX
        )
    except jsonbound.JsonBoundError as err:
        raise NotAKernelError(err.message) from None
    ptx = heads.get(f"{stem}.ptx")
    try:
        md = parse_metadata(meta, name=stem, ptx=ptx, amdgcn=heads.get(f"{stem}.amdgcn"))
    except MetadataError as err:
        raise NotAKernelError(f"metadata {meta_name}: {err.message}") from None
    for name in group_filenames(names):
        missing = _missing_children(heads.get(name, b""), names)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise NotAKernelError(
                f"group file {name} lists {missing[0]}{more}, which is not in the entry: "
                "Triton treats it as a miss"
            )
    return KernelEntry(
        key=key,
        name=md.name,
        backend=md.backend,
        arch=md.arch,
        warp_size=md.warp_size,
        triton_version=md.triton_version,
        ptx_version=ptx_version(ptx) if ptx is not None else None,
        hash=md.hash,
        num_warps=md.num_warps,
        num_stages=md.num_stages,
        debug=md.debug,
        files=infos,
    )


def _missing_children(text: bytes, names: list[str]) -> list[str]:
    """The files a group file lists that the entry does not hold. Triton
    checks every path of a dict-form group (runtime/cache.py ``get_group``);
    the list form holds bare names. An unreadable group lists nothing."""
    try:
        data = jsonbound.loads(text, "a group file")
    except jsonbound.JsonBoundError:
        return []
    children = data.get("child_paths") if isinstance(data, dict) else None
    if isinstance(children, dict):
        listed = [
            os.path.basename(p) if isinstance(p, str) else str(c) for c, p in children.items()
        ]
    elif isinstance(children, list):
        listed = [str(c) for c in children]
    else:
        return []
    present = set(names)
    return sorted({n for n in listed if n not in present})


def read_entry(entry_dir: Path, *, include_launchers: bool = False) -> KernelEntry:
    """Read one kernel directory ``<root>/<KEY>/``. Raises NotAKernelError
    with the reason when it is not a kernel entry. Symlinks may not leave the
    entry's parent (its cache root)."""
    entry_dir = Path(entry_dir)
    real_root = os.path.realpath(entry_dir.parent)
    if not _within(real_root, os.path.realpath(entry_dir)):
        raise NotAKernelError(f"{entry_dir} is a symlink leading out of the cache root")
    if not entry_dir.is_dir():
        raise NotAKernelError(f"{entry_dir} is not a directory")
    return _read_entry(
        real_root, str(entry_dir), entry_dir.name, include_launchers=include_launchers, skipped=[]
    )


def _check_root(root: Path) -> None:
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise UsageError(
            f"cache directory {root} does not exist",
            "give the path of a Triton cache (Triton's default is ~/.triton/cache)",
        ) from None
    except OSError as err:
        raise UsageError(f"cannot read cache directory {root}: {err.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(
            f"{root} is not a directory",
            "give the Triton cache directory itself (the one holding the KEY directories)",
        )


def _read_autotune(key: str, files: list[tuple[str, str]]) -> AutotuneEntry:
    """An autotune directory's files, hashed, each checked as Triton reads it."""
    infos: dict[str, FileInfo] = {}
    for name, path in files:
        try:
            size, sha, head = _hash_file(path, FILE_MAX + 1)
        except OSError as err:
            raise NotAKernelError(f"cannot read {name}: {err.strerror}") from None
        if size > FILE_MAX:
            raise NotAKernelError(f"autotuning results {name} are implausibly large ({size} bytes)")
        try:
            doc = jsonbound.loads(head, f"autotuning results {name}", max_bytes=FILE_MAX)
        except jsonbound.JsonBoundError as err:
            raise NotAKernelError(err.message) from None
        problem = results_problem(doc)
        if problem is not None:
            raise NotAKernelError(f"autotuning results {name} {problem}: Triton cannot read them")
        infos[name] = FileInfo(size=size, sha256=sha)
    return AutotuneEntry(key, infos)


def scan_cache(
    root: Path, *, include_launchers: bool = False, with_autotune: bool = False
) -> ScanResult:
    """Every kernel entry under ``root``, sorted by key, and what was skipped;
    with ``with_autotune`` also the autotuning results (:attr:`ScanResult.autotune`).

    Raises UsageError (exit 3) when ``root`` is missing or not a directory. An
    empty root is not an error: zero entries.
    """
    root = Path(root)
    _check_root(root)
    real_root = os.path.realpath(root)
    result = ScanResult(root=Path(os.path.abspath(root)))
    try:
        listing = sorted(os.scandir(root), key=lambda d: d.name)
    except OSError as err:
        raise UsageError(f"cannot list cache directory {root}: {err.strerror}") from None
    for de in listing:
        key = de.name
        if key == LOCK_NAME and de.is_file(follow_symlinks=False):
            continue  # TCV's own install lock (tcv.install), not cache content
        try:
            if de.is_symlink():
                target = os.path.realpath(de.path)
                if not os.path.exists(target):
                    raise NotAKernelError("dangling symlink")
                if not _within(real_root, target):
                    raise NotAKernelError(f"symlink leading out of the cache root (to {target})")
            if not de.is_dir():
                if key == "lock" or _TMP_MARK in key:
                    raise NotAKernelError("leftover lock or temp file, not a kernel")
                raise NotAKernelError("a file at the top of the cache, not a kernel directory")
            if key.startswith(_TMP_MARK):
                raise NotAKernelError("leftover of an interrupted Triton write (tmp.pid_*)")
            entry_skips: list[Skipped] = []
            entry = _read_entry(
                real_root, de.path, key, include_launchers=include_launchers, skipped=entry_skips
            )
        except AutotuneDirError as err:
            if not with_autotune:
                result.skipped.append(Skipped(key, err.message))
                continue
            try:
                result.autotune.append(_read_autotune(key, err.files))
            except NotAKernelError as bad:
                result.skipped.append(Skipped(key, bad.message))
                continue
            result.skipped.extend(entry_skips)
            continue
        except NotAKernelError as err:
            result.skipped.append(Skipped(key, err.message))
            continue
        except OSError as err:
            result.skipped.append(Skipped(key, f"cannot read: {err.strerror}"))
            continue
        result.entries.append(entry)
        result.skipped.extend(entry_skips)
    return result


# ---------------------------------------------------------------- layouts


def list_dirs(root: Path, max_depth: int = MAX_DEPTH) -> list[str]:
    """The relative paths of the directories under ``root``, ``max_depth``
    levels deep at most, without following symlinks or descending into a
    kernel directory (a KEY-named one) or Triton's temporary directories."""
    out: list[str] = []
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        try:
            with os.scandir(root / rel if rel else root) as it:
                subdirs = [d.name for d in it if d.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for name in subdirs:
            path = f"{rel}/{name}" if rel else name
            out.append(path)
            if depth + 1 < max_depth and key_encoding(name) is None and _TMP_MARK not in name:
                stack.append((path, depth + 1))
    return sorted(out)


def scan_layout(
    root: Path,
    *,
    source: str | None = None,
    include_launchers: bool = False,
    with_autotune: bool = False,
) -> ScanResult:
    """Scan ``root`` as the cache of a workload: a Triton cache, an Inductor
    cache directory (``triton/<i>/`` roots) or a vLLM tree (``…/rank_<r>_<dp>/
    triton_cache/`` roots), detected unless ``source`` (``--from``) names one.

    A plain Triton cache gives exactly :func:`scan_cache`. Otherwise every
    root is scanned and the entries merged by key; skipped paths are relative
    to ``root``. A key found in two roots with different files is kept once
    (the first root's) and the other reported as skipped.
    """
    root = Path(root)
    _check_root(root)
    layout = select(detect(list_dirs(root), is_key), source, str(root))
    if not layout.nested:
        return scan_cache(root, include_launchers=include_launchers, with_autotune=with_autotune)
    merged = ScanResult(root=Path(os.path.abspath(root)), layout=layout)
    seen: dict[str, KernelEntry] = {}
    for part in layout.roots:
        sub = scan_cache(
            root / part.path, include_launchers=include_launchers, with_autotune=with_autotune
        )
        merged.skipped.extend(Skipped(f"{part.path}/{s.path}", s.reason) for s in sub.skipped)
        for tuned in sub.autotune:
            if tuned.key not in merged.autotune_sources:  # two ranks tuned the same
                merged.autotune.append(tuned)
                merged.autotune_sources[tuned.key] = sub.root
        for entry in sub.entries:
            first = seen.get(entry.key)
            if first is None:
                seen[entry.key] = entry
                merged.entries.append(entry)
                merged.sources[entry.key] = sub.root
            elif first.files != entry.files:
                merged.skipped.append(
                    Skipped(
                        f"{part.path}/{entry.key}",
                        f"differs from the kernel of the same key in "
                        f"{merged.sources[entry.key]}; packed that one",
                    )
                )
    merged.entries.sort(key=lambda e: e.key)
    merged.autotune.sort(key=lambda e: e.key)
    return merged
