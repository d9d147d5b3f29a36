"""Create: scan a Triton cache, build its OCI image with buildah, optionally push.

The flow of ``tcv -c`` and ``tcv-build`` (SPEC §2, §3, §6):

1. scan the cache with the cache model (only kernel entries; launchers,
   leftovers and locks are skipped);
2. write the manifest and the reproducible layer tar into a fresh staging
   directory under ``/tmp/.tcv/`` (SPEC §8);
3. ``buildah from scratch`` → ``add`` the tar → ``config --label`` the SPEC §3
   labels → ``commit`` (``--format oci`` or ``docker``), see
   :mod:`tcv.tools.buildah` for why the layer digest is reproducible;
4. with ``push``, ``buildah push`` to the registry.

The working container is removed whatever happens (failure, Ctrl-C), and the
staging directory with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tcv.autotune_pack import AutotuneRequest, PackedAutotune, check_request, pack_autotune
from tcv.cache.kernel import FileInfo, KernelEntry
from tcv.cache.layout import Layout
from tcv.cache.merge import MergedCache, merge_scans, source_root
from tcv.cache.metadata import group_filenames
from tcv.cache.scan import ScanResult, scan_layout
from tcv.errors import CreateError, ImageNotFoundError, ToolError, UsageError
from tcv.image.layer import Member, plan_layer, source_date_epoch, write_layer_file
from tcv.image.manifest import (
    CACHE_DIR,
    LABEL_LAYOUT,
    LABEL_MOUNT_PATH,
    MANIFEST_PATH,
    build_labels,
    build_manifest,
    manifest_json,
)
from tcv.image.ref import CONTAINERS_STORAGE, DOCKER, parse_image_ref
from tcv.staging import staging_dir, staging_root
from tcv.tools import buildah
from tcv.tools.registry import (
    AUTH,
    PLAIN_HTTP,
    TLS,
    UNREACHABLE,
    RegistryOptions,
    access_failure,
    access_hint,
    registry_host,
)

log = logging.getLogger(__name__)

# Skip reasons of the cache scan that are I/O failures, not "not a kernel".
_IO_SKIP = re.compile(r"\bcannot (read|list|stat)\b")


@dataclass(frozen=True)
class CreateTarget:
    """Where the image goes: ``local`` is the name in containers-storage,
    ``push_to`` the registry reference when pushing (else None)."""

    local: str
    title: str
    push_to: str | None = None


@dataclass(frozen=True)
class CreateResult:
    image: str
    digest: str
    image_id: str
    entries: int
    bytes: int
    pushed: bool
    skipped: list[dict[str, str]] = field(default_factory=list)
    layout: str | None = None  # where the kernels were found, for a nested layout
    mount_path: str | None = None
    # --with-autotune: {"device", "entries"} of the results packed, else None.
    autotune: dict[str, Any] | None = None
    # A fleet image (--split-by-target): one {"target", "image", "entries"} per entry.
    targets: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "image"  # "image", "index" or "artifact"

    def to_json(self) -> dict[str, Any]:
        """``tcv -c --json``: image, digest, entries, bytes, pushed (+ id; the
        targets of a fleet image)."""
        doc: dict[str, Any] = {
            "image": self.image,
            "digest": self.digest,
            "id": self.image_id,
            "entries": self.entries,
            "bytes": self.bytes,
            "pushed": self.pushed,
        }
        if self.kind != "image":
            doc["kind"] = self.kind
        if self.targets:
            doc["targets"] = list(self.targets)
        if self.autotune is not None:
            doc["autotune"] = dict(self.autotune)
        return doc


def image_title(reference: str) -> str:
    """``org.opencontainers.image.title``: the repository's last component,
    without tag or digest (``quay.io/x/triton-kernel:1`` → ``triton-kernel``),
    as the Go tools set it."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


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


def _create_error(err: ToolError) -> CreateError:
    return CreateError(err.message, err.hint)


def _last_error(err: ToolError) -> str:
    """The tool's final error line without log decoration (buildah logs each
    retry as a warning, then prints ``Error: ...``)."""
    lines = [ln.strip() for ln in err.stderr_tail.split(" | ") if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    line = (errors or lines or [err.message])[-1]
    return line.removeprefix("Error:").strip()


def _push_error(err: ToolError, image: str) -> Exception:
    if err.returncode is None:  # buildah missing or timed out
        return CreateError(err.message, err.hint)
    detail = _last_error(err)
    host = registry_host(image)
    kept = f"the image stays in local storage (push it later with: buildah push {image})"
    failure = access_failure(detail)
    hint = f"{access_hint(failure, host)}; {kept}"
    if failure.kind == UNREACHABLE:
        return ImageNotFoundError(
            f"built {image} but cannot reach registry {host}: {failure.cause}", hint
        )
    if failure.kind == TLS:
        return ImageNotFoundError(
            f"built {image} but cannot verify the TLS certificate of registry {host}: "
            f"{failure.cause}",
            hint,
        )
    if failure.kind == PLAIN_HTTP:
        return ImageNotFoundError(f"built {image} but cannot push it: {failure.cause}", hint)
    if failure.kind == AUTH:
        return CreateError(f"built {image} but registry {host} refused the push: {detail}", hint)
    return CreateError(f"built {image} but cannot push it: {detail}", kept)


CacheDirs = Path | str | Sequence[Path | str]


def cache_dirs(cache_dir: CacheDirs) -> list[Path]:
    """``-d`` as a list of directories (it may be given once per build host)."""
    if isinstance(cache_dir, (str, Path)):
        return [Path(cache_dir)]
    dirs = [Path(d) for d in cache_dir]
    if not dirs:
        raise UsageError("create needs the Triton cache to pack", "pass -d DIR")
    return dirs


@dataclass(frozen=True)
class PackedCaches:
    """The kernels of every ``-d`` cache, merged, and where they came from."""

    merged: MergedCache
    source: str  # the manifest's source_root
    contents: dict[str, bytes] = field(default_factory=dict)  # rewritten group files
    layout: Layout | None = None  # a nested layout found in the (first) cache
    layout_text: str | None = None
    mount_path: str | None = None
    tuned: PackedAutotune | None = None  # --with-autotune, when the caches hold results

    @property
    def entries(self) -> list[KernelEntry]:
        return self.merged.entries

    def labels(self, entries: Sequence[KernelEntry], title: str) -> dict[str, str]:
        """The SPEC §3 labels of ``entries``, plus the layout and the mount path."""
        labels = build_labels(list(entries), title)
        if self.layout is not None and self.layout.nested:
            labels[LABEL_LAYOUT] = self.layout.label()
        if self.mount_path is not None:
            labels[LABEL_MOUNT_PATH] = self.mount_path
        if self.tuned is not None:
            labels.update(self.tuned.labels(labels))
        return labels

    def members(self, entries: Sequence[KernelEntry] | None = None) -> list[Member]:
        """The layer of ``entries`` (default: all) with their own manifest."""
        chosen = self.entries if entries is None else list(entries)
        # source_root records where the cache came from (SPEC §3); it lives in
        # the manifest, never as a path inside the tar.
        doc = build_manifest(chosen, self.source)
        roots = self.merged.roots
        if self.tuned is not None:
            doc.update(self.tuned.manifest())
            chosen = chosen + self.tuned.as_entries()
            roots = {**roots, **self.tuned.roots}
        return plan_layer(
            Path("."),
            chosen,
            manifest_json(doc),
            cache_dir=CACHE_DIR,
            manifest_path=MANIFEST_PATH,
            roots=roots,
            contents=self.contents,
        )


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
    ``autotune``, their autotuning results too (:mod:`tcv.autotune_pack`)."""
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
    are (SPEC §4 relocation done at build time). ``autotune``
    (``--with-autotune``): pack the autotuning results too, for the GPU model
    it names or detects (:mod:`tcv.autotune_pack`)."""
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
        packed = pack_caches(dirs, include_launchers=include_launchers)
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

    with _staging() as stage:
        layer = stage / "layer.tar"
        write_layer_file(packed.members(), layer, mtime=mtime)
        image_id = _build(layer, labels, target.local, image_format, mtime, stage)
        try:
            digest = buildah.image_digest(target.local)
        except ToolError as err:
            raise _create_error(err) from None
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


def push_image(target: CreateTarget, registry: RegistryOptions, stage: Path) -> str:
    """``buildah push`` of the built image; its registry digest."""
    assert target.push_to is not None
    try:
        return buildah.push(target.local, target.push_to, registry, digestfile=stage / "digest")
    except ToolError as err:
        raise _push_error(err, target.local) from None


@contextlib.contextmanager
def _staging() -> Iterator[Path]:
    """:func:`staging_dir`, with a failure to make it reported as one line."""
    entered = False
    try:
        with staging_dir("create-") as stage:
            entered = True
            yield stage
    except OSError as err:
        if entered:
            raise
        raise CreateError(
            f"cannot make a staging directory under {staging_root()}: {err.strerror or err}",
            "make it writable for this user, or point $TCV_STAGING_ROOT at a directory that is",
        ) from None


def _build(
    layer: Path, labels: dict[str, str], image: str, image_format: str, mtime: int, stage: Path
) -> str:
    """from scratch → add → config → commit; the working container never outlives this."""
    name = buildah.container_name()
    committed = False
    try:
        try:
            buildah.from_scratch(name)
            buildah.add(name, layer, "/")
            buildah.config_labels(name, labels)
            image_id = buildah.commit(
                name,
                image,
                image_format=image_format,
                timestamp=mtime,
                iidfile=stage / "iid",
                remove=True,
            )
        except ToolError as err:
            raise _create_error(err) from None
        committed = True
        return image_id
    finally:
        if not committed:
            # Also on Ctrl-C: `buildah rm` unmounts and deletes the container
            # (it may not exist yet if `from` was interrupted; that is fine).
            buildah.remove_container(name)


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
) -> ContextResult:
    """``tcv-build --context-only``: the same layer and labels as
    :func:`create_image`, written as a Containerfile build context."""
    from tcv.image.containerfile import write_context

    target = resolve_target(image, push=False)
    if autotune is not None:
        check_request(autotune, "oci", False)
    mtime = source_date_epoch() if timestamp is None else timestamp
    packed = pack_caches(
        cache_dirs(cache_dir), include_launchers=include_launchers, autotune=autotune
    )
    labels = packed.labels(packed.entries, target.title)
    path = write_context(Path(out), packed.members(), labels, image=target.local, mtime=mtime)
    return ContextResult(path, len(packed.entries), sum(e.bytes for e in packed.entries))
