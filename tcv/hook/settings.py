"""The hook's settings, in one place: every environment variable it reads, its
default, and how ``tcv hook install`` writes them into the hooks.d JSON
(docs/spec.md §7, docs/hook.md).

The runtime gives the hook no environment but the JSON's ``env``, so this is
the whole of its configuration; the per-container choices come from the
container's annotations (:mod:`tcv.hook.state`). Reading is forgiving where a
default is safe (a bad time bound or log size falls back to the default) and
strict where guessing would surprise (an unknown pull policy is an error).

Cheap to import: the hook reads it on every start that asks for a cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tcv.hook.state import HookError

if TYPE_CHECKING:
    from tcv.tools.registry import RegistryOptions

TIMEOUT_ENV = "TCV_HOOK_TIMEOUT"
LOG_ENV = "TCV_HOOK_LOG"
LOG_MAX_ENV = "TCV_HOOK_LOG_MAX"
LOG_LEVEL_ENV = "TCV_LOG_LEVEL"
STORE_ENV = "TCV_STORE"
PULL_ENV = "TCV_HOOK_PULL"
STORE_MAX_ENV = "TCV_HOOK_STORE_MAX"
TLS_VERIFY_ENV = "TCV_HOOK_TLS_VERIFY"
AUTHFILE_ENV = "TCV_HOOK_AUTHFILE"
SIGNATURE_POLICY_ENV = "TCV_HOOK_SIGNATURE_POLICY"
# Shared with the command line (tcv.gpu.discover reads them from the environment).
GPUS_ENV = "TCV_GPUS"
CUDA_DRIVER_ENV = "TCV_CUDA_DRIVER"

DEFAULT_TIMEOUT = 30  # seconds; the hooks.d timeout adds a grace on top
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PULL_POLICIES = ("missing", "never")
DEFAULT_PULL = "missing"
ROOT_STORE = "/var/lib/tcv/store"
DEFAULT_LOG_MAX = 4 << 20


@dataclass(frozen=True)
class HookSettings:
    """What the hook's environment says, read once per start."""

    timeout: float = float(DEFAULT_TIMEOUT)
    log_target: str = ""  # a file, "syslog", or "" (syslog if present, else the store)
    log_max_bytes: int = DEFAULT_LOG_MAX
    log_level: str = "INFO"
    store_root: Path = Path(ROOT_STORE)
    pull: str = DEFAULT_PULL  # as given, lower-cased; checked by pull_allowed
    store_max: str = ""  # a size (tcv.hook.lru.parse_size); "" keeps no cap
    tls_verify: bool = True
    authfile: str | None = None
    signature_policy: str | None = None
    cuda_driver: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, euid: int | None = None) -> HookSettings:
        return cls(
            timeout=_timeout(env.get(TIMEOUT_ENV, "")),
            log_target=env.get(LOG_ENV, "").strip(),
            log_max_bytes=_size(env.get(LOG_MAX_ENV, ""), DEFAULT_LOG_MAX),
            log_level=env.get(LOG_LEVEL_ENV, "info").upper(),
            store_root=default_root(env, euid=euid),
            pull=env.get(PULL_ENV, DEFAULT_PULL).strip().lower() or DEFAULT_PULL,
            store_max=env.get(STORE_MAX_ENV, "").strip(),
            tls_verify=env.get(TLS_VERIFY_ENV, "true").lower() != "false",
            authfile=env.get(AUTHFILE_ENV) or None,
            signature_policy=env.get(SIGNATURE_POLICY_ENV) or None,
            cuda_driver=env.get(CUDA_DRIVER_ENV) or None,
        )

    def pull_allowed(self) -> bool:
        """Whether the hook may pull an image the host does not hold; raises
        :class:`HookError` for a policy it does not know."""
        if self.pull not in PULL_POLICIES:
            raise HookError(
                f"{PULL_ENV}={self.pull!r} is not a pull policy",
                f"use one of {', '.join(PULL_POLICIES)} (tcv hook install --pull)",
            )
        return self.pull == "missing"

    def registry_options(self) -> RegistryOptions:
        from tcv.tools.registry import RegistryOptions

        return RegistryOptions(
            tls_verify=self.tls_verify,
            authfile=self.authfile,
            signature_policy=self.signature_policy,
        )


def _timeout(text: str) -> float:
    try:
        value = float(text or DEFAULT_TIMEOUT)
    except ValueError:
        return float(DEFAULT_TIMEOUT)
    return value if value > 0 else float(DEFAULT_TIMEOUT)


def _size(text: str, default: int) -> int:
    from tcv.hook.lru import parse_size

    try:
        return parse_size(text or str(default))
    except ValueError:
        return default


def default_root(env: Mapping[str, str], *, euid: int | None = None) -> Path:
    """Where the store lives: ``$TCV_STORE``, else the system or the user's data dir."""
    if env.get(STORE_ENV):
        return Path(env[STORE_ENV])
    if (os.geteuid() if euid is None else euid) == 0 and not in_user_namespace():
        return Path(ROOT_STORE)
    data = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or "~", ".local", "share")
    return Path(os.path.expanduser(data)) / "tcv" / "store"


def in_user_namespace() -> bool:
    """True when this process runs in a user namespace that is not the host's
    (rootless podman runs its hooks in one)."""
    try:
        text = Path("/proc/self/uid_map").read_text()
    except OSError:
        return False
    return text.split() != ["0", "0", "4294967295"]


def hook_env(
    *,
    gpus: list[str] | None = None,
    cuda_driver: str | None = None,
    store: str | None = None,
    log: str | None = None,
    pull: str | None = None,
    tls_verify: bool | None = None,
    timeout: int = DEFAULT_TIMEOUT,
    store_max: str | None = None,
    signature_policy: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment ``tcv hook install`` writes into the hooks.d JSON: only
    what was asked for, plus PATH (for skopeo) and the time bound."""
    env = {"PATH": DEFAULT_PATH, TIMEOUT_ENV: str(timeout), **(extra or {})}
    if gpus:
        env[GPUS_ENV] = ";".join(gpus)
    if cuda_driver:
        env[CUDA_DRIVER_ENV] = cuda_driver
    if store:
        env[STORE_ENV] = store
    if log:
        env[LOG_ENV] = log
    if pull:
        env[PULL_ENV] = pull
    if tls_verify is not None:
        env[TLS_VERIFY_ENV] = "true" if tls_verify else "false"
    if store_max:
        env[STORE_MAX_ENV] = store_max
    if signature_policy:
        env[SIGNATURE_POLICY_ENV] = signature_policy
    return env
