"""The image's manifest and summary labels (docs/spec.md §3). Pure functions.

The Go implementations read these too: they decode ``arch`` as a string and
``warp_size``/``ptx_version`` as integers, so those JSON types are kept
exactly. Older images carry a bare-array manifest, or the object form without
``key``/``files``; both parse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tcv.cache.kernel import FileInfo, KernelEntry, Target
from tcv.cache.keys import key_for_hash
from tcv.errors import ExtractError

CACHE_DIR = "io.triton.cache"
MANIFEST_DIR = "io.triton.manifest"
MANIFEST_PATH = f"{MANIFEST_DIR}/manifest.json"

LABEL_PREFIX = "cache.triton.image/"
LABEL_SUMMARY = "cache.triton.image/summary"
LABEL_ENTRY_COUNT = "cache.triton.image/entry-count"
LABEL_CACHE_SIZE = "cache.triton.image/cache-size-bytes"
LABEL_VARIANT = "cache.triton.image/variant"
LABEL_FORMAT_VERSION = "cache.triton.image/format-version"
LABEL_TITLE = "org.opencontainers.image.title"
# Where the kernels were found (tcv.cache.layout: kind and roots), for a nested layout.
LABEL_LAYOUT = "cache.triton.image/layout"
# The path the group files name: a read-only mount of io.triton.cache there hits.
LABEL_MOUNT_PATH = "cache.triton.image/mount-path"

SUMMARY_MAX = 1 << 20
MAX_TARGETS = 10_000
MAX_SIZE = 1 << 50  # a file size beyond this is not believed
VARIANT = "multi"
FORMAT_VERSION = "1"


class ManifestError(ExtractError):
    """The image's manifest or summary label cannot be understood."""


# ---------------------------------------------------------------- manifest


def _entry_json(e: KernelEntry) -> dict[str, Any]:
    return {
        "hash": e.hash,
        "key": e.key,
        "name": e.name,
        "backend": e.backend,
        "arch": e.arch,
        "warp_size": e.warp_size,
        "ptx_version": e.ptx_version,
        "num_warps": e.num_warps,
        "num_stages": e.num_stages,
        "debug": e.debug,
        "triton_version": e.triton_version,
        "files": {
            name: {"size": f.size, "sha256": f.sha256} for name, f in sorted(e.files.items())
        },
    }


def build_manifest(entries: Iterable[KernelEntry], source_root: str) -> dict[str, Any]:
    """``manifest.json`` as a dict: ``{"triton": [...], "source_root": ...}``,
    entries sorted by key."""
    return {
        "triton": [_entry_json(e) for e in sorted(entries, key=lambda e: e.key)],
        "source_root": source_root,
    }


def manifest_json(manifest: Mapping[str, Any]) -> bytes:
    """The manifest file's bytes: sorted keys, fixed layout, so the same cache
    gives the same layer digest (docs/spec.md §3)."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _as_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ManifestError(f"{what} {value!r} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ManifestError(f"{what} {value!r} is not a number")


def _as_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_entry(item: Any, index: int) -> KernelEntry:
    if not isinstance(item, Mapping):
        raise ManifestError(f"manifest entry {index} is not an object")
    hash_ = _as_str(item.get("hash"))
    triton_version = _as_str(item.get("triton_version"))
    key = _as_str(item.get("key"))
    if key is None:
        # Older manifests name no directory: Triton files an entry under an
        # encoding of its metadata hash (docs/spec.md §4); see tcv.cache.keys.key_candidates
        # for every encoding when the Triton version is unknown.
        if hash_ is None:
            raise ManifestError(f"manifest entry {index} has neither 'key' nor 'hash'")
        key = key_for_hash(hash_, triton_version)
    files_raw = item.get("files") or {}
    if not isinstance(files_raw, Mapping):
        raise ManifestError(f"manifest entry {key}: 'files' is not an object")
    files: dict[str, FileInfo] = {}
    for name, info in files_raw.items():
        if not isinstance(info, Mapping) or not isinstance(info.get("sha256"), str):
            raise ManifestError(f"manifest entry {key}: file {name!r} has no sha256")
        size = _as_int(info.get("size"), f"manifest entry {key}: size of {name!r}")
        if size is not None and not 0 <= size <= MAX_SIZE:
            raise ManifestError(f"manifest entry {key}: {name!r} has the size {size}")
        files[str(name)] = FileInfo(size=size or 0, sha256=info["sha256"])
    debug = item.get("debug")
    return KernelEntry(
        key=key,
        name=_as_str(item.get("name")) or "",
        backend=_as_str(item.get("backend")) or "",
        arch=_as_str(item.get("arch")) or "",
        warp_size=_as_int(item.get("warp_size"), f"manifest entry {key}: warp_size"),
        triton_version=triton_version,
        ptx_version=_as_int(item.get("ptx_version"), f"manifest entry {key}: ptx_version"),
        hash=hash_,
        num_warps=_as_int(item.get("num_warps"), f"manifest entry {key}: num_warps"),
        num_stages=_as_int(item.get("num_stages"), f"manifest entry {key}: num_stages"),
        debug=debug if isinstance(debug, bool) else None,
        files=files,
    )


def parse_manifest(obj: object) -> list[KernelEntry]:
    """The kernel entries of a decoded ``manifest.json``: the object form
    ``{"triton": [...]}``, or the older bare array. Raises ManifestError."""
    if isinstance(obj, Mapping):
        items = obj.get("triton")
        if items is None:
            raise ManifestError("manifest has no 'triton' list")
    else:
        items = obj
    if not isinstance(items, list):
        raise ManifestError("manifest 'triton' is not a list")
    return [_parse_entry(item, i) for i, item in enumerate(items)]


# ---------------------------------------------------------------- summary label


def _target_sort(t: Target) -> tuple[str, str, int, str]:
    return (t.backend, t.arch, t.warp_size or 0, t.triton_version or "")


def build_summary(entries: Iterable[KernelEntry]) -> list[Target]:
    """One target per distinct (backend, arch, warp_size, triton_version),
    with its kernel count and the highest PTX ISA among its kernels."""
    groups: dict[tuple[str, str, int | None, str | None], list[KernelEntry]] = {}
    for e in entries:
        groups.setdefault((e.backend, e.arch, e.warp_size, e.triton_version), []).append(e)
    targets = []
    for (backend, arch, warp, version), members in groups.items():
        ptx = [e.ptx_version for e in members if e.ptx_version is not None]
        targets.append(
            Target(
                backend=backend,
                arch=arch,
                warp_size=warp,
                triton_version=version,
                ptx_version=max(ptx) if ptx else None,
                entries=len(members),
            )
        )
    return sorted(targets, key=_target_sort)


def summary_json(targets: Iterable[Target]) -> str:
    """The summary label's value: compact JSON with ``arch`` a string and
    ``warp_size``/``ptx_version`` integers (or null), as the Go readers decode."""
    doc = {
        "targets": [
            {
                "backend": t.backend,
                "arch": str(t.arch),
                "warp_size": t.warp_size,
                "ptx_version": t.ptx_version,
                "triton_version": t.triton_version,
                "entries": t.entries,
            }
            for t in targets
        ]
    }
    return json.dumps(doc, separators=(",", ":"))


def parse_summary(text: str) -> list[Target]:
    """Targets of a summary label. Accepts the Go tools' labels (no
    ``ptx_version``/``triton_version``/``entries``, numbers as strings or
    floats, arch as a number). ``arch`` is always a string in the result."""
    from tcv.image.jsonbound import JsonBoundError, loads

    try:
        doc = loads(text, "summary label", max_bytes=SUMMARY_MAX)
    except (JsonBoundError, TypeError) as err:
        raise ManifestError(getattr(err, "message", str(err))) from None
    items = doc.get("targets") if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        raise ManifestError("summary label has no 'targets' list")
    if len(items) > MAX_TARGETS:
        raise ManifestError(f"summary label has more than {MAX_TARGETS} targets")
    targets = []
    for i, t in enumerate(items):
        if not isinstance(t, Mapping):
            raise ManifestError(f"summary target {i} is not an object")
        targets.append(
            Target(
                backend=_as_str(t.get("backend")) or "",
                arch=_as_str(t.get("arch")) or "",
                warp_size=_as_int(t.get("warp_size"), f"summary target {i}: warp_size"),
                triton_version=_as_str(t.get("triton_version")),
                ptx_version=_as_int(t.get("ptx_version"), f"summary target {i}: ptx_version")
                or None,
                entries=_as_int(t.get("entries"), f"summary target {i}: entries") or 0,
            )
        )
    return targets


def build_labels(entries: Iterable[KernelEntry], title: str) -> dict[str, str]:
    """The image config labels of docs/spec.md §3; every value a string."""
    entries = list(entries)
    return {
        LABEL_SUMMARY: summary_json(build_summary(entries)),
        LABEL_ENTRY_COUNT: str(len(entries)),
        LABEL_CACHE_SIZE: str(sum(e.bytes for e in entries)),
        LABEL_VARIANT: VARIANT,
        LABEL_FORMAT_VERSION: FORMAT_VERSION,
        LABEL_TITLE: title,
    }
