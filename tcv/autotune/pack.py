"""``--with-autotune`` on create: the autotuning results of the caches, and the
GPU model they were measured on (:mod:`tcv.cache.autotune`).

The device is ``--autotune-device NAME`` when given, else the one GPU model
this host's drivers name; when neither is known the build stops (exit 2)
before anything is built, since results without their model would be
installed nowhere.

From an Inductor cache (``--from inductor``, or detected) the ``<xx>/*.best_config``
files of Inductor's own autotuner are packed too (:mod:`tcv.autotune.inductor_pack`),
under ``io.triton.cache/inductor.best_config/`` and the manifest's
``autotune.best_configs``, counted with the Triton results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv.autotune.inductor_pack import BestConfigs, scan_best_configs
from tcv.cache import autotune, bestconfig
from tcv.cache.autotune import AutotuneEntry
from tcv.cache.kernel import KernelEntry
from tcv.cache.layout import INDUCTOR
from tcv.cache.scan import ScanResult
from tcv.errors import CreateError, UsageError
from tcv.gpu.model import HostGpus
from tcv.image.manifest import LABEL_CACHE_SIZE

log = logging.getLogger(__name__)


def _detect() -> HostGpus:
    from tcv.gpu.discover import detect

    return detect()


@dataclass(frozen=True)
class AutotuneRequest:
    """``--with-autotune`` and ``--autotune-device`` (None: detect with ``detect``,
    by default this host's GPUs)."""

    device: str | None = None
    detect: Callable[[], HostGpus] | None = None


@dataclass(frozen=True)
class PackedAutotune:
    """The results to pack (none found: no labels, no manifest section)."""

    device: str | None
    entries: list[AutotuneEntry] = field(default_factory=list)
    roots: dict[str, Path] = field(default_factory=dict)
    best: BestConfigs = field(default_factory=BestConfigs)  # Inductor's *.best_config

    @property
    def count(self) -> int:
        """Results in all: a Triton results directory or a best_config file is one."""
        return len(self.entries) + bestconfig.count(self.best.entries)

    def labels(self, kernel_labels: dict[str, str]) -> dict[str, str]:
        """The autotune labels, and the cache size grown by the results' bytes
        (extraction bounds the unpacked layer by it)."""
        if not self.count or self.device is None:
            return {}
        out = autotune.labels(self.device, self.entries)
        out[autotune.LABEL_COUNT] = str(self.count)
        size = kernel_labels.get(LABEL_CACHE_SIZE)
        if size is not None and size.isdigit():
            grown = int(size) + sum(e.bytes for e in self.entries) + self.best.bytes
            out[LABEL_CACHE_SIZE] = str(grown)
        return out

    def manifest(self) -> dict[str, Any]:
        if not self.count or self.device is None:
            return {}
        section = autotune.manifest_section(self.device, self.entries)
        if self.best.entries:
            section[bestconfig.SECTION_KEY] = bestconfig.manifest_items(self.best.entries)
        return {autotune.MANIFEST_KEY: section}

    def as_entries(self) -> list[KernelEntry]:
        """The directories as the layer planner takes them (key and files only);
        the best_config directories by their path in the cache tree."""
        dirs = [(e.key, e) for e in self.entries]
        dirs += [(f"{bestconfig.TREE}/{e.key}", e) for e in self.best.entries]
        return [
            KernelEntry(key=key, name="", backend="", arch="", warp_size=None, files=e.files)
            for key, e in dirs
        ]

    @property
    def contents(self) -> dict[str, bytes]:
        """The bytes of the best_config files (``<tree path>/<name>``), as read."""
        return self.best.contents

    def summary(self) -> dict[str, Any]:
        """``tcv -c --json``'s ``autotune``: the device, how many results, and
        the best_config files skipped (only when some were)."""
        doc: dict[str, Any] = {"device": self.device, "entries": self.count}
        if self.best.skipped:
            doc["skipped"] = [{"path": p, "reason": r} for p, r in self.best.skipped]
        return doc


def check_request(request: AutotuneRequest, image_format: str, split_by_target: bool) -> None:
    """Refuse, before any scan, a bad ``--autotune-device`` and the image kinds
    that cannot carry the autotune labels (exit 3)."""
    if request.device is not None:
        autotune.check_device(request.device)
    if split_by_target:
        raise UsageError(
            "--with-autotune packs results for one GPU model, not a fleet image",
            "drop --split-by-target, or build the autotune image separately",
        )
    if image_format == "artifact":
        raise UsageError(
            "--with-autotune records the GPU model in image labels, which an artifact lacks",
            "drop --format artifact",
        )


def resolve_device(request: AutotuneRequest) -> str:
    """The device the results were measured on (CreateError, exit 2, when unknown)."""
    if request.device is not None:
        return autotune.check_device(request.device)
    device, why = autotune.host_device((request.detect or _detect)())
    if device is None:
        raise CreateError(autotune.undetermined(why), autotune.DEVICE_HINT)
    log.info("autotuning results measured on %s (this host's GPU)", device)
    return device


def pack_autotune(
    scans: Sequence[tuple[Path, ScanResult]], request: AutotuneRequest
) -> PackedAutotune:
    """The results of every scan, by key (the first cache's copy of a key found
    twice), with the best_config files of the Inductor caches among them, and
    their device; the device is only looked for when there are results."""
    chosen: dict[str, AutotuneEntry] = {}
    roots: dict[str, Path] = {}
    best = pack_best_configs(scans)
    for _, scan in scans:
        for entry in scan.autotune:
            if entry.key in chosen:
                if chosen[entry.key].files != entry.files:
                    log.info("autotuning results %s: packed the first cache's copy", entry.key)
                continue
            chosen[entry.key] = entry
            roots[entry.key] = scan.autotune_sources.get(entry.key, scan.root)
    if not chosen and not best.entries:
        log.info("--with-autotune: the caches hold no autotuning results")
        return PackedAutotune(None, best=best)
    entries = [chosen[k] for k in sorted(chosen)]
    return PackedAutotune(resolve_device(request), entries, roots, best)


def pack_best_configs(scans: Sequence[tuple[Path, ScanResult]]) -> BestConfigs:
    """The ``<xx>/*.best_config`` files of every Inductor cache among ``scans``
    (the first cache's copy of a file found twice)."""
    out = BestConfigs()
    by_dir: dict[str, AutotuneEntry] = {}
    for directory, scan in scans:
        if scan.layout is None or scan.layout.kind != INDUCTOR:
            continue
        found = scan_best_configs(directory)
        for where, reason in found.skipped:
            log.info("skipped %s/%s: %s", directory, where, reason)
        out.skipped += found.skipped
        for entry in found.entries:
            have = by_dir.setdefault(entry.key, AutotuneEntry(entry.key))
            for name, info in entry.files.items():
                path = f"{bestconfig.TREE}/{bestconfig.ident(entry.key, name)}"
                if name in have.files:
                    if have.files[name] != info:
                        log.info("best_config %s: packed the first cache's copy", path)
                    continue
                have.files[name] = info
                out.contents[path] = found.contents[path]
    out.entries = [by_dir[k] for k in sorted(by_dir)]
    if out.entries:
        log.info("packing %d Inductor best_config files", bestconfig.count(out.entries))
    return out
