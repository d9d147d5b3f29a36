"""buildah, as TCV drives it: argv builders (pure) and the calls (through
:func:`tcv.tools.runner.run`).

Reproducible layers (docs/spec.md §3). The layer tar TCV writes (:mod:`tcv.image.layer`)
is unpacked into a ``scratch`` working container by ``buildah add``; buildah
then re-tars the container's files at commit time, in sorted order, with the
owners and modes of the unpacked tar. What would still vary between runs is
time: the mtimes buildah gives the files it writes, and the config's
``created`` and history dates. ``buildah commit --timestamp N`` (verified
with buildah 1.28) sets every one of them to N, ``--omit-history`` leaves out the history
(it names buildah's own content digest of the added tar), and
``--identity-label=false`` leaves out the ``io.buildah.version`` label, which
changes with the buildah release. With those, two builds of the same cache
give byte-identical layers: the same diff ID, and after push the same gzip
blob digest as long as the same buildah release compresses it. With
``--format oci`` even the image ID is the same; a Docker-format config also
records the working container's ID, which buildah has no switch to leave
out (same layer, different config). The integration tests build twice and
compare.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from tcv.errors import CreateError, ToolError
from tcv.tools.registry import RegistryOptions
from tcv.tools.runner import Result, available, run

BUILDAH = "buildah"
FORMATS = ("oci", "docker")
CONTAINER_PREFIX = "tcv-create-"


def container_name() -> str:
    """A fresh working-container name, chosen before ``buildah from`` so the
    container can be removed by name even when an interrupt lands before buildah
    has printed it."""
    return CONTAINER_PREFIX + secrets.token_hex(6)


def require_buildah() -> None:
    """Fail before any work when buildah is not installed."""
    if not available(BUILDAH):
        raise CreateError(
            "cannot build the image: buildah is not installed",
            "install it (apt-get install buildah / dnf install buildah) and try again",
        )


# ---------------------------------------------------------------- argv (pure)


def from_scratch_argv(name: str) -> list[str]:
    return [BUILDAH, "from", "--quiet", "--name", name, "scratch"]


def add_argv(container: str, source: Path | str, dest: str = "/") -> list[str]:
    # `buildah add` unpacks a local tar archive at dest (`copy` would not).
    return [BUILDAH, "add", "--quiet", container, str(source), dest]


def config_argv(container: str, labels: Mapping[str, str]) -> list[str]:
    argv = [BUILDAH, "config"]
    for key in sorted(labels):
        # `--label` is a string array (no comma splitting): JSON values pass intact.
        argv.append(f"--label={key}={labels[key]}")
    argv.append(container)
    return argv


def commit_argv(
    container: str,
    image: str,
    *,
    image_format: str = "oci",
    timestamp: int = 0,
    iidfile: Path | str | None = None,
    remove: bool = True,
) -> list[str]:
    if image_format not in FORMATS:
        raise ValueError(f"unknown image format {image_format!r}")
    argv = [
        BUILDAH,
        "commit",
        "--quiet",
        f"--format={image_format}",
        f"--timestamp={timestamp}",
        "--omit-history",
        "--identity-label=false",
    ]
    if iidfile is not None:
        argv.append(f"--iidfile={iidfile}")
    if remove:
        argv.append("--rm")
    argv += [container, image]
    return argv


def push_argv(
    image: str,
    destination: str,
    options: RegistryOptions,
    *,
    digestfile: Path | str | None = None,
) -> list[str]:
    argv = [BUILDAH, "push", "--quiet", *options.args(), *options.buildah_retry_args()]
    if digestfile is not None:
        argv.append(f"--digestfile={digestfile}")
    argv += [image, destination]
    return argv


def rm_argv(container: str) -> list[str]:
    return [BUILDAH, "rm", container]


def rmi_argv(image: str) -> list[str]:
    return [BUILDAH, "rmi", image]


def image_digest_argv(image: str) -> list[str]:
    # The manifest digest of the image in local storage (`buildah images --digests`).
    return [BUILDAH, "inspect", "--type=image", "--format={{.FromImageDigest}}", image]


def manifest_create_argv(name: str) -> list[str]:
    return [BUILDAH, "manifest", "create", name]


def manifest_add_argv(name: str, image: str) -> list[str]:
    return [BUILDAH, "manifest", "add", name, image]


def _csv_field(text: str) -> str:
    """One value of a string-slice flag: pflag reads ``--annotation`` as CSV,
    so a value with commas or quotes (JSON) must be one quoted CSV field."""
    if not any(c in text for c in ',"\n\r'):
        return text
    return '"' + text.replace('"', '""') + '"'


def manifest_annotate_argv(name: str, digest: str, annotations: Mapping[str, str]) -> list[str]:
    argv = [BUILDAH, "manifest", "annotate"]
    for key in sorted(annotations):
        argv.append("--annotation=" + _csv_field(f"{key}={annotations[key]}"))
    argv += [name, digest]
    return argv


def manifest_push_argv(
    name: str, destination: str, options: RegistryOptions, *, digestfile: Path | str
) -> list[str]:
    # --format oci: an OCI image index, whose entries may carry annotations
    # (a Docker manifest list has no annotations field).
    return [
        BUILDAH,
        "manifest",
        "push",
        "--all",
        "--quiet",
        "--format=oci",
        *options.args(),
        f"--digestfile={digestfile}",
        name,
        destination,
    ]


def manifest_rm_argv(name: str) -> list[str]:
    return [BUILDAH, "manifest", "rm", name]


# ---------------------------------------------------------------- calls


def from_scratch(name: str) -> str:
    """Create an empty working container called ``name``; return its name."""
    out = run(from_scratch_argv(name), what="create a buildah working container").stdout
    return out.strip() or name


def add(container: str, source: Path | str, dest: str = "/") -> None:
    run(add_argv(container, source, dest), what="add the cache layer to the working container")


def config_labels(container: str, labels: Mapping[str, str]) -> None:
    run(config_argv(container, labels), what="set the image labels")


def commit(
    container: str,
    image: str,
    *,
    image_format: str = "oci",
    timestamp: int = 0,
    iidfile: Path,
    remove: bool = True,
) -> str:
    """Commit ``container`` as ``image`` in local storage; return the image ID."""
    result = run(
        commit_argv(
            container,
            image,
            image_format=image_format,
            timestamp=timestamp,
            iidfile=iidfile,
            remove=remove,
        ),
        what=f"commit the image {image}",
    )
    lines = result.stdout.strip().splitlines()
    return _read_id(iidfile) or (lines[-1].strip() if lines else "")


def _read_id(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return ""
    return text.removeprefix("sha256:")


def image_digest(image: str) -> str:
    """The manifest digest of ``image`` in local storage."""
    return run(image_digest_argv(image), what=f"read the digest of {image}").stdout.strip()


def push(image: str, destination: str, options: RegistryOptions, *, digestfile: Path) -> str:
    """Push local ``image`` to ``destination`` (``docker://…``); return the
    manifest digest the registry now holds."""
    run(
        push_argv(image, destination, options, digestfile=digestfile),
        what=f"push {image} to {destination.removeprefix('docker://')}",
    )
    try:
        return digestfile.read_text().strip()
    except OSError:
        return ""


def manifest_create(name: str) -> str:
    """Create the empty list ``name``; return its ID."""
    out = run(manifest_create_argv(name), what=f"create the image index {name}").stdout
    return out.strip().splitlines()[-1].strip() if out.strip() else ""


def manifest_add(name: str, image: str) -> str:
    """Add local ``image`` to the list ``name``; return the manifest digest
    buildah records for it (it prints ``LIST-ID: DIGEST``)."""
    out = run(manifest_add_argv(name, image), what=f"add {image} to the image index").stdout
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return last.rsplit(" ", 1)[-1]


def manifest_annotate(name: str, digest: str, annotations: Mapping[str, str]) -> None:
    run(manifest_annotate_argv(name, digest, annotations), what=f"annotate {digest} in {name}")


def manifest_push(
    name: str, destination: str, options: RegistryOptions, *, digestfile: Path
) -> str:
    """Push the list and every image in it; return the index digest in the registry."""
    run(
        manifest_push_argv(name, destination, options, digestfile=digestfile),
        what=f"push {name} to {destination.removeprefix('docker://')}",
    )
    try:
        return digestfile.read_text().strip()
    except OSError:
        return ""


def manifest_remove(name: str) -> Result | None:
    """Remove the list ``name`` if there is one (never raises)."""
    try:
        return run(manifest_rm_argv(name), check=False, what=f"remove image index {name}")
    except ToolError:
        return None


def remove_container(container: str) -> Result | None:
    """Remove a working container (and its mount). Never raises: it runs on
    the way out of a failure, whose error is the one to report."""
    try:
        return run(rm_argv(container), check=False, what=f"remove working container {container}")
    except ToolError:
        return None


def remove_image(image: str) -> Result:
    return run(rmi_argv(image), check=False, what=f"remove image {image}")
