"""Building a cache image from packed kernels with buildah, and pushing it.

Shared by the three shapes ``tcv -c`` makes: one image (:mod:`tcv.create`),
a fleet index of images (:mod:`tcv.image.fleet`) and an OCI artifact
(:mod:`tcv.image.artifact`). ``buildah from scratch`` → ``add`` the layer tar
→ ``config --label`` → ``commit``; the working container is removed whatever
happens (failure, Ctrl-C), and so is the staging directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tcv.cache.kernel import KernelEntry
from tcv.cache.layout import Layout
from tcv.cache.merge import MergedCache
from tcv.errors import CreateError, ImageNotFoundError, ToolError
from tcv.image.layer import Member, plan_layer
from tcv.image.manifest import (
    CACHE_DIR,
    LABEL_LAYOUT,
    LABEL_MOUNT_PATH,
    MANIFEST_PATH,
    build_labels,
    build_manifest,
    manifest_json,
)
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

if TYPE_CHECKING:
    from tcv.autotune.pack import PackedAutotune


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

    def placement_labels(self) -> dict[str, str]:
        """Where the kernels go, the same for every part of the cache: the nested
        layout and the mount path, when there are."""
        labels: dict[str, str] = {}
        if self.layout is not None and self.layout.nested:
            labels[LABEL_LAYOUT] = self.layout.label()
        if self.mount_path is not None:
            labels[LABEL_MOUNT_PATH] = self.mount_path
        return labels

    def labels(self, entries: Sequence[KernelEntry], title: str) -> dict[str, str]:
        """The docs/spec.md §3 labels of ``entries``, plus the layout and the mount path."""
        labels = build_labels(list(entries), title) | self.placement_labels()
        if self.tuned is not None:
            labels.update(self.tuned.labels(labels))
        return labels

    def members(self, entries: Sequence[KernelEntry] | None = None) -> list[Member]:
        """The layer of ``entries`` (default: all) with their own manifest."""
        chosen = self.entries if entries is None else list(entries)
        # source_root records where the cache came from (docs/spec.md §3); it lives in
        # the manifest, never as a path inside the tar.
        doc = build_manifest(chosen, self.source)
        roots = self.merged.roots
        contents = self.contents
        if self.tuned is not None:
            doc.update(self.tuned.manifest())
            chosen = chosen + self.tuned.as_entries()
            roots = {**roots, **self.tuned.roots}
            contents = {**contents, **self.tuned.contents}
        return plan_layer(
            Path("."),
            chosen,
            manifest_json(doc),
            cache_dir=CACHE_DIR,
            manifest_path=MANIFEST_PATH,
            roots=roots,
            contents=contents,
        )


def create_error(err: ToolError) -> CreateError:
    return CreateError(err.message, err.hint)


def _last_error(err: ToolError) -> str:
    """The tool's final error line without log decoration (buildah logs each
    retry as a warning, then prints ``Error: ...``)."""
    lines = [ln.strip() for ln in err.stderr_tail.split(" | ") if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    line = (errors or lines or [err.message])[-1]
    return line.removeprefix("Error:").strip()


def push_error(err: ToolError, image: str) -> Exception:
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


def push_image(target: CreateTarget, registry: RegistryOptions, stage: Path) -> str:
    """``buildah push`` of the built image; its registry digest."""
    assert target.push_to is not None
    try:
        return buildah.push(target.local, target.push_to, registry, digestfile=stage / "digest")
    except ToolError as err:
        raise push_error(err, target.local) from None


@contextlib.contextmanager
def staging() -> Iterator[Path]:
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


def build_image(
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
            raise create_error(err) from None
        committed = True
        return image_id
    finally:
        if not committed:
            # Also on Ctrl-C: `buildah rm` unmounts and deletes the container
            # (it may not exist yet if `from` was interrupted; that is fine).
            buildah.remove_container(name)
