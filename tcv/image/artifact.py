"""OCI 1.1 artifacts: the cache as an artifact instead of an image (``--format artifact``).

The artifact is an OCI image manifest with ``artifactType``
``application/vnd.triton.cache.v1``, the empty config
(``application/vnd.oci.empty.v1+json``, the two bytes ``{}``), one layer of
type ``application/vnd.triton.cache.layer.v1.tar+gzip`` (the same tar as the
image layer, docs/spec.md §3) and the summary, entry count and size as manifest
annotations, so a preflight reads the manifest alone.

buildah 1.28 cannot build one (its commit always writes an image config), but
skopeo 1.9 copies one byte for byte between an OCI layout, a registry and a
``dir:`` layout. So the artifact is written here as an OCI image layout — JSON
and blobs on disk, with the standard library — and ``skopeo copy`` carries it
to the registry (``--push``) or into an ``oci:DIR[:TAG]`` layout.

Reproducible: the tar is TCV's reproducible layer, gzip gets mtime 0 and no
file name, and the JSON is written with sorted keys, so the same caches give
the same artifact digest with any tool release.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tcv.errors import CreateError, ToolError, UsageError
from tcv.image.manifest import (
    LABEL_FORMAT_VERSION,
    LABEL_TITLE,
    LABEL_VARIANT,
)
from tcv.image.ref import DOCKER, OCI, parse_image_ref

if TYPE_CHECKING:
    from tcv.image.build import CreateResult, PackedCaches
    from tcv.tools.registry import RegistryOptions

ARTIFACT_TYPE = "application/vnd.triton.cache.v1"
LAYER_TYPE = "application/vnd.triton.cache.layer.v1.tar+gzip"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
LAYER_TITLE = "cache.tar.gz"


def is_artifact(manifest: Mapping[str, Any]) -> bool:
    """An OCI artifact manifest (pure): it states an ``artifactType``, or its
    config is the empty descriptor or not an image config at all."""
    if manifest.get("artifactType"):
        return True
    config = manifest.get("config")
    if not isinstance(config, Mapping):
        return False
    media = str(config.get("mediaType", ""))
    return media in (EMPTY_CONFIG_TYPE, ARTIFACT_TYPE)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def render_manifest(layer_digest: str, layer_size: int, annotations: Mapping[str, str]) -> bytes:
    """The artifact manifest's bytes (pure): sorted keys, compact."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG_TYPE,
            "digest": _digest(EMPTY_CONFIG),
            "size": len(EMPTY_CONFIG),
            "data": "e30=",
        },
        "layers": [
            {
                "mediaType": LAYER_TYPE,
                "digest": layer_digest,
                "size": layer_size,
                "annotations": {"org.opencontainers.image.title": LAYER_TITLE},
            }
        ],
        "annotations": dict(annotations),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def artifact_annotations(labels: Mapping[str, str]) -> dict[str, str]:
    """The docs/spec.md §3 labels as manifest annotations (title, summary, counts)."""
    keep = dict(labels)
    keep.pop(LABEL_VARIANT, None)
    keep.setdefault(LABEL_FORMAT_VERSION, "1")
    keep.setdefault(LABEL_TITLE, "")
    return keep


def write_layout(layout: Path, layer_tar: Path, annotations: Mapping[str, str], tag: str) -> str:
    """An OCI image layout at ``layout`` holding the artifact as ``tag``;
    returns the manifest digest. The tar is gzipped as a stream."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tmp = blobs / "layer.partial"
    h = hashlib.sha256()
    with (
        open(layer_tar, "rb") as src,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        shutil.copyfileobj(src, gz, 1 << 20)
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    layer_digest = "sha256:" + h.hexdigest()
    size = tmp.stat().st_size
    tmp.rename(blobs / layer_digest.split(":", 1)[1])
    (blobs / _digest(EMPTY_CONFIG).split(":", 1)[1]).write_bytes(EMPTY_CONFIG)
    manifest = render_manifest(layer_digest, size, annotations)
    digest = _digest(manifest)
    (blobs / digest.split(":", 1)[1]).write_bytes(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "digest": digest,
                "size": len(manifest),
                "annotations": {REF_NAME: tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index, sort_keys=True))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return digest


def artifact_destination(image: str, *, push: bool) -> tuple[str, str, str]:
    """(skopeo destination, shown name, title) for ``-i IMAGE`` (UsageError when
    it cannot hold an artifact: containers-storage holds images only)."""
    from tcv.image.build import image_title

    ref = parse_image_ref(image)
    if ref.transport == OCI:
        if push:
            raise UsageError(
                f"cannot push {image!r}: an OCI layout is local",
                "give a registry reference with --push, or drop --push",
            )
        path, _, tag = ref.name.partition(":")
        return f"oci:{path}:{tag or 'latest'}", str(ref), image_title(Path(path).name or "cache")
    if ref.transport != DOCKER:
        raise UsageError(
            f"cannot write an artifact to {image!r}: local image storage holds images only",
            "push it (-i REGISTRY/REPOSITORY:TAG --push) or write a layout (-i oci:DIR:TAG)",
        )
    if not push:
        raise UsageError(
            f"an artifact cannot be kept in local image storage ({image})",
            "add --push, or write an OCI layout with -i oci:DIR:TAG",
        )
    if "@" in ref.name:
        raise UsageError(
            f"cannot create {image!r}: a digest names an existing image",
            "give a tag instead (REPOSITORY:TAG); the new digest is printed when done",
        )
    return f"docker://{ref.name}", ref.name, image_title(ref.name)


def create_artifact(
    packed: PackedCaches, image: str, push: bool, registry: RegistryOptions, *, mtime: int
) -> CreateResult:
    """Write the artifact of ``packed`` and copy it to ``image``."""
    from tcv.image.build import CreateResult, staging
    from tcv.image.layer import write_layer_file
    from tcv.tools.runner import run

    dest, shown, title = artifact_destination(image, push=push)
    labels = packed.labels(packed.entries, title)
    with staging() as stage:
        layer = stage / "layer.tar"
        write_layer_file(packed.members(), layer, mtime=mtime)
        layout = stage / "layout"
        digest = write_layout(layout, layer, artifact_annotations(labels), "artifact")
        layer.unlink()
        side = registry.copy_args("dest") if dest.startswith("docker://") else []
        argv = [
            "skopeo",
            "copy",
            "--quiet",
            *side,
            f"--digestfile={stage / 'digest'}",
            f"oci:{layout}:artifact",
            dest,
        ]
        try:
            run(argv, what=f"copy the artifact to {shown}")
        except ToolError as err:
            raise copy_error(err, shown, dest) from None
        try:
            copied = (stage / "digest").read_text().strip() or digest
        except OSError:
            copied = digest
    return CreateResult(
        image=shown,
        digest=copied,
        image_id="",
        entries=len(packed.entries),
        bytes=sum(e.bytes for e in packed.entries),
        pushed=dest.startswith("docker://"),
        skipped=[{"path": s.path, "reason": s.reason} for s in packed.merged.skipped],
        kind="artifact",
        layout=packed.layout_text,
        mount_path=packed.mount_path,
    )


def copy_error(err: ToolError, shown: str, dest: str) -> CreateError:
    """The one line for a failed copy of the built artifact to ``dest``."""
    from tcv.tools import skopeo
    from tcv.tools.registry import access_failure, access_hint, registry_host

    message = skopeo.skopeo_message(err.stderr_tail or err.message)
    if err.returncode is None or not dest.startswith("docker://"):
        hint = err.hint or "check the destination path and its permissions"
    else:
        host = registry_host(dest.removeprefix("docker://"))
        hint = access_hint(access_failure(message), host)
    return CreateError(f"built the artifact but cannot copy it to {shown}: {message}", hint)
