"""Autotuning results on extract: read them from an unpacked image, install
them only where a visible GPU is the model they were measured on
(:mod:`tcv.cache.autotune`).

They come from an image, so they get the checks kernels get: the layer's
bounds and escapes (:mod:`tcv.image.unpack`), the manifest's sha256 for every
file and no file the manifest does not list, regular files only
(:mod:`tcv.cache.kernelcheck`), and each file's JSON as Triton reads it. The
install is the kernels' own (:func:`tcv.install.install_kernels`: atomic,
locked, never through a symlink in DEST).

Inductor's ``*.best_config`` files (:mod:`tcv.autotune.inductor_install`) follow the
same device rule, and go only into the Inductor cache directory of
``--for inductor``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv import fs
from tcv.autotune.inductor_install import BestConfigFile, install_best_configs, resolve_best_configs
from tcv.cache import autotune, bestconfig
from tcv.cache.autotune import AutotuneEntry
from tcv.errors import ExtractError
from tcv.gpu.model import HostGpus
from tcv.image import jsonbound
from tcv.image.unpack import UnpackResult
from tcv.image.verify import READ, listed_sha256, load_manifest
from tcv.placement import Placement

NOT_LISTED = "not listed in the image manifest"
BAD_LABEL = "the image's autotune-device label is not a device name: not installed"


@dataclass
class TunedImage:
    """The autotuning results of one unpacked image: ``device`` as its label
    says (None: unreadable), the entries safe to install, the others and why."""

    device: str | None
    cache_root: Path
    entries: list[AutotuneEntry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # Inductor's best_config files safe to install (the others are in skipped).
    best_configs: list[BestConfigFile] = field(default_factory=list)


def _verify(entry: AutotuneEntry, files: dict[str, bytes]) -> None:
    """Every file listed is in the layer with its sha256, and nothing else is."""
    prefix = entry.key + "/"
    for name, info in entry.files.items():
        got = files.get(prefix + name)
        want = listed_sha256(info.sha256)
        if got is None or got != want:
            raise ExtractError(
                f"autotuning results {entry.key}: {name} is missing from the layer or does "
                "not match the sha256 in the image manifest",
                "the image is damaged or was altered: rebuild it with tcv -c",
            )
    extra = sorted(r for r in files if r.startswith(prefix) and r[len(prefix) :] not in entry.files)
    if extra:
        raise ExtractError(
            f"autotuning results {entry.key}: {extra[0][len(prefix) :]} is in the layer but "
            "not in the image manifest",
            "the image is damaged or was altered: rebuild it with tcv -c",
        )


def _content_problem(directory: Path, entry: AutotuneEntry) -> str | None:
    from tcv.cache.kernelcheck import kernel_problem

    why = kernel_problem(directory)
    if why is not None:
        return why
    for name in sorted(entry.files):
        if not autotune.is_autotune_file(name):
            return f"{name} is not an autotuning results file"
        fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            data = os.read(fd, autotune.FILE_MAX + 1)
        finally:
            os.close(fd)
        try:
            doc = jsonbound.loads(data, f"{name}", max_bytes=autotune.FILE_MAX)
        except jsonbound.JsonBoundError as err:
            return err.message
        problem = autotune.results_problem(doc)
        if problem is not None:
            return f"{name} {problem}: Triton cannot read it"
    return None


def resolve_autotune(
    unpacked: UnpackResult,
    labels: dict[str, str],
    skipped: list[tuple[str, str]],
    manifest: Any = READ,
) -> tuple[TunedImage | None, list[tuple[str, str]]]:
    """The image's autotuning results (None without the autotune labels), and
    ``skipped`` without the "not listed" lines of the directories they explain.
    ``manifest``: what :func:`tcv.image.verify.load_manifest` returned, when the
    caller read it."""
    from tcv.install import is_valid_key

    recorded = autotune.read_labels(labels)
    if recorded is None:
        return None, skipped
    if manifest is READ:
        manifest = load_manifest(unpacked.root)
    try:
        entries = autotune.parse_section(manifest)
    except autotune.SectionError as err:
        raise ExtractError(str(err), "the image is damaged: rebuild it with tcv -c") from None
    tuned = TunedImage(recorded.device, unpacked.cache_root)
    best, best_skipped, listed = resolve_best_configs(unpacked, manifest)
    tuned.skipped += best_skipped
    if tuned.device is None:
        tuned.skipped += [(f.ident, BAD_LABEL) for f in best]
    else:
        tuned.best_configs = best
    keys = {e.key for e in entries} | ({bestconfig.TREE} if listed else set())
    rest = [(k, r) for k, r in skipped if not (k in keys and r == NOT_LISTED)]
    for entry in entries:
        directory = unpacked.cache_root / entry.key
        if not is_valid_key(entry.key):
            tuned.skipped.append((entry.key, "not a Triton cache key: refusing to install it"))
        elif entry.key in unpacked.bad:
            tuned.skipped.append((entry.key, unpacked.bad[entry.key]))
        elif not fs.is_real_dir(directory):
            tuned.skipped.append((entry.key, "listed in the image manifest but not in its layers"))
        else:
            _verify(entry, unpacked.files)
            why = _content_problem(directory, entry)
            if why is not None:
                tuned.skipped.append((entry.key, why))
            elif tuned.device is None:
                tuned.skipped.append((entry.key, BAD_LABEL))
            else:
                tuned.entries.append(entry)
    return tuned, rest


# ---------------------------------------------------------------- install


def _gpus_of(placement: Placement, host: HostGpus) -> list[Any]:
    if placement.gpu is None:
        return list(host.gpus)
    return [g for g in host.gpus if g.index == placement.gpu]


def install_autotune(
    tuned: TunedImage,
    planned: Sequence[Placement],
    host: HostGpus | None,
    *,
    force: bool = False,
    into: dict[str, Any] | None = None,
    inductor_dir: Path | None = None,
) -> dict[str, Any]:
    """Install ``tuned`` into each placement that has a GPU of its model, its
    best_config files into ``inductor_dir`` (``--for inductor``; None: skipped)
    when a GPU of the host is that model; the ``autotune`` document of ``tcv -e
    --json`` (``into``, when given, is added to)."""
    from tcv.install import install_kernels

    doc = into if into is not None else {}
    doc.setdefault("device", tuned.device)
    installed: set[str] = set(doc.get("installed", []))
    present: set[str] = set(doc.get("present", []))
    skipped: list[dict[str, str]] = list(doc.get("skipped", []))
    skipped += [{"key": k, "reason": r} for k, r in tuned.skipped]
    keys = [e.key for e in tuned.entries]
    if keys and tuned.device is not None:
        reasons = []
        targets = []
        for placement in planned:
            if host is None:
                reasons.append(autotune.NO_GPU_CHECK)
                continue
            why = autotune.mismatch(tuned.device, _gpus_of(placement, host))
            if why is None:
                targets.append(placement)
            else:
                reasons.append(why)
        from tcv.extract import DIFFERING_REASON

        for placement in targets:
            result = install_kernels(tuned.cache_root, keys, placement.dest, force=force)
            installed.update(result.installed + result.replaced)
            present.update(result.present)
            skipped += [{"key": k, "reason": DIFFERING_REASON} for k in result.differing]
        if not targets:
            reason = reasons[0] if reasons else "no directory to install into"
            skipped += [{"key": k, "reason": reason} for k in keys]
    if tuned.best_configs and tuned.device is not None:
        why = _best_config_gate(tuned.device, host, inductor_dir)
        if why is not None:
            skipped += [{"key": f.ident, "reason": why} for f in tuned.best_configs]
        elif inductor_dir is not None:
            done = install_best_configs(
                tuned.cache_root, tuned.best_configs, inductor_dir, force=force
            )
            installed.update(done.installed)
            present.update(done.present)
            skipped += [{"key": k, "reason": r} for k, r in done.skipped]
    doc["installed"] = sorted(installed)
    doc["present"] = sorted(present)
    doc["skipped"] = skipped
    return doc


def _best_config_gate(device: str, host: HostGpus | None, inductor_dir: Path | None) -> str | None:
    """Why the best_config files are not installed, or None (the Triton results' rule)."""
    if inductor_dir is None:
        return bestconfig.SKIP_WORKLOAD
    if host is None:
        return autotune.NO_GPU_CHECK
    return autotune.mismatch(device, host.gpus)
