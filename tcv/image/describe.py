"""What an image says about itself before a layer byte moves (docs/spec.md §2, §3, §5).

``describe`` decodes the labels of an image, ``describe_index`` a fleet
index's entries, ``inspect_image`` reads them through skopeo; the preflight
holds the summary against the host's GPUs (exit 4 when nothing fits) and
refuses an application image named by mistake (exit 5). ``tcv inspect``,
``tcv check -i``, ``tcv -e`` and the hook all start here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tcv.cache.kernel import Target
from tcv.errors import IncompatibleError, NotACacheError
from tcv.gpu.model import HostGpus
from tcv.image import jsonbound
from tcv.image.manifest import (
    LABEL_CACHE_SIZE,
    LABEL_ENTRY_COUNT,
    LABEL_PREFIX,
    LABEL_SUMMARY,
    ManifestError,
    parse_summary,
    summary_json,
)
from tcv.image.ref import ImageRef
from tcv.tools import skopeo
from tcv.tools.registry import RegistryOptions

log = logging.getLogger(__name__)

LABEL_MAX = 1 << 20  # the summary label; registries cap a whole config at 4 MiB
SIZE_MAX = 1 << 50  # a size or count label beyond this is not believed

NO_GPU_HINT = (
    "name the GPU to extract for with --gpu SPEC (e.g. --gpu cuda:90) or TCV_GPUS, "
    "or pass --no-gpu-check to install every kernel"
)
NO_FIT_HINT = (
    "pass --gpu SPEC to extract for another GPU, or --no-gpu-check to install every kernel"
)


@dataclass(frozen=True)
class ImageDescription:
    """What the image says about itself before any layer is read."""

    ref: ImageRef
    digest: str
    labels: dict[str, str]
    summary: dict[str, Any] | None  # the summary label, decoded
    targets: list[Target] | None  # None: the image has no (readable) summary label
    kind: str = "image"  # "image", "index" (a fleet image) or "artifact"
    # A fleet index: each image entry, described by its annotations.
    entries: tuple[ImageDescription, ...] = ()

    @property
    def entry_count(self) -> int | None:
        return _int_label(self.labels, LABEL_ENTRY_COUNT)

    @property
    def cache_size(self) -> int | None:
        return _int_label(self.labels, LABEL_CACHE_SIZE)

    def to_json(self) -> dict[str, Any]:
        """The ``tcv inspect --json`` document (docs/spec.md §2); a fleet index adds
        ``kind`` and one ``manifests`` item per entry."""
        doc: dict[str, Any] = {
            "image": str(self.ref),
            "digest": self.digest,
            "labels": dict(self.labels),
            "summary": self.summary,
        }
        if self.kind != "image":
            doc["kind"] = self.kind
        from tcv.cache.autotune import read_labels

        recorded = read_labels(self.labels)
        if recorded is not None:
            doc["autotune"] = recorded.to_json()
        if self.entries:
            doc["manifests"] = [
                {"digest": e.digest, "annotations": dict(e.labels), "summary": e.summary}
                for e in self.entries
            ]
        return doc


def _int_label(labels: Mapping[str, str], name: str) -> int | None:
    """A count or size label; None when absent or not a plausible number."""
    value = labels.get(name)
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 16:
        return None
    number = int(value)
    return number if number <= SIZE_MAX else None


def describe(
    ref: ImageRef, digest: str, labels: Mapping[str, str], kind: str = "image"
) -> ImageDescription:
    """Decode the summary label (pure). An unreadable summary is treated as absent,
    with a warning: the per-kernel check after the pull still decides."""
    text = labels.get(LABEL_SUMMARY)
    summary: dict[str, Any] | None = None
    targets: list[Target] | None = None
    if text:
        try:
            decoded = jsonbound.loads(text, "the summary label", max_bytes=LABEL_MAX)
            targets = parse_summary(text)
            summary = decoded if isinstance(decoded, dict) else {"targets": decoded}
        except (jsonbound.JsonBoundError, ManifestError) as err:
            log.warning("ignoring the unreadable summary label of %s: %s", ref, err)
    return ImageDescription(ref, digest, dict(labels), summary, targets, kind)


def describe_index(
    ref: ImageRef, digest: str, manifest: Mapping[str, Any]
) -> ImageDescription | None:
    """A fleet index from its raw JSON (pure): each entry described by its
    annotations (:mod:`tcv.image.fleet`). None when no entry carries a summary: an
    index of ordinary images (one per platform), read the usual way."""
    from tcv.image.fleet import SHARED_LABELS, index_entries

    children = tuple(
        describe(ref.pinned(e.digest), e.digest, e.annotations) for e in index_entries(manifest)
    )
    if not any(c.targets is not None for c in children):
        return None
    targets = [t for c in children for t in c.targets or []]
    summary = jsonbound.loads(summary_json(targets), "the summary")
    labels: dict[str, str] = {}
    for name in (LABEL_ENTRY_COUNT, LABEL_CACHE_SIZE):
        values = [_int_label(c.labels, name) for c in children]
        if all(v is not None for v in values):
            labels[name] = str(sum(v for v in values if v is not None))
    for name in SHARED_LABELS:
        shared = {c.labels.get(name) for c in children}
        if len(shared) == 1 and None not in shared:
            labels[name] = str(shared.pop())
    return ImageDescription(ref, digest, labels, summary, targets, "index", children)


def inspect_image(
    ref: ImageRef, opts: RegistryOptions, *, timeout: float | None = None
) -> ImageDescription:
    """Digest and labels of ``ref``, without downloading a layer.

    The raw manifest comes first (one request): a fleet index is described by
    its entries' annotations, an artifact by its manifest annotations, and
    only an ordinary image needs its config (``skopeo inspect``).
    """
    from tcv.image.artifact import is_artifact
    from tcv.image.fleet import is_index

    raw = skopeo.inspect_raw(ref, opts, timeout=timeout)
    try:
        manifest = jsonbound.loads(raw, "the image manifest", max_bytes=skopeo.MAX_DOCUMENT)
    except jsonbound.JsonBoundError:
        manifest = None
    if isinstance(manifest, dict):
        digest = skopeo.manifest_digest(raw)
        if is_index(manifest):
            desc = describe_index(ref, digest, manifest)
            if desc is not None:
                return desc
        elif is_artifact(manifest):
            ann = manifest.get("annotations")
            labels = {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}
            return describe(ref, digest, labels, kind="artifact")
    info = skopeo.inspect(ref, opts, timeout=timeout)
    return describe(ref, info.digest, info.labels)


def preflight_verdicts(
    desc: ImageDescription, host: HostGpus, triton_version: str | None = None
) -> list[tuple[Target, str | None]]:
    """Each summary target with None when it fits ``host``, else the reason.

    The consuming Triton's version is only held against targets that state
    their own: the Go tools' summaries carry none, and their kernels' real
    versions are read after the pull.
    """
    from tcv.compat import check_targets

    out: list[tuple[Target, str | None]] = []
    for target in desc.targets or []:
        consumer = triton_version if target.triton_version else None
        out.extend(check_targets([target], host, triton_version=consumer))
    return out


def target_label(t: Target) -> str:
    text = f"{t.backend}:{t.arch}"
    if t.warp_size is not None:
        text += f":{t.warp_size}"
    return text


def require_gpus(host: HostGpus | None) -> None:
    """A host checked for GPUs must have one: without, nothing can fit it (exit 4,
    one line naming --gpu and TCV_GPUS, before any request)."""
    if host is not None and not host.gpus:
        raise IncompatibleError(
            "this host has no GPU that TCV can see, so no kernel can fit it", NO_GPU_HINT
        )


def preflight(
    ref: ImageRef,
    opts: RegistryOptions,
    host: HostGpus | None,
    *,
    triton_version: str | None = None,
    timeout: float | None = None,
) -> ImageDescription:
    """Inspect ``ref``; refuse an application image (exit 5) and, unless ``host``
    is None (``--no-gpu-check``), raise :class:`IncompatibleError` (exit 4) when
    no target of its summary fits ``host``. An image without a summary passes:
    its kernels are judged one by one after the pull."""
    require_gpus(host)
    from tcv.image.trust import refuse_if_rejected

    refuse_if_rejected(ref, opts.signature_policy)
    desc = inspect_image(ref, opts, timeout=timeout)
    if desc.kind == "image" and not any(name.startswith(LABEL_PREFIX) for name in desc.labels):
        refuse_application_image(ref, opts, timeout=timeout)
    if host is None:
        return desc
    check_fits(desc, host, triton_version)
    return desc


def check_fits(desc: ImageDescription, host: HostGpus, triton_version: str | None) -> None:
    """Raise :class:`IncompatibleError` when no target of ``desc`` fits ``host``."""
    if desc.targets is None:
        log.info("%s has no summary label: checking its kernels after the pull", desc.ref)
        return
    verdicts = preflight_verdicts(desc, host, triton_version)
    if verdicts and all(reason is not None for _, reason in verdicts):
        why = "; ".join(f"{target_label(t)} ({reason})" for t, reason in verdicts)
        raise IncompatibleError(f"nothing in {desc.ref} fits this host: {why}", NO_FIT_HINT)


def choose_entries(
    desc: ImageDescription, host: HostGpus | None, triton_version: str | None = None
) -> list[ImageDescription]:
    """The entries of a fleet index to download for ``host`` (all without one):
    those with a target that fits, and those without a summary (judged per
    kernel after the pull). Raises :class:`IncompatibleError` when none is left."""
    if host is None:
        return list(desc.entries)
    chosen = []
    for entry in desc.entries:
        if entry.targets is None or any(
            reason is None for _, reason in preflight_verdicts(entry, host, triton_version)
        ):
            chosen.append(entry)
    if not chosen:
        check_fits(desc, host, triton_version)  # names every target and why
        raise IncompatibleError(f"nothing in {desc.ref} fits this host", NO_FIT_HINT)
    log.info(
        "%s: downloading %d of %d images (%s)",
        desc.ref,
        len(chosen),
        len(desc.entries),
        ", ".join(e.labels.get("cache.triton.image/target", e.digest) for e in chosen),
    )
    return chosen


# The configuration fields that make an image something to run, not a cache.
RUNNABLE_FIELDS = ("Cmd", "Entrypoint", "Env")


def refuse_application_image(
    ref: ImageRef, opts: RegistryOptions, *, timeout: float | None = None
) -> None:
    """Raise :class:`NotACacheError` (exit 5) for an image without any
    ``cache.triton.image/*`` label whose configuration says it is meant to be run
    (a command, an entry point or an environment): an application image named by
    mistake is refused before a layer byte moves. Cache images of the older tools
    without labels (``FROM scratch`` plus the cache tree) set none of these."""
    config = skopeo.inspect_config(ref, opts, timeout=timeout)
    found = [name for name in RUNNABLE_FIELDS if config.get(name)]
    if found:
        raise NotACacheError(
            f"{ref} is not a Triton cache image: it has no cache.triton.image labels and "
            f"its configuration sets {', '.join(found)}, as an application image does",
            "check the image name; cache images are made with tcv -c",
        )
