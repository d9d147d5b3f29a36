"""Extract: preflight, pull, validate, filter, relocate, install (SPEC §2–§5, §8).

1. Preflight: ``skopeo inspect`` reads the manifest and config only; the
   summary label is checked against the host's GPUs, and an image where no
   target fits stops here (exit 4) before a single layer byte moves.
2. Pull into a fresh staging directory (``skopeo copy`` to a ``dir:`` layout,
   pinned to the digest the preflight read), unpack every layer in order with
   the checks of :mod:`tcv.image.unpack`, and verify each file against the image
   manifest's sha256 when the manifest carries them.
3. Filter per kernel with the compatibility engine, then install the kernels
   that fit with :func:`tcv.install.install_kernels` (relocated, atomic,
   locked). Staging is removed on success, failure and Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tcv.cache.kernel import KernelEntry, Target
from tcv.errors import ExtractError, IncompatibleError, NotACacheError, TcvError
from tcv.gpu.model import HostGpus
from tcv.image import jsonbound
from tcv.image.manifest import LABEL_CACHE_SIZE, LABEL_ENTRY_COUNT, LABEL_PREFIX, LABEL_SUMMARY
from tcv.image.pullguard import PullGuard, pull_cap
from tcv.image.ref import OCI, ImageRef
from tcv.image.unpack import CACHE_TREE, MANIFEST_TREE, UnpackResult, unpack_layers
from tcv.placement import Placement
from tcv.progress import DirWatcher, Progress
from tcv.staging import staging_dir
from tcv.tools import skopeo
from tcv.tools.registry import RegistryOptions

if TYPE_CHECKING:
    from tcv.autotune_install import TunedImage

log = logging.getLogger(__name__)

MANIFEST_FILE = f"{MANIFEST_TREE}/manifest.json"
# A 10,000-kernel manifest is about 15 MB; parsing takes some 8x its size.
MANIFEST_MAX = 64 << 20
LABEL_MAX = 1 << 20  # the summary label; registries cap a whole config at 4 MiB
SIZE_MAX = 1 << 50  # a size or count label beyond this is not believed

NO_GPU_HINT = (
    "name the GPU to extract for with --gpu SPEC (e.g. --gpu cuda:90) or TCV_GPUS, "
    "or pass --no-gpu-check to install every kernel"
)
NO_FIT_HINT = (
    "pass --gpu SPEC to extract for another GPU, or --no-gpu-check to install every kernel"
)


# ---------------------------------------------------------------- description


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
        """The ``tcv inspect --json`` document (SPEC §2); a fleet index adds
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
    from tcv.image.manifest import ManifestError, parse_summary

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
    from tcv.image.fleet import index_entries

    children = tuple(
        describe(ref.pinned(e.digest), e.digest, e.annotations) for e in index_entries(manifest)
    )
    if not any(c.targets is not None for c in children):
        return None
    targets = [t for c in children for t in c.targets or []]
    from tcv.image.manifest import summary_json

    summary = jsonbound.loads(summary_json(targets), "the summary")
    labels: dict[str, str] = {}
    for name in (LABEL_ENTRY_COUNT, LABEL_CACHE_SIZE):
        values = [_int_label(c.labels, name) for c in children]
        if all(v is not None for v in values):
            labels[name] = str(sum(v for v in values if v is not None))
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


# ---------------------------------------------------------------- fetching


@dataclass
class FetchedImage:
    """An image pulled, unpacked and verified into a directory.

    ``entries``: the kernels, from the image manifest (or read from the
    unpacked metadata for images whose manifest lists no files);
    ``skipped``: (key or path, reason) for what is not usable.
    """

    digest: str
    labels: dict[str, str]
    entries: list[KernelEntry]
    cache_root: Path
    skipped: list[tuple[str, str]] = field(default_factory=list)
    description: ImageDescription | None = None
    autotune: TunedImage | None = None  # its autotuning results (tcv.autotune_install)


# An image without the cache-size-bytes label (the Go tools' images) is still
# bounded, so a decompression bomb is refused: real Triton caches gzip about
# 6:1 (the 3.9 and 3.0 fixtures: 5.8 and 6.4), far below this ratio.
UNLABELLED_RATIO = 64
UNLABELLED_FLOOR = 256 << 20


def unlabelled_limit(blob_bytes: int) -> int:
    """Most cache bytes an image without a size label may unpack to."""
    return max(UNLABELLED_FLOOR, UNLABELLED_RATIO * blob_bytes)


def fetch_image(
    ref: ImageRef,
    opts: RegistryOptions,
    into: Path,
    *,
    host: HostGpus | None = None,
    max_size: int | None = None,
    progress: Progress | None = None,
    triton_version: str | None = None,
    timeout: float | None = None,
    on_description: Callable[[ImageDescription], None] | None = None,
    desc: ImageDescription | None = None,
    from_layout: Path | None = None,
) -> FetchedImage:
    """Preflight (the GPU check only when ``host`` is given), pull, unpack and
    verify ``ref`` into ``into`` (an empty directory the caller owns and removes).
    The pulled blobs are deleted once unpacked; ``cache_root`` holds the kernel
    directories. ``on_description`` sees the labels before any layer is pulled
    (and may refuse by raising). ``desc``: what an earlier read of the manifest
    said (no preflight then); ``from_layout``: the local OCI layout whose entry
    ``desc.digest`` to read."""
    progress = progress or Progress()
    if desc is None:
        desc = preflight(ref, opts, host, triton_version=triton_version, timeout=timeout)
    if on_description is not None:
        on_description(desc)
    layout = into / "image"
    root = into / "root"
    root.mkdir(mode=0o700)
    progress.start("pull")
    bound = max_size if max_size is not None else desc.cache_size
    cap = pull_cap(bound)
    with DirWatcher(layout, progress), PullGuard(layout, cap) as guard:
        try:
            if from_layout is not None:
                copy_from_oci_layout(from_layout, desc.digest, layout)
            else:
                skopeo.copy_to_dir(ref.pinned(desc.digest), opts, layout, timeout=timeout)
        except TcvError:
            if not guard.tripped:
                raise
    if guard.tripped:
        raise ExtractError(
            f"the registry sent more than {cap} bytes for {ref}, far more than the image "
            "says it holds",
            "raise --max-size if the image is trusted and really that large",
        )
    progress.finish()
    raw, manifest = skopeo.read_dir_manifest(layout)
    digest = desc.digest or skopeo.manifest_digest(raw)
    labels = desc.labels
    layers = _layers(layout, manifest)
    blob_bytes = sum(p.stat().st_size for p, _ in layers)
    # The label may lower the bound, never raise it past what an honest image
    # compresses to; only the operator's --max-size can.
    limit = max_size
    if limit is None:
        limit = unlabelled_limit(blob_bytes)
        if desc.cache_size is not None:
            limit = min(limit, desc.cache_size)
    progress.start("unpack", blob_bytes)
    unpacked = unpack_layers(layers, root, max_bytes=limit, progress=progress.update)
    progress.finish()
    shutil.rmtree(layout, ignore_errors=True)
    entries, skipped = resolve_entries(unpacked)
    from tcv.autotune_install import resolve_autotune

    tuned, skipped = resolve_autotune(unpacked, labels, skipped)
    return FetchedImage(digest, labels, entries, unpacked.cache_root, skipped, desc, tuned)


def fetch_images(
    ref: ImageRef,
    opts: RegistryOptions,
    into: Path,
    *,
    host: HostGpus | None = None,
    strict: bool = True,
    max_size: int | None = None,
    progress: Progress | None = None,
    triton_version: str | None = None,
    timeout: float | None = None,
    on_description: Callable[[ImageDescription], None] | None = None,
) -> tuple[ImageDescription, list[FetchedImage]]:
    """Read the manifest of ``ref`` once, then pull what this host needs: of a
    fleet index only the entries whose targets fit ``host`` (every entry
    without one), of anything else the one image. ``strict``: an image whose
    summary fits nothing stops here too (``tcv -e``; ``tcv check`` reports per
    kernel instead). An index with no fitting entry always stops here (exit 4)."""
    require_gpus(host)
    desc = preflight(ref, opts, None, timeout=timeout)  # trust, not a cache image
    if on_description is not None:
        on_description(desc)
    if desc.kind != "index":
        if host is not None and strict:
            check_fits(desc, host, triton_version)
        one = fetch_image(
            ref, opts, into, max_size=max_size, progress=progress, timeout=timeout, desc=desc
        )
        return desc, [one]
    # skopeo 1.9 has no digest references into an OCI layout: an entry of an
    # index there is read from the layout's own blobs.
    from_layout = Path(ref.name.partition(":")[0]) if ref.transport == OCI else None
    fetched = []
    for i, entry in enumerate(choose_entries(desc, host, triton_version)):
        part = into / f"part-{i}"
        part.mkdir(mode=0o700)
        fetched.append(
            fetch_image(
                entry.ref,
                opts,
                part,
                max_size=max_size,
                progress=progress,
                timeout=timeout,
                desc=entry,
                from_layout=from_layout,
            )
        )
    return desc, fetched


def copy_from_oci_layout(layout_dir: Path, digest: str, dest: Path) -> None:
    """The entry ``digest`` of a local OCI layout as a ``dir:`` layout (what
    ``skopeo copy`` writes): its manifest and the blobs it names, each checked
    against its digest while copied."""
    import hashlib

    blobs = layout_dir / "blobs" / "sha256"
    dest.mkdir(mode=0o700)

    def copy(want: str, to: Path) -> None:
        name = skopeo.blob_path(layout_dir, want).name
        h = hashlib.sha256()
        try:
            with open(blobs / name, "rb") as src, open(to, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
        except OSError as err:
            raise ExtractError(
                f"cannot read blob {want} of the OCI layout {layout_dir}: {err.strerror or err}",
                "check the layout (skopeo copy it again)",
            ) from None
        if "sha256:" + h.hexdigest() != want:
            raise ExtractError(
                f"blob {want} of the OCI layout {layout_dir} does not match its digest",
                "the layout is damaged: copy the image again",
            )

    copy(digest, dest / skopeo.DIR_MANIFEST)
    raw = (dest / skopeo.DIR_MANIFEST).read_bytes()
    (dest / "version").write_text("Directory Transport Version: 1.1\n")
    try:
        manifest = jsonbound.loads(raw, "the OCI layout entry", max_bytes=skopeo.MAX_DOCUMENT)
    except jsonbound.JsonBoundError:
        raise ExtractError(f"entry {digest} of the OCI layout {layout_dir} is not JSON") from None
    config = manifest.get("config") if isinstance(manifest, dict) else None
    descs = [config] if isinstance(config, Mapping) else []
    descs += [d for d in manifest.get("layers") or [] if isinstance(d, Mapping)]
    for d in descs:
        if isinstance(d.get("digest"), str):
            copy(d["digest"], dest / skopeo.blob_path(dest, d["digest"]).name)


def _layers(layout: Path, manifest: Mapping[str, Any]) -> list[tuple[Path, str]]:
    if manifest.get("schemaVersion") == 1:
        raise ExtractError(
            "the image uses the Docker schema 1 manifest, which TCV does not read",
            "rebuild the image with tcv -c (or any current builder)",
        )
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ExtractError("the image manifest lists no layers: not a Triton cache image")
    out = []
    for desc in layers:
        if not isinstance(desc, Mapping) or not isinstance(desc.get("digest"), str):
            raise ExtractError("the image manifest has a malformed layer entry")
        out.append((skopeo.blob_path(layout, desc["digest"]), str(desc.get("mediaType", ""))))
    return out


# ---------------------------------------------------------------- validation


def _norm_sha(value: str) -> str:
    return value.lower().removeprefix("sha256:")


def resolve_entries(unpacked: UnpackResult) -> tuple[list[KernelEntry], list[tuple[str, str]]]:
    """The kernels of an unpacked image and what was skipped, with reasons.

    With a manifest that lists files (SPEC §3), its entries are the kernels and
    every file must match its size and sha256 — any difference refuses the
    image. Older manifests (bare array, no ``files``) and images without one
    (the Go tools') are read from the unpacked metadata with the cache scanner.
    """
    from tcv.cache.keys import key_candidates
    from tcv.cache.scan import scan_cache
    from tcv.image.manifest import ManifestError, parse_manifest

    cache_root = unpacked.cache_root
    if not _real_dir(cache_root):
        raise ExtractError(
            f"the image has no {CACHE_TREE}/ directory: it is not a Triton cache image",
            "check the image name; cache images are made with tcv -c",
        )
    manifest_path = unpacked.root / MANIFEST_FILE
    entries: list[KernelEntry] = []
    if _real_file(manifest_path):
        if manifest_path.stat().st_size > MANIFEST_MAX:
            raise ExtractError(
                f"the image's manifest.json is implausibly large (more than {MANIFEST_MAX} bytes)"
            )
        try:
            doc = jsonbound.loads(
                manifest_path.read_bytes(), "the image's manifest.json", max_bytes=MANIFEST_MAX
            )
        except jsonbound.JsonBoundError as err:
            raise ExtractError(
                err.message, "the image is damaged: rebuild it with tcv -c"
            ) from None
        entries = parse_manifest(doc)
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


def _real_dir(path: Path) -> bool:
    """A directory itself, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _real_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


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
        try:
            want = bytes.fromhex(_norm_sha(info.sha256))
        except ValueError:
            raise ExtractError(
                f"kernel {key}: the image manifest gives {name} a malformed sha256"
            ) from None
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
        """The ``tcv -e --json`` document (SPEC §2); replaced kernels count as installed."""
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
) -> ExtractReport:
    """The whole of ``tcv -e``. ``host`` None installs every kernel (``--no-gpu-check``).

    ``placements`` (``--for``): the directories to install into, decided from
    the image's labels before any layer is pulled; default: DEST alone.

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
                from tcv.autotune_install import install_autotune

                report.autotune = install_autotune(
                    fetched.autotune, planned, host, force=force, into=report.autotune
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
