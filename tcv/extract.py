"""Extract: preflight, pull, validate, filter, relocate, install (docs/spec.md §2–§5, §8).

1. Preflight (:mod:`tcv.image.describe`): ``skopeo inspect`` reads the manifest
   and config only; the summary label is checked against the host's GPUs, and
   an image where no target fits stops here (exit 4) before a single layer
   byte moves.
2. Pull into a fresh staging directory (:mod:`tcv.image.fetch`: ``skopeo
   copy`` to a ``dir:`` layout pinned to the digest the preflight read), unpack
   every layer in order with the checks of :mod:`tcv.image.unpack`, and verify
   each file against the image manifest's sha256 (:mod:`tcv.image.verify`).
3. Filter per kernel with the compatibility engine, then install the kernels
   that fit with :func:`tcv.install.install_kernels` (relocated, atomic,
   locked). Staging is removed on success, failure and Ctrl-C.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv.cache.kernel import KernelEntry
from tcv.gpu.model import HostGpus
from tcv.image.describe import ImageDescription
from tcv.image.fetch import fetch_images
from tcv.image.ref import ImageRef
from tcv.placement import Placement
from tcv.progress import Progress
from tcv.staging import staging_dir
from tcv.tools.registry import RegistryOptions

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- extract


@dataclass
class ExtractReport:
    image: str
    digest: str
    dest: Path
    entries: dict[str, KernelEntry] = field(default_factory=dict)
    installed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fitting: int = 0  # kernels that fit the host (or all, without the GPU check)
    # With --for inductor/vllm: each directory installed into, and its counts.
    destinations: list[dict[str, Any]] = field(default_factory=list)
    # The image's autotuning results: device, installed, present, skipped (or None).
    autotune: dict[str, Any] | None = None

    @property
    def nothing_fits(self) -> bool:
        return self.fitting == 0

    def to_json(self) -> dict[str, Any]:
        """The ``tcv -e --json`` document (docs/spec.md §2); replaced kernels count as installed."""
        doc: dict[str, Any] = {
            "image": self.image,
            "digest": self.digest,
            "dest": str(self.dest),
            "installed": sorted(set(self.installed + self.replaced)),
            "present": sorted(set(self.present)),
            "skipped": [{"key": k, "reason": r} for k, r in self.skipped],
        }
        if self.destinations:
            doc["destinations"] = self.destinations
        if self.autotune is not None:
            doc["autotune"] = self.autotune
        return doc


DIFFERING_REASON = "a different kernel is already installed under this key — --force replaces it"


def extract_image(
    ref: ImageRef,
    opts: RegistryOptions,
    dest: Path,
    *,
    host: HostGpus | None,
    triton_version: str | None = None,
    force: bool = False,
    max_size: int | None = None,
    progress: Progress | None = None,
    placements: Callable[[ImageDescription], list[Placement]] | None = None,
    inductor_dir: Path | None = None,
) -> ExtractReport:
    """The whole of ``tcv -e``. ``host`` None installs every kernel (``--no-gpu-check``).

    ``placements`` (``--for``): the directories to install into, decided from
    the image's labels before any layer is pulled; default: DEST alone.
    ``inductor_dir`` (``--for inductor``): where Inductor's best_config files go.

    Raises :class:`IncompatibleError` when the preflight finds nothing that fits;
    a report where nothing fits per kernel is returned (the CLI exits 4).
    """
    dest = Path(os.path.abspath(dest))  # group files name absolute paths
    planned: list[Placement] = []

    def decide(desc: ImageDescription) -> None:
        planned.extend(placements(desc) if placements is not None else [Placement(dest)])

    with staging_dir("extract-") as stage:
        desc, parts = fetch_images(
            ref,
            opts,
            stage,
            host=host,
            max_size=max_size,
            progress=progress,
            triton_version=triton_version,
            on_description=decide,
        )
        report = ExtractReport(str(ref), desc.digest or parts[0].digest, dest)
        from tcv.install import is_valid_key

        for fetched in parts:
            report.entries.update({e.key: e for e in fetched.entries})
            report.skipped.extend(fetched.skipped)
            candidates = []
            for e in fetched.entries:
                if is_valid_key(e.key):
                    candidates.append(e)
                else:
                    report.skipped.append((e.key, "not a Triton cache key: refusing to install it"))
            _install(report, fetched.cache_root, candidates, planned, host, triton_version, force)
            if fetched.autotune is not None:
                from tcv.autotune.install import install_autotune

                report.autotune = install_autotune(
                    fetched.autotune,
                    planned,
                    host,
                    force=force,
                    into=report.autotune,
                    inductor_dir=inductor_dir,
                )
    return report


def _install(
    report: ExtractReport,
    cache_root: Path,
    candidates: list[KernelEntry],
    planned: list[Placement],
    host: HostGpus | None,
    triton_version: str | None,
    force: bool,
) -> None:
    """Install the fitting candidates into each placement (one: DEST)."""
    from tcv.compat import check_entries
    from tcv.install import install_kernels

    if host is None:
        fitting = [e.key for e in candidates]
        per_gpu: dict[int, list[str]] = {}
    else:
        verdicts = check_entries(candidates, host, triton_version=triton_version)
        fitting = verdicts.compatible
        per_gpu = {g.index: list(verdicts.matched(g.index)) for g in host.gpus}
        report.skipped.extend(verdicts.incompatible)
    report.fitting += len(fitting)
    if not fitting:
        return
    # A kernel may go to several directories: only the last may move it out of
    # staging, the others copy.
    last_use = {key: i for i, p in enumerate(planned) for key in _keys_for(p, fitting, per_gpu)}
    for i, placement in enumerate(planned):
        keys = _keys_for(placement, fitting, per_gpu)
        if not keys:
            if len(planned) > 1:
                report.destinations.append(_destination(placement, None))
            continue
        copied = [k for k in keys if last_use[k] != i]
        movable = [k for k in keys if last_use[k] == i]
        parts = tuple(
            install_kernels(cache_root, group, placement.dest, force=force, move=move)
            for group, move in ((copied, False), (movable, True))
            if group
        )
        for part in parts:
            report.installed.extend(part.installed)
            report.present.extend(part.present)
            report.replaced.extend(part.replaced)
            report.skipped.extend((k, DIFFERING_REASON) for k in part.differing)
        if len(planned) > 1:
            report.destinations.append(_destination(placement, parts))


def _keys_for(
    placement: Placement, fitting: list[str], per_gpu: Mapping[int, list[str]]
) -> list[str]:
    if placement.gpu is None:
        return fitting
    return [k for k in fitting if k in set(per_gpu.get(placement.gpu, ()))]


def _destination(placement: Placement, results: tuple[Any, ...] | None) -> dict[str, Any]:
    parts = results or ()
    return {
        "dest": str(placement.dest),
        "gpu": placement.gpu,
        "installed": sorted(k for r in parts for k in r.installed + r.replaced),
        "present": sorted(k for r in parts for k in r.present),
    }


def image_entries(
    ref_text: str,
    registry_options: RegistryOptions,
    host: HostGpus | None = None,
    triton_version: str | None = None,
) -> list[KernelEntry]:
    """The kernel entries of an image, for ``tcv check -i``: the image is pulled
    and verified in staging (the manifest lives in the layer), then removed. Of
    a fleet index only the entries that fit ``host`` are pulled."""
    from tcv.image.names import resolve_image

    ref = resolve_image(ref_text)
    with staging_dir("check-") as stage:
        _, parts = fetch_images(
            ref, registry_options, stage, host=host, strict=False, triton_version=triton_version
        )
        return [e for part in parts for e in part.entries]
