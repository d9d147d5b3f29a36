"""buildah, as TCV drives it: argv builders (pure) and the calls (through
:func:`tcv.runner.run`).

Reproducible layers (SPEC §3). The layer tar TCV writes (:mod:`tcv.layer`)
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
from tcv.registry import RegistryOptions
from tcv.runner import Result, available, run

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


def remove_container(container: str) -> Result | None:
    """Remove a working container (and its mount). Never raises: it runs on
    the way out of a failure, whose error is the one to report."""
    try:
        return run(rm_argv(container), check=False, what=f"remove working container {container}")
    except ToolError:
        return None


def remove_image(image: str) -> Result:
    return run(rmi_argv(image), check=False, what=f"remove image {image}")
