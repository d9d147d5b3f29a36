"""Several Triton caches packed as one: ``-d`` given once per build host.

A CI matrix compiles on one runner per GPU target and hands each runner's
cache to one ``tcv -c``. The caches are merged by key (pure, over scan
results): a key present in several caches must hold the same kernel, or the
image would ship whichever copy happened to be read first. Group files
(``__grp__*.json``) are left out of that comparison: Triton writes the
absolute paths of the compiling host into them, and the installer rewrites
them for the host that extracts (docs/spec.md §4), so two runners at different paths
still hold one kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tcv.cache.kernel import KernelEntry
from tcv.cache.scan import ScanResult, Skipped
from tcv.errors import CreateError

GROUP_PREFIX = "__grp__"


@dataclass(frozen=True)
class MergedCache:
    """The kernels of every cache, sorted by key, and the directory each is read from."""

    entries: list[KernelEntry]
    roots: dict[str, Path]
    skipped: list[Skipped] = field(default_factory=list)


def _kernel_files(entry: KernelEntry) -> dict[str, tuple[int, str]]:
    return {
        name: (info.size, info.sha256.lower())
        for name, info in entry.files.items()
        if not name.startswith(GROUP_PREFIX)
    }


def _difference(a: KernelEntry, b: KernelEntry) -> str:
    fa, fb = _kernel_files(a), _kernel_files(b)
    for name in sorted(set(fa) | set(fb)):
        if name not in fa or name not in fb:
            return f"{name} is in only one of them"
        if fa[name] != fb[name]:
            return f"{name} differs"
    return "their files differ"


def merge_scans(scans: Sequence[tuple[Path, ScanResult]]) -> MergedCache:
    """One set of kernels from the scans of several caches (in ``-d`` order).

    A key found twice with the same kernel files is packed once (from the
    first cache); with different bytes it raises :class:`CreateError` (exit 2)
    naming the key and both caches, before anything is built.
    """
    chosen: dict[str, KernelEntry] = {}
    roots: dict[str, Path] = {}
    skipped: list[Skipped] = []
    for root, scan in scans:
        skipped.extend(scan.skipped)
        for entry in scan.entries:
            first = chosen.get(entry.key)
            if first is None:
                chosen[entry.key] = entry
                # A nested layout (Inductor, vLLM) holds the kernel below ``root``.
                roots[entry.key] = scan.source_of(entry.key)
                continue
            if _kernel_files(first) != _kernel_files(entry):
                raise CreateError(
                    f"kernel {entry.key} is in {roots[entry.key]} and {root} with different "
                    f"bytes ({_difference(first, entry)})",
                    "pack one of them, or remove the stale copy from the other cache",
                )
    entries = [chosen[k] for k in sorted(chosen)]
    return MergedCache(entries, roots, skipped)


def source_root(dirs: Sequence[Path]) -> str:
    """The manifest's ``source_root`` (docs/spec.md §3): the cache's absolute path,
    or the paths of several caches joined by ``:`` in ``-d`` order."""
    return ":".join(str(d.resolve()) for d in dirs)
