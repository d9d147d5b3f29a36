"""Create: scan a Triton cache, build its OCI image with buildah, optionally push.

The flow of ``tcv -c`` and ``tcv-build`` (SPEC §2, §3, §6):

1. scan the cache with the cache model (only kernel entries; launchers,
   leftovers and locks are skipped);
2. write the manifest and the reproducible layer tar into a fresh staging
   directory under ``/tmp/.tcv/`` (SPEC §8);
3. ``buildah from scratch`` → ``add`` the tar → ``config --label`` the SPEC §3
   labels → ``commit`` (``--format oci`` or ``docker``), see
   :mod:`tcv.buildah` for why the layer digest is reproducible;
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
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tcv import buildah
from tcv.cache import ScanResult, scan_layout
from tcv.errors import CreateError, ImageNotFoundError, ToolError, UsageError
from tcv.imageref import CONTAINERS_STORAGE, DOCKER, parse_image_ref
from tcv.kernel import FileInfo, KernelEntry
from tcv.layer import plan_layer, source_date_epoch, write_layer_file
from tcv.manifest import (
    CACHE_DIR,
    LABEL_LAYOUT,
    LABEL_MOUNT_PATH,
    MANIFEST_PATH,
    build_labels,
    build_manifest,
    manifest_json,
)
from tcv.metadata import group_filenames
from tcv.registry import (
    AUTH,
    PLAIN_HTTP,
    TLS,
    UNREACHABLE,
    RegistryOptions,
    access_failure,
    access_hint,
    registry_host,
)
from tcv.staging import staging_dir, staging_root

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

    def to_json(self) -> dict[str, Any]:
        """``tcv -c --json``: image, digest, entries, bytes, pushed (+ id)."""
        return {
            "image": self.image,
            "digest": self.digest,
            "id": self.image_id,
            "entries": self.entries,
            "bytes": self.bytes,
            "pushed": self.pushed,
        }


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
        from tcv.names import resolve_image

        # A short name goes where registries.conf sends it, or is refused naming why.
        push_to = resolve_image(name, for_push=True).skopeo()
    return CreateTarget(local=name, title=image_title(name), push_to=push_to)


def scan_for_create(
    cache_dir: Path, *, include_launchers: bool = False, source: str | None = None
) -> ScanResult:
    """Scan (the layout ``source`` names, else the one detected) and refuse
    what cannot make a faithful image: no kernels at all, or kernels that
    could not be read (an image silently missing them would recompile on every
    host)."""
    scan = scan_layout(cache_dir, source=source, include_launchers=include_launchers)
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


def create_image(
    cache_dir: Path | str,
    image: str,
    *,
    image_format: str = "oci",
    push: bool = False,
    registry: RegistryOptions | None = None,
    include_launchers: bool = False,
    timestamp: int | None = None,
    source: str | None = None,
    mount_path: str | None = None,
) -> CreateResult:
    """Build (and optionally push) the cache image of ``cache_dir`` as ``image``.

    ``source``: the layout to pack (``triton``, ``inductor``, ``vllm``; None
    detects it). ``mount_path``: write the group files for a read-only mount of
    the image's cache tree at that path, as they are (SPEC §4 relocation done
    at build time)."""
    if image_format not in buildah.FORMATS:
        raise UsageError(f"unknown image format {image_format!r}", "use --format oci or docker")
    if mount_path is not None:
        mount_path = check_mount_path(mount_path)
    target = resolve_target(image, push=push)
    registry = registry or RegistryOptions()
    mtime = source_date_epoch() if timestamp is None else timestamp
    root = Path(cache_dir)
    buildah.require_buildah()
    scan = scan_for_create(root, include_launchers=include_launchers, source=source)
    entries, contents = scan.entries, {}
    if mount_path is not None:
        entries, contents = groups_for_mount(scan, mount_path)
    # source_root records where the cache came from (SPEC §3); it lives in the
    # manifest, never as a path inside the tar.
    manifest = manifest_json(build_manifest(entries, str(root.resolve())))
    labels = _labels(scan, entries, target.title, mount_path)

    with _staging() as stage:
        members = plan_layer(
            root,
            entries,
            manifest,
            cache_dir=CACHE_DIR,
            manifest_path=MANIFEST_PATH,
            sources=scan.sources,
            contents=contents,
        )
        layer = stage / "layer.tar"
        write_layer_file(members, layer, mtime=mtime)
        image_id = _build(layer, labels, target.local, image_format, mtime, stage)
        try:
            digest = buildah.image_digest(target.local)
        except ToolError as err:
            raise _create_error(err) from None
        pushed = False
        if target.push_to:
            try:
                digest = buildah.push(
                    target.local, target.push_to, registry, digestfile=stage / "digest"
                )
            except ToolError as err:
                raise _push_error(err, target.local) from None
            pushed = True
    return CreateResult(
        image=target.local,
        digest=digest,
        image_id=image_id,
        entries=len(entries),
        bytes=sum(e.bytes for e in entries),
        pushed=pushed,
        skipped=[{"path": s.path, "reason": s.reason} for s in scan.skipped],
        layout=scan.layout.describe(str(root)) if scan.layout and scan.layout.nested else None,
        mount_path=mount_path,
    )


def _labels(
    scan: ScanResult, entries: list[KernelEntry], title: str, mount_path: str | None
) -> dict[str, str]:
    labels = build_labels(entries, title)
    if scan.layout is not None and scan.layout.nested:
        labels[LABEL_LAYOUT] = scan.layout.label()
    if mount_path is not None:
        labels[LABEL_MOUNT_PATH] = mount_path
    return labels


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
    scan: ScanResult, mount_path: str
) -> tuple[list[KernelEntry], dict[str, bytes]]:
    """Each entry's group files rewritten to name ``mount_path/<key>/…``: the
    entries with those files' new sizes and digests (the manifest describes the
    layer), and the new bytes by ``<key>/<file>``."""
    from tcv.relocate import relocate_group

    entries: list[KernelEntry] = []
    contents: dict[str, bytes] = {}
    for entry in scan.entries:
        files = dict(entry.files)
        for name in group_filenames(files):
            path = scan.source_of(entry.key) / entry.key / name
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
    cache_dir: Path | str,
    image: str,
    out: Path | str,
    *,
    include_launchers: bool = False,
    timestamp: int | None = None,
) -> ContextResult:
    """``tcv-build --context-only``: the same layer and labels as
    :func:`create_image`, written as a Containerfile build context."""
    from tcv.containerfile import write_context

    target = resolve_target(image, push=False)
    mtime = source_date_epoch() if timestamp is None else timestamp
    root = Path(cache_dir)
    scan = scan_for_create(root, include_launchers=include_launchers)
    manifest = manifest_json(build_manifest(scan.entries, str(root.resolve())))
    labels = _labels(scan, scan.entries, target.title, None)
    members = plan_layer(
        root,
        scan.entries,
        manifest,
        cache_dir=CACHE_DIR,
        manifest_path=MANIFEST_PATH,
        sources=scan.sources,
    )
    path = write_context(Path(out), members, labels, image=target.local, mtime=mtime)
    return ContextResult(path, len(scan.entries), sum(e.bytes for e in scan.entries))
