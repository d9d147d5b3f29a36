"""Image references in the containers transports (docs/spec.md §2).

A bare reference means a registry (``docker://``); ``containers-storage:``,
``oci:DIR[:TAG]``, ``oci-archive:FILE`` and ``docker-archive:FILE`` are taken
explicitly. Pure: parsing and rendering only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tcv.errors import UsageError

DOCKER = "docker"
CONTAINERS_STORAGE = "containers-storage"
OCI = "oci"
OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"

# Longest first, so "oci-archive:" is not read as "oci:" + "archive:...".
TRANSPORTS = (CONTAINERS_STORAGE, DOCKER_ARCHIVE, OCI_ARCHIVE, DOCKER, OCI)

# Transports skopeo knows that TCV does not take (no daemon here, no use for the others).
_UNSUPPORTED = ("dir", "docker-daemon", "ostree", "sif", "tarball")

# The reference grammar of the distribution project (reference/regexp.go), as facts:
# an optional domain (with a port), then lower-case path components, then an
# optional tag and an optional digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_NAME_MAX = 255


@dataclass(frozen=True)
class ImageRef:
    """An image in one transport; ``name`` is the part after the transport prefix."""

    transport: str
    name: str

    def skopeo(self) -> str:
        """The ``transport:name`` form skopeo takes.

        ``name:tag@digest`` (which podman accepts, the digest deciding) goes to
        skopeo as ``name@digest``: containers/image refuses a reference with both.
        """
        if self.transport == DOCKER:
            m = _REFERENCE.match(self.name)
            if m and m.group("tag") and m.group("digest"):
                return f"docker://{m.group('name')}@{m.group('digest')}"
            return f"docker://{self.name}"
        return f"{self.transport}:{self.name}"

    @property
    def is_registry(self) -> bool:
        return self.transport == DOCKER

    def pinned(self, digest: str) -> ImageRef:
        """The same registry image by ``digest`` (``repo@sha256:…``), so a pull gets
        exactly what the preflight read even if the tag moves meanwhile. Other
        transports are local and returned unchanged."""
        if self.transport != DOCKER or not digest:
            return self
        m = _REFERENCE.match(self.name)
        repo = m.group("name") if m else self.name
        return ImageRef(DOCKER, f"{repo}@{digest}")

    def __str__(self) -> str:
        return self.name if self.transport == DOCKER else self.skopeo()


def parse_image_ref(text: str) -> ImageRef:
    """Parse an IMAGE argument; anything malformed is a :class:`UsageError`."""
    text = (text or "").strip()
    if not text:
        raise UsageError("no image given", "pass -i IMAGE (a registry reference or TRANSPORT:NAME)")
    for transport in TRANSPORTS:
        prefix = "docker://" if transport == DOCKER else f"{transport}:"
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            if transport == DOCKER:
                return ImageRef(DOCKER, _check_reference(rest, text))
            if not rest:
                raise UsageError(
                    f"image {text!r} names no {_what(transport)}",
                    f"write {transport}:{_what(transport).upper()}",
                )
            return ImageRef(transport, rest)
    scheme = re.match(r"^([a-z][a-z0-9+.-]*)(://|:)", text)
    if scheme and (scheme.group(2) == "://" or scheme.group(1) in _UNSUPPORTED):
        raise UsageError(
            f"image transport {scheme.group(1)!r} is not supported",
            "use a registry reference, containers-storage:, oci:, oci-archive: or docker-archive:",
        )
    return ImageRef(DOCKER, _check_reference(text, text))


def _what(transport: str) -> str:
    return {CONTAINERS_STORAGE: "image", OCI: "dir"}.get(transport, "file")


def _check_reference(ref: str, original: str) -> str:
    m = _REFERENCE.match(ref)
    if not m or len(m.group("name")) > _NAME_MAX:
        raise UsageError(
            f"invalid image reference {original!r}",
            "use [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST] with a lower-case repository",
        )
    return ref
