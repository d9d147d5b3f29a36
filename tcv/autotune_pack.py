"""``--with-autotune`` on create: the autotuning results of the caches, and the
GPU model they were measured on (:mod:`tcv.cache.autotune`).

The device is ``--autotune-device NAME`` when given, else the one GPU model
this host's drivers name; when neither is known the build stops (exit 2)
before anything is built, since results without their model would be
installed nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv.cache import autotune
from tcv.cache.autotune import AutotuneEntry
from tcv.cache.kernel import KernelEntry
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

    def labels(self, kernel_labels: dict[str, str]) -> dict[str, str]:
        """The autotune labels, and the cache size grown by the results' bytes
        (extraction bounds the unpacked layer by it)."""
        if not self.entries or self.device is None:
            return {}
        out = autotune.labels(self.device, self.entries)
        size = kernel_labels.get(LABEL_CACHE_SIZE)
        if size is not None and size.isdigit():
            out[LABEL_CACHE_SIZE] = str(int(size) + sum(e.bytes for e in self.entries))
        return out

    def manifest(self) -> dict[str, Any]:
        if not self.entries or self.device is None:
            return {}
        return {autotune.MANIFEST_KEY: autotune.manifest_section(self.device, self.entries)}

    def as_entries(self) -> list[KernelEntry]:
        """The directories as the layer planner takes them (key and files only)."""
        return [
            KernelEntry(key=e.key, name="", backend="", arch="", warp_size=None, files=e.files)
            for e in self.entries
        ]

    def summary(self) -> dict[str, Any]:
        """``tcv -c --json``'s ``autotune``: the device and how many results."""
        return {"device": self.device, "entries": len(self.entries)}


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
    twice), and their device; the device is only looked for when there are results."""
    chosen: dict[str, AutotuneEntry] = {}
    roots: dict[str, Path] = {}
    for _, scan in scans:
        for entry in scan.autotune:
            if entry.key in chosen:
                if chosen[entry.key].files != entry.files:
                    log.info("autotuning results %s: packed the first cache's copy", entry.key)
                continue
            chosen[entry.key] = entry
            roots[entry.key] = scan.autotune_sources.get(entry.key, scan.root)
    if not chosen:
        log.info("--with-autotune: the caches hold no autotuning results")
        return PackedAutotune(None)
    entries = [chosen[k] for k in sorted(chosen)]
    return PackedAutotune(resolve_device(request), entries, roots)
