"""Fleet images: one reference, one image per GPU target, each host pulls its own.

``tcv -c --split-by-target`` groups the kernels by target (backend, arch,
warp size, Triton version, as the summary label does), builds each group as
its own image with its own docs/spec.md §3 labels, and puts them under one OCI image
index (``buildah manifest create/add/annotate``). Each index entry carries
its target and summary as annotations, so a reader chooses the entries that
fit its GPUs from the index alone and downloads only their layers.

The OCI platform field has no GPU dimension: every entry has the platform of
a ``scratch`` image, and a client that ignores the annotations (``skopeo
copy``, ``podman pull``) gets the first entry, a valid cache image.

Reproducible: the groups are built and added in sorted order with fixed
timestamps, so the same caches give the same child digests and the same
index digest (with the same buildah release compressing the layers).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tcv.cache.kernel import KernelEntry, Target
from tcv.errors import CreateError, TcvError, ToolError
from tcv.image.manifest import (
    LABEL_CACHE_SIZE,
    LABEL_ENTRY_COUNT,
    LABEL_LAYOUT,
    LABEL_MOUNT_PATH,
    LABEL_SUMMARY,
    build_summary,
    summary_json,
)
from tcv.tools import buildah

if TYPE_CHECKING:
    from tcv.image.build import CreateResult, CreateTarget, PackedCaches
    from tcv.tools.registry import RegistryOptions

log = logging.getLogger(__name__)

ANNOTATION_TARGET = "cache.triton.image/target"
# Labels of the whole cache, not of one target: every entry carries them as
# annotations, and a reader of the index takes them when all entries agree.
SHARED_LABELS = (LABEL_LAYOUT, LABEL_MOUNT_PATH)
INDEX_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class TargetGroup:
    """The kernels of one target, and the annotations of its index entry."""

    target: Target
    entries: list[KernelEntry]

    @property
    def label(self) -> str:
        return target_text(self.target)

    def annotations(self) -> dict[str, str]:
        return {
            ANNOTATION_TARGET: self.label,
            LABEL_SUMMARY: summary_json([self.target]),
            LABEL_ENTRY_COUNT: str(len(self.entries)),
            LABEL_CACHE_SIZE: str(sum(e.bytes for e in self.entries)),
        }


# ---------------------------------------------------------------- pure


def target_text(t: Target) -> str:
    """``backend:arch:warp_size:triton_version`` (``?`` for what is unknown)."""
    warp = "?" if t.warp_size is None else str(t.warp_size)
    return f"{t.backend or '?'}:{t.arch or '?'}:{warp}:{t.triton_version or '?'}"


def group_by_target(entries: Iterable[KernelEntry]) -> list[TargetGroup]:
    """One group per summary target, in the summary's sorted order."""
    groups: dict[tuple[str, str, int | None, str | None], list[KernelEntry]] = {}
    for e in sorted(entries, key=lambda e: e.key):
        groups.setdefault((e.backend, e.arch, e.warp_size, e.triton_version), []).append(e)
    out = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2] or 0, k[3] or "")):
        members = groups[key]
        (target,) = build_summary(members)
        out.append(TargetGroup(target, members))
    return out


def child_name(index_name: str, group: TargetGroup) -> str:
    """The local name of a group's image: the index's tag with the target appended
    (``r/x:1`` → ``r/x:1-cuda-90-32-3.9.0``), a valid tag whatever the arch."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", group.label.replace("?", "unknown")).strip("-.")
    last = index_name.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = index_name.rsplit(":", 1)
        return f"{repo}:{tag[: 127 - len(slug)]}-{slug}"
    return f"{index_name}:{slug}"


def is_index(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("mediaType") in INDEX_MEDIA_TYPES or (
        "manifests" in manifest and "layers" not in manifest
    )


@dataclass(frozen=True)
class IndexEntry:
    """One entry of a fleet index as a reader sees it."""

    digest: str
    media_type: str
    annotations: dict[str, str]

    @property
    def target(self) -> str | None:
        return self.annotations.get(ANNOTATION_TARGET)


def index_entries(manifest: Mapping[str, Any]) -> list[IndexEntry]:
    """The image entries of an index (entries without a digest are ignored)."""
    out = []
    for m in manifest.get("manifests") or []:
        if not isinstance(m, Mapping) or not isinstance(m.get("digest"), str):
            continue
        ann = m.get("annotations")
        out.append(
            IndexEntry(
                digest=m["digest"],
                media_type=str(m.get("mediaType", "")),
                annotations=(
                    {str(k): str(v) for k, v in ann.items()} if isinstance(ann, Mapping) else {}
                ),
            )
        )
    return out


def parse_index(raw: bytes) -> list[IndexEntry]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise CreateError("the image index is not JSON") from None
    return index_entries(data if isinstance(data, Mapping) else {})


# ---------------------------------------------------------------- create


def create_fleet(
    packed: PackedCaches,
    target: CreateTarget,
    image_format: str,
    registry: RegistryOptions,
    *,
    mtime: int,
) -> CreateResult:
    """Build one image per target group, the index over them, and push with ``--all``."""
    from tcv.image.build import CreateResult, build_image, push_error, staging
    from tcv.image.layer import write_layer_file

    groups = group_by_target(packed.entries)
    built: list[tuple[TargetGroup, str]] = []
    done = False
    with staging() as stage:
        try:
            for i, group in enumerate(groups):
                name = child_name(target.local, group)
                layer = stage / f"layer-{i}.tar"
                write_layer_file(packed.members(group.entries), layer, mtime=mtime)
                labels = packed.labels(group.entries, target.title)
                build_image(layer, labels, name, image_format, mtime, stage)
                layer.unlink()
                built.append((group, name))
                log.info("built %s (%d kernels)", name, len(group.entries))
            image_id = _make_index(target.local, built, packed.placement_labels())
            done = True
        finally:
            if not done:
                for _, name in built:
                    buildah.remove_image(name)
        digest = ""
        pushed = False
        if target.push_to:
            try:
                digest = buildah.manifest_push(
                    target.local, target.push_to, registry, digestfile=stage / "digest"
                )
            except ToolError as err:
                failed = push_error(err, target.local)
                if isinstance(failed, TcvError) and failed.hint:
                    failed.hint = failed.hint.replace(
                        "buildah push", "buildah manifest push --all --format oci"
                    )
                raise failed from None
            pushed = True
    return CreateResult(
        image=target.local,
        digest=digest,
        image_id=image_id,
        entries=len(packed.entries),
        bytes=sum(e.bytes for e in packed.entries),
        pushed=pushed,
        skipped=[{"path": s.path, "reason": s.reason} for s in packed.merged.skipped],
        targets=[{"target": g.label, "image": n, "entries": len(g.entries)} for g, n in built],
        kind="index",
        layout=packed.layout_text,
        mount_path=packed.mount_path,
    )


def _make_index(
    name: str, built: Sequence[tuple[TargetGroup, str]], shared: Mapping[str, str]
) -> str:
    """The index ``name`` over the built images, replacing an older one of that
    name; ``shared``: annotations every entry carries (where the kernels go)."""
    buildah.manifest_remove(name)
    buildah.remove_image(name)
    try:
        list_id = buildah.manifest_create(name)
        for group, child in built:
            digest = buildah.manifest_add(name, child)
            buildah.manifest_annotate(name, digest, {**group.annotations(), **shared})
        return list_id
    except ToolError as err:
        buildah.manifest_remove(name)
        raise CreateError(err.message, err.hint) from None
