"""skopeo, the image mover: inspect (manifest + config, never a layer) and copy.

Every call goes through :func:`tcv.runner.run`. ``skopeo inspect --no-tags``
costs exactly two registry requests past authentication — the manifest and the
config blob — whatever the image size, which is what the preflight promises
(SPEC §2, exit 4 before any layer is fetched). The pull copies into skopeo's
``dir:`` layout, which keeps the source manifest byte for byte, so its digest
can be checked against what the preflight read.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tcv.errors import ExtractError, ImageNotFoundError, TcvError, ToolError
from tcv.imageref import ImageRef
from tcv.registry import RegistryOptions
from tcv.runner import run

DIR_MANIFEST = "manifest.json"

# skopeo (logrus) prints `time=… level=fatal msg="…"`; keep only the message.
_FATAL = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ImageInfo:
    """What ``skopeo inspect`` says about an image: its digest, labels, layers."""

    ref: ImageRef
    digest: str
    labels: dict[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()


def skopeo_message(stderr: str) -> str:
    """skopeo's own error message, without the log-line decoration."""
    found = _FATAL.findall(stderr)
    if found:
        msg = found[-1].encode().decode("unicode_escape", errors="replace")
        # "Error parsing image name \"X\": <cause>" — the cause is what a person needs.
        msg = re.sub(r'^Error parsing image name "(?:[^"\\]|\\.)*": ', "", msg)
        return msg.strip()
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "skopeo failed"


def hint_for(message: str, ref: ImageRef) -> str:
    """What to do about a failed access, from skopeo's message."""
    low = message.lower()
    if "http response to https client" in low or "x509" in low or "tls" in low:
        return "for a plain-HTTP or self-signed registry pass --tls-verify=false"
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        registry = ref.name.split("/", 1)[0]
        return f"log in with 'podman login {registry}' or pass --authfile FILE / --creds USER:PW"
    if ref.is_registry:
        return "check the image name and tag, and that the registry is reachable"
    return "check the path or name of the image"


def _access_args(ref: ImageRef, opts: RegistryOptions) -> list[str]:
    # TLS and credentials only mean something to the registry transport.
    return opts.args() if ref.is_registry else []


def inspect(ref: ImageRef, opts: RegistryOptions, *, timeout: float | None = None) -> ImageInfo:
    """Digest, labels and layer digests of ``ref``; no layer is downloaded.

    An image that cannot be read (absent, registry unreachable, access denied)
    raises :class:`ImageNotFoundError` (exit 5).
    """
    argv = ["skopeo", "inspect", "--no-tags", *_access_args(ref, opts), ref.skopeo()]
    try:
        result = run(argv, what=f"inspect {ref}", timeout=timeout)
    except ToolError as err:
        if err.returncode is None:  # not installed, or timed out: say so as it is
            raise
        raise _not_found(err, ref) from None
    return parse_inspect(ref, result.stdout)


def inspect_raw(ref: ImageRef, opts: RegistryOptions, *, timeout: float | None = None) -> bytes:
    """The manifest of ``ref`` exactly as stored — an image manifest, an image
    index or an artifact manifest — in one registry request (no config, no layer)."""
    argv = ["skopeo", "inspect", "--raw", *_access_args(ref, opts), ref.skopeo()]
    try:
        result = run(argv, what=f"inspect {ref}", timeout=timeout)
    except ToolError as err:
        if err.returncode is None:
            raise
        raise _not_found(err, ref) from None
    return result.stdout.encode()


def parse_inspect(ref: ImageRef, stdout: str) -> ImageInfo:
    """The fields TCV needs from ``skopeo inspect`` JSON output."""
    try:
        data = json.loads(stdout)
    except ValueError:
        raise ExtractError(
            f"cannot read the description of {ref}: skopeo printed no JSON",
            "run with --log-level debug to see the command and its output",
        ) from None
    if not isinstance(data, dict):
        raise ExtractError(f"cannot read the description of {ref}: unexpected skopeo output")
    labels = data.get("Labels") or {}
    return ImageInfo(
        ref=ref,
        digest=str(data.get("Digest") or ""),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        layers=tuple(str(x) for x in data.get("Layers") or ()),
    )


def copy_to_dir(
    ref: ImageRef, opts: RegistryOptions, dest: Path, *, timeout: float | None = None
) -> Path:
    """Copy ``ref`` into ``dest`` in skopeo's ``dir:`` layout (manifest.json plus
    blobs named by their hex digest); returns ``dest``. skopeo checks every blob
    against its digest while copying."""
    argv = [
        "skopeo",
        "copy",
        "--quiet",
        *(opts.copy_args("src") if ref.is_registry else []),
        ref.skopeo(),
        f"dir:{dest}",
    ]
    try:
        run(argv, what=f"pull {ref}", timeout=timeout)
    except ToolError as err:
        if err.returncode is None:
            raise
        message = skopeo_message(err.stderr_tail or err.message)
        low = message.lower()
        if any(s in low for s in ("manifest unknown", "name unknown", "not found", "refused")):
            raise _not_found(err, ref) from None
        raise ExtractError(
            f"cannot pull {ref}: {message}",
            "check free space under /tmp/.tcv and run with --log-level debug for details",
        ) from None
    return dest


def read_dir_manifest(layout: Path) -> tuple[bytes, dict[str, object]]:
    """The raw bytes and parsed form of a ``dir:`` layout's manifest."""
    raw = (layout / DIR_MANIFEST).read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        raise ExtractError("the pulled image manifest is not JSON") from None
    if not isinstance(data, dict):
        raise ExtractError("the pulled image manifest is not a JSON object")
    return raw, data


def manifest_digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def blob_path(layout: Path, digest: str) -> Path:
    """Where skopeo's ``dir:`` layout keeps the blob ``digest``."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise ExtractError(f"the image manifest names a blob with a bad digest: {digest!r}")
    return layout / hexpart


def _not_found(err: ToolError, ref: ImageRef) -> TcvError:
    message = skopeo_message(err.stderr_tail or err.message)
    return ImageNotFoundError(f"cannot read image {ref}: {message}", hint_for(message, ref))
