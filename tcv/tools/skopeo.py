"""skopeo, the image mover: inspect (manifest + config, never a layer) and copy.

Every call goes through :func:`tcv.tools.runner.run`. ``skopeo inspect --no-tags``
costs exactly two registry requests past authentication — the manifest and the
config blob — whatever the image size, which is what the preflight promises
(docs/spec.md §2, exit 4 before any layer is fetched). The pull copies into skopeo's
``dir:`` layout, which keeps the source manifest byte for byte, so its digest
can be checked against what the preflight read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from tcv.errors import ExtractError, ImageNotFoundError, TcvError, ToolError
from tcv.image import jsonbound
from tcv.image.ref import ImageRef
from tcv.tools.registry import (
    AUTH,
    MISSING,
    OTHER,
    PLAIN_HTTP,
    TLS,
    UNREACHABLE,
    RegistryOptions,
    access_failure,
    access_hint,
    registry_host,
)
from tcv.tools.runner import run

DIR_MANIFEST = "manifest.json"
# containers/image reads at most 4 MiB of a manifest or config; what skopeo
# prints about them is bounded alike.
MAX_DOCUMENT = 16 << 20

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


def _access_args(ref: ImageRef, opts: RegistryOptions) -> list[str]:
    # TLS, certificates, credentials and retries only mean something to a registry.
    return [*opts.args(), *opts.skopeo_retry_args()] if ref.is_registry else []


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
        raise access_error(err, ref) from None
    return parse_inspect(ref, result.stdout)


def inspect_config(
    ref: ImageRef, opts: RegistryOptions, *, timeout: float | None = None
) -> dict[str, object]:
    """The ``config`` part of the image's configuration (Cmd, Entrypoint, Env,
    Labels ...): one more request for the config blob, never a layer."""
    argv = ["skopeo", "inspect", "--config", "--no-tags", *_access_args(ref, opts), ref.skopeo()]
    try:
        result = run(argv, what=f"inspect {ref}", timeout=timeout)
    except ToolError as err:
        if err.returncode is None:
            raise
        raise access_error(err, ref) from None
    try:
        data = jsonbound.loads(result.stdout, "the image config", max_bytes=MAX_DOCUMENT)
    except jsonbound.JsonBoundError:
        return {}
    config = data.get("config") if isinstance(data, dict) else None
    return config if isinstance(config, dict) else {}


def inspect_raw(ref: ImageRef, opts: RegistryOptions, *, timeout: float | None = None) -> bytes:
    """The manifest of ``ref`` exactly as stored — an image manifest, an image
    index or an artifact manifest — in one registry request (no config, no layer)."""
    argv = ["skopeo", "inspect", "--raw", *_access_args(ref, opts), ref.skopeo()]
    try:
        result = run(argv, what=f"inspect {ref}", timeout=timeout)
    except ToolError as err:
        if err.returncode is None:
            raise
        raise access_error(err, ref) from None
    return result.stdout.encode()


def parse_inspect(ref: ImageRef, stdout: str) -> ImageInfo:
    """The fields TCV needs from ``skopeo inspect`` JSON output."""
    try:
        data = jsonbound.loads(stdout, "skopeo's description", max_bytes=MAX_DOCUMENT)
    except jsonbound.JsonBoundError:
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
        *opts.global_args(),
        "copy",
        "--quiet",
        *([*opts.copy_args("src"), *opts.skopeo_retry_args()] if ref.is_registry else []),
        ref.skopeo(),
        f"dir:{dest}",
    ]
    try:
        run(argv, what=f"pull {ref}", timeout=timeout)
    except ToolError as err:
        if err.returncode is None:
            raise
        message = skopeo_message(err.stderr_tail or err.message)
        from tcv.image.trust import TrustError, is_trust_failure

        if is_trust_failure(message):
            where = opts.signature_policy or "the containers policy (policy.json)"
            raise TrustError(
                f"{ref} is not trusted by {where}: {message}",
                "pull only images signed by a key the policy names, or change the policy's "
                "scope for this repository (containers-policy.json(5))",
            ) from None
        kind = access_failure(message).kind
        if kind == MISSING or (ref.is_registry and kind != OTHER):
            raise access_error(err, ref) from None
        raise ExtractError(
            f"cannot pull {ref}: {message}",
            "check free space under /tmp/.tcv and run with --log-level debug for details",
        ) from None
    return dest


def read_dir_manifest(layout: Path) -> tuple[bytes, dict[str, object]]:
    """The raw bytes and parsed form of a ``dir:`` layout's manifest."""
    path = layout / DIR_MANIFEST
    if path.stat().st_size > MAX_DOCUMENT:
        raise ExtractError("the pulled image manifest is implausibly large")
    raw = path.read_bytes()
    try:
        data = jsonbound.loads(raw, "the pulled image manifest", max_bytes=MAX_DOCUMENT)
    except jsonbound.JsonBoundError as err:
        raise ExtractError(err.message) from None
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


def access_error(err: ToolError, ref: ImageRef) -> TcvError:
    """The one line for a failed read of ``ref`` (exit 5), saying which of
    unreachable, untrusted certificate, plain HTTP, refused credentials or not
    in the registry it is, and the safe fix first."""
    message = skopeo_message(err.stderr_tail or err.message)
    if not ref.is_registry:
        return ImageNotFoundError(
            f"cannot read image {ref}: {message}", "check the path or name of the image"
        )
    host = registry_host(ref.name)
    failure = access_failure(message)
    hint = access_hint(failure, host)
    if failure.kind == UNREACHABLE:
        line = f"cannot reach registry {host} for {ref}: {failure.cause}"
    elif failure.kind == TLS:
        line = f"cannot verify the TLS certificate of registry {host} for {ref}: {failure.cause}"
    elif failure.kind == PLAIN_HTTP:
        line = f"cannot read {ref}: {failure.cause}"
    elif failure.kind == AUTH:
        line = f"registry {host} refused access to {ref}: {message}"
    elif failure.kind == MISSING:
        line = f"{ref} is not in registry {host}: {message}"
    else:
        line = f"cannot read image {ref}: {message}"
    return ImageNotFoundError(line, hint)
