"""Pulling an image into staging: ``skopeo copy`` to a ``dir:`` layout pinned to
the digest the preflight read (or the blobs of a local OCI layout), bounded by
the size the image admits to, then every layer unpacked in order by
:mod:`tcv.image.unpack` and the result verified by :mod:`tcv.image.verify`.
A fleet index is fetched entry by entry, only the entries the host can use.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tcv.cache.kernel import KernelEntry
from tcv.errors import ExtractError, TcvError
from tcv.gpu.model import HostGpus
from tcv.image import jsonbound
from tcv.image.describe import (
    ImageDescription,
    check_fits,
    choose_entries,
    preflight,
    require_gpus,
)
from tcv.image.pullguard import PullGuard, pull_cap
from tcv.image.ref import OCI, ImageRef
from tcv.image.unpack import unpack_layers
from tcv.image.verify import load_manifest, require_cache_tree, resolve_entries
from tcv.progress import DirWatcher, Progress
from tcv.tools import skopeo
from tcv.tools.registry import RegistryOptions

if TYPE_CHECKING:
    from tcv.autotune.install import TunedImage


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
    autotune: TunedImage | None = None  # its autotuning results (tcv.autotune.install)


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
    from tcv.autotune.install import resolve_autotune

    require_cache_tree(unpacked)  # before the manifest, as resolve_entries orders them
    manifest = load_manifest(unpacked.root)  # read once for the kernels and the results
    entries, skipped = resolve_entries(unpacked, manifest)
    tuned, skipped = resolve_autotune(unpacked, labels, skipped, manifest)
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
