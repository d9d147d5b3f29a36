"""How to talk to a registry: TLS and credentials, as the containers tools take them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryOptions:
    tls_verify: bool = True
    authfile: str | None = None
    creds: str | None = None

    def args(self) -> list[str]:
        """Switches understood alike by ``buildah push``, ``skopeo inspect`` and
        ``skopeo copy`` (copy wants ``--src-``/``--dest-`` forms: see :meth:`copy_args`)."""
        out = [f"--tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.authfile:
            out.append(f"--authfile={self.authfile}")
        if self.creds:
            out.append(f"--creds={self.creds}")
        return out

    def copy_args(self, side: str) -> list[str]:
        """``skopeo copy`` switches for ``side`` ``"src"`` or ``"dest"``."""
        out = [f"--{side}-tls-verify={'true' if self.tls_verify else 'false'}"]
        if self.authfile:
            out.append(f"--{side}-authfile={self.authfile}")
        if self.creds:
            out.append(f"--{side}-creds={self.creds}")
        return out
