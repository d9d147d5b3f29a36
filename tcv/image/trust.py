"""The containers signature policy (``policy.json``), as skopeo and podman read it.

skopeo enforces the policy itself on every ``skopeo copy`` (the pull of
``tcv -e``, ``tcv check -i`` and the hook), before a layer is copied. What this
module adds is the part TCV decides without a pull: which requirement applies to
an image (the most specific scope, as ``containers-policy.json(5)`` defines it),
so that an image the policy rejects outright is refused before any request, and
``tcv inspect`` (which reads labels only, and so verifies no signature) can say
that a signature will be required. Pure, apart from :func:`policy_path` and
:func:`load_policy`, which read the file (bounded).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tcv.errors import TcvError, UsageError
from tcv.image.ref import CONTAINERS_STORAGE, DOCKER, ImageRef

SYSTEM_POLICY = Path("/etc/containers/policy.json")
POLICY_MAX_BYTES = 1 << 20

ACCEPT = "accept"  # insecureAcceptAnything
REJECT = "reject"
SIGNED = "signed"  # signedBy / sigstoreSigned: verified by skopeo on the pull


class TrustError(TcvError):
    """The signature policy does not admit the image (exit 1: extraction failed)."""

    exit_code = 1


def policy_path(given: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """``--signature-policy FILE``, else the user's, else the system's policy
    (the order skopeo and podman use)."""
    if given:
        return Path(given)
    home = env.get("HOME")
    if home and os.geteuid() != 0:
        user = Path(home, ".config/containers/policy.json")
        if user.is_file():
            return user
    return SYSTEM_POLICY


def load_policy(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(POLICY_MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(
            f"cannot read the signature policy {path}: {err.strerror}",
            "pass --signature-policy FILE naming a readable policy.json",
        ) from None
    if len(raw) > POLICY_MAX_BYTES:
        raise UsageError(f"the signature policy {path} is larger than 1 MiB")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise UsageError(
            f"the signature policy {path} is not valid JSON",
            "see containers-policy.json(5) for its format",
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"the signature policy {path} is not a JSON object")
    return data


def _docker_scopes(name: str) -> list[str]:
    """The scopes that can match a registry reference, most specific first:
    ``host/repo:tag`` (or ``@digest``), ``host/repo``, each parent namespace,
    ``host``, then ``*.domain`` wildcards."""
    repo = name.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo.rsplit(":", 1)[0]
    scopes = [name] if name != repo else []
    parts = repo.split("/")
    for i in range(len(parts), 0, -1):
        scopes.append("/".join(parts[:i]))
    host = parts[0].split(":", 1)[0]
    labels = host.split(".")
    scopes.extend("*." + ".".join(labels[i:]) for i in range(1, len(labels)))
    return scopes


def requirements_for(policy: Mapping[str, Any], ref: ImageRef) -> list[Any]:
    """The requirement list that applies to ``ref``."""
    transports = policy.get("transports")
    table = transports.get(ref.transport) if isinstance(transports, Mapping) else None
    if isinstance(table, Mapping):
        name = ref.name
        if ref.transport == DOCKER:
            from tcv.image.names import split_name

            registry = split_name(name)[0]
            if registry is None:  # docker.io's implied forms
                path = name if "/" in name.split(":", 1)[0] else f"library/{name}"
                name = f"docker.io/{path}"
            candidates = _docker_scopes(name)
        elif ref.transport == CONTAINERS_STORAGE:
            candidates = [name, name.split("@", 1)[0].rsplit(":", 1)[0]]
        else:
            candidates = [name]
        for scope in [*candidates, ""]:
            if scope in table and isinstance(table[scope], list):
                return list(table[scope])
    default = policy.get("default")
    return list(default) if isinstance(default, list) else [{"type": "reject"}]


def verdict(requirements: list[Any]) -> str:
    """ACCEPT, REJECT or SIGNED for a requirement list (all must be met)."""
    kinds = {str(r.get("type")) if isinstance(r, Mapping) else "?" for r in requirements}
    if (
        not requirements
        or "reject" in kinds
        or kinds
        - {
            "insecureAcceptAnything",
            "signedBy",
            "sigstoreSigned",
            "signedBaseLayer",
        }
    ):
        return REJECT
    if kinds <= {"insecureAcceptAnything"}:
        return ACCEPT
    return SIGNED


def image_verdict(ref: ImageRef, given: str | None) -> tuple[str, Path]:
    """What the policy in force says of ``ref``, and which file said it."""
    path = policy_path(given)
    return verdict(requirements_for(load_policy(path), ref)), path


def refuse_if_rejected(ref: ImageRef, given: str | None) -> str | None:
    """Raise :class:`TrustError` when the policy rejects ``ref`` outright (no
    request made); return the verdict otherwise (None: no policy file to read,
    which skopeo then reports on the pull)."""
    path = policy_path(given)
    if given is None and not path.exists():
        return None
    found, path = image_verdict(ref, given)
    if found == REJECT:
        raise TrustError(
            f"the signature policy {path} rejects {ref}",
            "change the policy's scope for this repository (containers-policy.json(5)) or "
            "pass --signature-policy FILE",
        )
    return found


def is_trust_failure(message: str) -> bool:
    """Whether a failed ``skopeo copy`` was refused by the signature policy."""
    low = message.lower()
    return "source image rejected" in low or (
        "signature" in low
        and ("required" in low or "not accepted" in low or "invalid" in low or "rejected" in low)
    )
