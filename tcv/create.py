"""Create: scan a Triton cache, build its OCI image with buildah, optionally push.

The flow of ``tcv -c`` and ``tcv-build`` (docs/spec.md §2, §3, §6):

1. scan the cache with the cache model (only kernel entries; launchers,
   leftovers and locks are skipped);
2. write the manifest and the reproducible layer tar into a fresh staging
   directory under ``/tmp/.tcv/`` (docs/spec.md §8);
3. ``buildah from scratch`` → ``add`` the tar → ``config --label`` the docs/spec.md §3
   labels → ``commit`` (``--format oci`` or ``docker``), see
   :mod:`tcv.tools.buildah` for why the layer digest is reproducible;
4. with ``push``, ``buildah push`` to the registry.

The working container is removed whatever happens (failure, Ctrl-C), and the
staging directory with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tcv.autotune.pack import AutotuneRequest, check_request, pack_autotune
from tcv.cache.kernel import FileInfo, KernelEntry
from tcv.cache.merge import merge_scans, source_root
from tcv.cache.metadata import group_filenames
from tcv.cache.scan import ScanResult, scan_layout
from tcv.errors import CreateError, ToolError, UsageError
from tcv.image.build import (
    CreateResult,
    CreateTarget,
    PackedCaches,
    build_image,
    create_error,
    image_title,
    push_image,
    staging,
)
from tcv.image.layer import source_date_epoch, write_layer_file
from tcv.image.ref import CONTAINERS_STORAGE, DOCKER, parse_image_ref
from tcv.tools import buildah
from tcv.tools.registry import (
    RegistryOptions,
)

log = logging.getLogger(__name__)

# Skip reasons of the cache scan that are I/O failures, not "not a kernel".
_IO_SKIP = re.compile(r"\bcannot (read|list|stat)\b")


def resolve_target(image: str, *, push: bool) -> CreateTarget:
    """Check IMAGE for create (UsageError, exit 3, when it cannot be one)."""
    ref = parse_image_ref(image)
    if ref.transport not in (DOCKER, CONTAINERS_STORAGE):
        raise UsageError(
            f"cannot create {image!r}: create writes to local storage and registries",
            f"create a registry name, then 'skopeo copy containers-storage:NAME {image}'",
        )
    name = ref.name
    if ref.transport == CONTAINERS_STORAGE:
        if push:
            raise UsageError(
                f"cannot push {image!r}: containers-storage is local",
                "give a registry reference (REGISTRY/REPOSITORY[:TAG]) with --push",
            )
        return CreateTarget(local=name, title=image_title(name))
    if "@" in name:
        raise UsageError(
            f"cannot create {image!r}: a digest names an existing image",
            "give a tag instead (REPOSITORY:TAG); the new digest is printed when done",
        )
    push_to = None
    if push:
        from tcv.image.names import resolve_image

        # A short name goes where registries.conf sends it, or is refused naming why.
        push_to = resolve_image(name, for_push=True).skopeo()
    return CreateTarget(local=name, title=image_title(name), push_to=push_to)


def scan_for_create(
    cache_dir: Path,
    *,
    include_launchers: bool = False,
    source: str | None = None,
    with_autotune: bool = False,
) -> ScanResult:
    """Scan (the layout ``source`` names, else the one detected) and refuse
    what cannot make a faithful image: no kernels at all, or kernels that
    could not be read (an image silently missing them would recompile on every
    host)."""
    scan = scan_layout(
        cache_dir, source=source, include_launchers=include_launchers, with_autotune=with_autotune
    )
    if scan.layout is not None and scan.layout.nested:
        log.info("%s", scan.layout.describe(str(cache_dir)))
    unreadable = [s for s in scan.skipped if _IO_SKIP.search(s.reason)]
    if unreadable:
        first = unreadable[0]
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        raise CreateError(
            f"cannot pack {cache_dir}/{first.path}: {first.reason}{more}",
            "make the cache readable by this user (chmod -R u+rX), or run as its owner",
        )
    if not scan.entries:
        skip = scan.skipped[0] if scan.skipped else None
        more = f" (and {len(scan.skipped) - 1} more)" if len(scan.skipped) > 1 else ""
        why = f"; skipped {skip.path}: {skip.reason}{more}" if skip else ""
        raise CreateError(
            f"no Triton kernels in {cache_dir}{why}",
            "point -d at a Triton cache directory (Triton's default is ~/.triton/cache)",
        )
    for s in scan.skipped:
        log.info("skipped %s: %s", s.path, s.reason)
    log.info("packing %d kernels from %s", len(scan.entries), cache_dir)
    if scan.autotune:
        log.info("packing %d autotuning results from %s", len(scan.autotune), cache_dir)
    return scan


CacheDirs = Path | str | Sequence[Path | str]


def cache_dirs(cache_dir: CacheDirs) -> list[Path]:
    """``-d`` as a list of directories (it may be given once per build host)."""
    if isinstance(cache_dir, (str, Path)):
        return [Path(cache_dir)]
    dirs = [Path(d) for d in cache_dir]
    if not dirs:
        raise UsageError("create needs the Triton cache to pack", "pass -d DIR")
    return dirs


def pack_caches(
    dirs: Sequence[Path],
    *,
    include_launchers: bool = False,
    source: str | None = None,
    mount_path: str | None = None,
    autotune: AutotuneRequest | None = None,
) -> PackedCaches:
    """Scan every cache (each refused alone when it is unusable) and merge them;
    with ``mount_path``, the group files rewritten for that mount point; with
    ``autotune``, their autotuning results too (:mod:`tcv.autotune.pack`)."""
    scans = [
        (
            d,
            scan_for_create(
                d,
                include_launchers=include_launchers,
                source=source,
                with_autotune=autotune is not None,
            ),
        )
        for d in dirs
    ]
    merged = merge_scans(scans)
    tuned = pack_autotune(scans, autotune) if autotune is not None else None
    contents: dict[str, bytes] = {}
    if mount_path is not None:
        entries, contents = groups_for_mount(merged.entries, merged.roots, mount_path)
        merged = replace(merged, entries=entries)
    first_dir, first = scans[0]
    nested = first.layout if first.layout is not None and first.layout.nested else None
    return PackedCaches(
        merged,
        source_root(dirs),
        contents,
        nested,
        nested.describe(str(first_dir)) if nested else None,
        mount_path,
        tuned,
    )


def create_image(
    cache_dir: CacheDirs,
    image: str,
    *,
    image_format: str = "oci",
    push: bool = False,
    registry: RegistryOptions | None = None,
    include_launchers: bool = False,
    timestamp: int | None = None,
    source: str | None = None,
    mount_path: str | None = None,
    split_by_target: bool = False,
    autotune: AutotuneRequest | None = None,
) -> CreateResult:
    """Build (and optionally push) the cache image of ``cache_dir`` (one
    directory, or several merged) as ``image``. ``split_by_target`` makes a
    fleet image (:mod:`tcv.image.fleet`); ``image_format`` ``artifact`` an OCI
    artifact (:mod:`tcv.image.artifact`). ``source``: the layout to pack (``triton``,
    ``inductor``, ``vllm``; None detects it). ``mount_path``: write the group
    files for a read-only mount of the image's cache tree at that path, as they
    are (docs/spec.md §4 relocation done at build time). ``autotune``
    (``--with-autotune``): pack the autotuning results too, for the GPU model
    it names or detects (:mod:`tcv.autotune.pack`)."""
    formats = (*buildah.FORMATS, "artifact")
    if image_format not in formats:
        raise UsageError(
            f"unknown image format {image_format!r}", "use --format oci, docker or artifact"
        )
    if split_by_target and image_format == "artifact":
        raise UsageError(
            "--split-by-target makes an image index of images, not of artifacts",
            "drop --format artifact, or --split-by-target",
        )
    if split_by_target and image_format != "oci":
        raise UsageError(
            "--split-by-target makes an OCI image index",
            "drop --format docker: a Docker manifest list cannot carry the target annotations",
        )
    if autotune is not None:
        check_request(autotune, image_format, split_by_target)
    if mount_path is not None:
        mount_path = check_mount_path(mount_path)
    registry = registry or RegistryOptions()
    mtime = source_date_epoch() if timestamp is None else timestamp
    dirs = cache_dirs(cache_dir)
    if image_format == "artifact":
        from tcv.image.artifact import artifact_destination, create_artifact

        artifact_destination(image, push=push)  # a bad IMAGE fails before the scan
        packed = pack_caches(
            dirs, include_launchers=include_launchers, source=source, mount_path=mount_path
        )
        return create_artifact(packed, image, push, registry, mtime=mtime)
    target = resolve_target(image, push=push)
    buildah.require_buildah()
    packed = pack_caches(
        dirs,
        include_launchers=include_launchers,
        source=source,
        mount_path=mount_path,
        autotune=autotune,
    )
    if split_by_target:
        from tcv.image.fleet import create_fleet

        return create_fleet(packed, target, image_format, registry, mtime=mtime)
    entries = packed.entries
    labels = packed.labels(entries, target.title)

    with staging() as stage:
        layer = stage / "layer.tar"
        write_layer_file(packed.members(), layer, mtime=mtime)
        image_id = build_image(layer, labels, target.local, image_format, mtime, stage)
        try:
            digest = buildah.image_digest(target.local)
        except ToolError as err:
            raise create_error(err) from None
        pushed = False
        if target.push_to:
            digest = push_image(target, registry, stage)
            pushed = True
    return CreateResult(
        image=target.local,
        digest=digest,
        image_id=image_id,
        entries=len(entries),
        bytes=sum(e.bytes for e in entries),
        pushed=pushed,
        skipped=[{"path": s.path, "reason": s.reason} for s in packed.merged.skipped],
        layout=packed.layout_text,
        mount_path=mount_path,
        autotune=packed.tuned.summary() if packed.tuned is not None else None,
    )


def check_mount_path(path: str) -> str:
    """``--mount-path``: an absolute, normalised directory path (UsageError, exit 3)."""
    norm = posixpath.normpath(path)
    if not path.startswith("/") or norm == "/" or ".." in norm.split("/"):
        raise UsageError(
            f"--mount-path {path!r} is not an absolute directory path",
            "give where the image's io.triton.cache will be mounted, e.g. /triton-cache",
        )
    return norm


def groups_for_mount(
    entries_in: Sequence[KernelEntry], roots: dict[str, Path], mount_path: str
) -> tuple[list[KernelEntry], dict[str, bytes]]:
    """Each entry's group files rewritten to name ``mount_path/<key>/…``: the
    entries with those files' new sizes and digests (the manifest describes the
    layer), and the new bytes by ``<key>/<file>``."""
    from tcv.cache.relocate import relocate_group

    entries: list[KernelEntry] = []
    contents: dict[str, bytes] = {}
    for entry in entries_in:
        files = dict(entry.files)
        for name in group_filenames(files):
            path = roots[entry.key] / entry.key / name
            try:
                data = json.loads(path.read_bytes())
            except OSError as err:
                raise CreateError(f"cannot read {path}: {err.strerror or err}") from None
            except ValueError:
                continue  # the scan kept it; Triton treats it as a miss anyway
            moved = relocate_group(data, posixpath.join(mount_path, entry.key))
            if moved == data:
                continue
            text = json.dumps(moved).encode()  # json.dumps defaults, as Triton's put_group
            contents[f"{entry.key}/{name}"] = text
            files[name] = FileInfo(size=len(text), sha256=hashlib.sha256(text).hexdigest())
        entries.append(replace(entry, files=files))
    return entries, contents


@dataclass(frozen=True)
class ContextResult:
    out: Path
    entries: int
    bytes: int


def write_build_context(
    cache_dir: CacheDirs,
    image: str,
    out: Path | str,
    *,
    include_launchers: bool = False,
    timestamp: int | None = None,
    autotune: AutotuneRequest | None = None,
    source: str | None = None,
    mount_path: str | None = None,
) -> ContextResult:
    """``tcv-build --context-only``: the same layer and labels as
    :func:`create_image`, written as a Containerfile build context."""
    from tcv.image.containerfile import write_context

    target = resolve_target(image, push=False)
    if autotune is not None:
        check_request(autotune, "oci", False)
    if mount_path is not None:
        mount_path = check_mount_path(mount_path)
    mtime = source_date_epoch() if timestamp is None else timestamp
    packed = pack_caches(
        cache_dirs(cache_dir),
        include_launchers=include_launchers,
        autotune=autotune,
        source=source,
        mount_path=mount_path,
    )
    labels = packed.labels(packed.entries, target.title)
    path = write_context(Path(out), packed.members(), labels, image=target.local, mtime=mtime)
    return ContextResult(path, len(packed.entries), sum(e.bytes for e in packed.entries))
