"""How to talk to a registry (TLS, certificates, credentials, retries), as the
containers tools take them, and what a failed access means. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryOptions:
    tls_verify: bool = True
    authfile: str | None = None
    creds: str | None = None
    cert_dir: str | None = None  # CA certificates (*.crt) and client keys, as skopeo takes
    retry_times: int | None = None  # None: the tool's default
    signature_policy: str | None = None  # policy.json; None: the containers default

    def global_args(self) -> list[str]:
        """skopeo's switches before the sub-command (the trust policy)."""
        return ["--policy", self.signature_policy] if self.signature_policy else []

    def args(self) -> list[str]:
        """Switches understood alike by ``buildah push`` and ``skopeo inspect``
        (``skopeo copy`` wants ``--src-``/``--dest-`` forms: see :meth:`copy_args`)."""
        out = [f"--tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.cert_dir:
            out.append(f"--cert-dir={self.cert_dir}")
        if self.authfile:
            out.append(f"--authfile={self.authfile}")
        if self.creds:
            out.append(f"--creds={self.creds}")
        return out

    def copy_args(self, side: str) -> list[str]:
        """``skopeo copy`` switches for ``side`` ``"src"`` or ``"dest"``."""
        out = [f"--{side}-tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.cert_dir:
            out.append(f"--{side}-cert-dir={self.cert_dir}")
        if self.authfile:
            out.append(f"--{side}-authfile={self.authfile}")
        if self.creds:
            out.append(f"--{side}-creds={self.creds}")
        return out

    def skopeo_retry_args(self) -> list[str]:
        return [] if self.retry_times is None else [f"--retry-times={self.retry_times}"]

    def buildah_retry_args(self) -> list[str]:
        return [] if self.retry_times is None else [f"--retry={self.retry_times}"]


# ---------------------------------------------------------------- failures

TLS = "tls"  # the certificate could not be verified
PLAIN_HTTP = "plain-http"  # the registry answers HTTP to HTTPS
UNREACHABLE = "unreachable"  # no connection at all
AUTH = "auth"  # the registry refused the credentials
MISSING = "missing"  # the registry answered: no such repository or tag
OTHER = "other"

# containers/image and Go's net/crypto wording.
_PLAIN_HTTP = re.compile(r"server gave HTTP response to HTTPS client", re.I)
_TLS = re.compile(r"(x509: .*|tls: .*|certificate (?:signed by unknown authority|is not valid).*)")
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|no route to host|"
    r"connection reset|dial tcp|server misbehaving|TLS handshake timeout",
    re.I,
)
_DIAL = re.compile(r"dial tcp(?: \S+)?: (.*)$")
_AUTH = re.compile(r"unauthorized|authentication required|access denied|denied:|\b401\b|\b403\b")
_MISSING = re.compile(r"manifest unknown|name unknown|repository name not known|not found", re.I)


@dataclass(frozen=True)
class AccessFailure:
    kind: str
    cause: str  # the part of the tool's message a person needs


def access_failure(detail: str) -> AccessFailure:
    """Classify a failed registry access from the tool's error message.

    The order matters: an unreachable registry's message can also contain
    "not found" (a DNS "no such host"), and a TLS failure names the dial.
    """
    if _PLAIN_HTTP.search(detail):
        return AccessFailure(PLAIN_HTTP, "the registry answers plain HTTP, not HTTPS")
    tls = _TLS.search(detail)
    if tls:
        return AccessFailure(TLS, tls.group(1).strip())
    unreachable = _UNREACHABLE.search(detail)
    if unreachable:
        dial = _DIAL.search(detail)
        return AccessFailure(UNREACHABLE, (dial.group(1) if dial else unreachable.group(0)).strip())
    if _AUTH.search(detail):
        return AccessFailure(AUTH, detail.strip())
    if _MISSING.search(detail):
        return AccessFailure(MISSING, detail.strip())
    return AccessFailure(OTHER, detail.strip())


def registry_host(name: str) -> str:
    """The registry part of a bare reference (``127.0.0.1:5000/a/b:1`` ->
    ``127.0.0.1:5000``)."""
    return name.split("/", 1)[0]


def access_hint(failure: AccessFailure, host: str) -> str:
    """What to do about ``failure``: the safe fix first."""
    if failure.kind == TLS:
        return (
            f"trust the registry's CA: put it in /etc/containers/certs.d/{host}/ca.crt, "
            "pass --cert-dir DIR holding it, or add it to the system trust store "
            "(update-ca-certificates); --tls-verify=false only for a registry you trust "
            "on a network you trust"
        )
    if failure.kind == PLAIN_HTTP:
        return "for a plain-HTTP registry you trust pass --tls-verify=false"
    if failure.kind == UNREACHABLE:
        return f"check that {host} is the right address and that the registry is up"
    if failure.kind == AUTH:
        return f"log in with 'podman login {host}' or pass --authfile FILE / --creds USER:PW"
    if failure.kind == MISSING:
        return "check the repository and tag (skopeo list-tags docker://REPO lists the tags)"
    return "run with --log-level debug to see the command and its output"
