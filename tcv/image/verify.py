"""The kernels of an unpacked image, checked against its manifest (docs/spec.md §3).

Every file the manifest lists must be in the layers with its size and sha256,
and a kernel directory may hold nothing else; a difference refuses the image.
Images whose manifest lists no files (older tools) are read with the cache
scanner. Kernels unsafe to install are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tcv import fs
from tcv.cache.kernel import KernelEntry
from tcv.errors import ExtractError
from tcv.image import jsonbound
from tcv.image.manifest import CACHE_DIR, MANIFEST_PATH, ManifestError, parse_manifest
from tcv.image.unpack import UnpackResult

# A 10,000-kernel manifest is about 15 MB; parsing takes some 8x its size.
MANIFEST_MAX = 64 << 20


READ = object()  # resolve_entries, resolve_autotune: no manifest given, read it


def listed_sha256(value: str) -> bytes | None:
    """The digest a manifest gives a file (``hex`` or ``sha256:hex``), None when
    it is not hex."""
    try:
        return bytes.fromhex(value.lower().removeprefix("sha256:"))
    except ValueError:
        return None


def require_cache_tree(unpacked: UnpackResult) -> None:
    """Refuse (exit 5) an image without the cache tree: not a Triton cache image."""
    if not fs.is_real_dir(unpacked.cache_root):
        raise ExtractError(
            f"the image has no {CACHE_DIR}/ directory: it is not a Triton cache image",
            "check the image name; cache images are made with tcv -c",
        )


def load_manifest(root: Path) -> Any:
    """The unpacked image's ``manifest.json`` decoded, with its size and depth
    bounded; None when the image has none (the Go tools')."""
    manifest_path = root / MANIFEST_PATH
    if not fs.is_real_file(manifest_path):
        return None
    if manifest_path.stat().st_size > MANIFEST_MAX:
        raise ExtractError(
            f"the image's manifest.json is implausibly large (more than {MANIFEST_MAX} bytes)"
        )
    try:
        return jsonbound.loads(
            manifest_path.read_bytes(), "the image's manifest.json", max_bytes=MANIFEST_MAX
        )
    except jsonbound.JsonBoundError as err:
        raise ExtractError(err.message, "the image is damaged: rebuild it with tcv -c") from None


def resolve_entries(
    unpacked: UnpackResult, manifest: Any = READ
) -> tuple[list[KernelEntry], list[tuple[str, str]]]:
    """The kernels of an unpacked image and what was skipped, with reasons.

    With a manifest that lists files (docs/spec.md §3), its entries are the kernels and
    every file must match its size and sha256 — any difference refuses the
    image. Older manifests (bare array, no ``files``) and images without one
    (the Go tools') are read from the unpacked metadata with the cache scanner.
    ``manifest``: what :func:`load_manifest` returned, when the caller read it.
    """
    from tcv.cache.keys import key_candidates
    from tcv.cache.scan import scan_cache

    cache_root = unpacked.cache_root
    require_cache_tree(unpacked)
    doc = load_manifest(unpacked.root) if manifest is READ else manifest
    entries: list[KernelEntry] = parse_manifest(doc) if doc is not None else []
    if not entries or not all(e.files for e in entries):
        scan = scan_cache(cache_root)
        return _checked(
            cache_root, unpacked, list(scan.entries), [(s.path, s.reason) for s in scan.skipped]
        )

    dirs = {d.name for d in os.scandir(cache_root) if d.is_dir(follow_symlinks=False)}
    per_dir: dict[str, int] = {}
    for rel in unpacked.files:
        key = rel.partition("/")[0]
        per_dir[key] = per_dir.get(key, 0) + 1
    kernels: list[KernelEntry] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in entries:
        key = entry.key
        if key not in dirs and key not in unpacked.bad and entry.hash:
            key = next((k for k in key_candidates(entry.hash) if k in dirs), key)
        if key in unpacked.bad and key not in seen:
            seen.add(key)
            skipped.append((key, unpacked.bad[key]))
            continue
        if key not in dirs:
            skipped.append((entry.key, "listed in the image manifest but not in its layers"))
            continue
        if key in seen:
            raise ManifestError(f"the image manifest lists kernel {key} twice")
        _verify(key, entry, unpacked.files, per_dir.get(key, 0))
        seen.add(key)
        if key != entry.key:
            from dataclasses import replace

            entry = replace(entry, key=key)
        kernels.append(entry)
    for key in sorted(dirs - seen):
        skipped.append((key, "not listed in the image manifest"))
    return _checked(cache_root, unpacked, kernels, skipped)


def _checked(
    cache_root: Path,
    unpacked: UnpackResult,
    entries: list[KernelEntry],
    skipped: list[tuple[str, str]],
) -> tuple[list[KernelEntry], list[tuple[str, str]]]:
    """``entries`` without the kernels that are unsafe to install, which join
    ``skipped`` with the reason (:mod:`tcv.cache.kernelcheck`, links in the layer)."""
    from tcv.cache.kernelcheck import kernel_problem

    kept: list[KernelEntry] = []
    for entry in entries:
        reason = unpacked.bad.get(entry.key) or kernel_problem(cache_root / entry.key)
        if reason is None:
            kept.append(entry)
        elif not any(k == entry.key for k, _ in skipped):
            skipped.append((entry.key, reason))
    return kept, skipped


def _verify(key: str, entry: KernelEntry, files: Mapping[str, bytes], present: int) -> None:
    """Every file the manifest lists is in the layer with its sha256, and the
    layer's kernel directory holds nothing else (``present`` files in all)."""
    for name, info in entry.files.items():
        got = files.get(f"{key}/{name}")
        if got is None:
            raise ExtractError(
                f"kernel {key}: {name} is listed in the image manifest but missing from the layer",
                "the image is damaged: rebuild it with tcv -c",
            )
        want = listed_sha256(info.sha256)
        if want is None:
            raise ExtractError(f"kernel {key}: the image manifest gives {name} a malformed sha256")
        if got != want:
            raise ExtractError(
                f"kernel {key}: {name} does not match the sha256 in the image manifest",
                "the image is damaged or was altered: rebuild it with tcv -c",
            )
    if present != len(entry.files):
        prefix = key + "/"
        extra = sorted(
            rel[len(prefix) :]
            for rel in files
            if rel.startswith(prefix) and rel[len(prefix) :] not in entry.files
        )
        raise ExtractError(
            f"kernel {key}: {extra[0] if extra else 'a file'} is in the layer but not in "
            "the image manifest",
            "the image is damaged or was altered: rebuild it with tcv -c",
        )
