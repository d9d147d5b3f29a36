"""Switches shared by several commands (GPU overrides, JSON output)."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, Any

from plumbum import cli

from tcv.errors import UsageError
from tcv.tools.registry import RegistryOptions


class JsonOption:
    json = cli.Flag(
        ["--json"],
        help="print machine-readable JSON (docs/spec.md §2) instead of a table; a failure "
        'is printed as {"error": LINE, "exit_code": N}',
    )


# Switches that more than one command takes, spelled once; each command says
# in its own words what the switch does there (``tcv hook install`` writes them
# into the hook's environment instead of using them).


def gpu_switch(help: str) -> Any:
    return cli.SwitchAttr(["--gpu"], str, list=True, argname="SPEC", help=help)


def cuda_driver_switch(help: str) -> Any:
    return cli.SwitchAttr(["--cuda-driver"], str, argname="X.Y|DRIVER", default=None, help=help)


def tls_verify_switch(help: str, default: str | None) -> Any:
    return cli.SwitchAttr(
        ["--tls-verify"],
        cli.Set("true", "false", case_sensitive=False),
        default=default,
        argname="BOOL",
        help=help,
    )


def signature_policy_switch(help: str) -> Any:
    return cli.SwitchAttr(
        ["--signature-policy"], cli.ExistingFile, default=None, argname="FILE", help=help
    )


LAYOUT_HELP = (
    "the layout of DIR — a Triton cache (DIR/<KEY>/), an Inductor cache "
    "directory (DIR/triton/<device>/<KEY>/) or a vLLM cache tree "
    "(…/rank_<r>_<dp>/triton_cache/<KEY>/); default: detect it"
)
MOUNT_PATH_HELP = (
    "write the group files for a read-only mount of the image's "
    "io.triton.cache at PATH (Kubernetes ImageVolume, podman --mount type=image), "
    "so Triton hits it as it is"
)


def layout_switch(help: str) -> Any:
    return cli.SwitchAttr(
        ["--from"],
        cli.Set("triton", "inductor", "vllm", case_sensitive=False),
        default=None,
        argname="LAYOUT",
        help=help,
    )


def mount_path_switch(help: str) -> Any:
    return cli.SwitchAttr(["--mount-path"], str, default=None, argname="PATH", help=help)


def with_autotune_switch(help: str) -> Any:
    return cli.Flag(["--with-autotune"], help=help)


def autotune_device_switch(help: str) -> Any:
    return cli.SwitchAttr(
        ["--autotune-device"],
        str,
        default=None,
        argname="NAME",
        requires=["--with-autotune"],
        help=help,
    )


class GpuOptions:
    """``--gpu SPEC`` (repeatable), ``--cuda-driver``, ``--triton-version``.

    ``$TCV_GPUS`` (``;``-separated SPECs) applies when no ``--gpu`` is given.
    """

    gpu_specs = gpu_switch(
        "use this accelerator instead of detecting: cuda:90, cuda:90:32, hip:gfx942, "
        "hip:gfx1100:32 (repeatable; default $TCV_GPUS)"
    )
    cuda_driver = cuda_driver_switch(
        "CUDA version the host driver supports (12.4), or the driver release nvidia-smi "
        "prints (550.54.15), for the PTX rule (default: from the driver; $TCV_CUDA_DRIVER)"
    )
    triton_version = cli.SwitchAttr(
        ["--triton-version"],
        str,
        argname="VERSION",
        default=None,
        help="the Triton that will consume the kernels; entries of other versions are "
        "reported as never hit (default: the importable triton, if any)",
    )


if TYPE_CHECKING:
    # A mixin of plumbum applications: its switches type-check as an Application's.
    _Switches = cli.Application
else:
    _Switches = object


class RegistrySwitches(_Switches):
    """``--tls-verify``, ``--cert-dir``, ``--authfile``, ``--creds``, ``--retry-times``:
    how to talk to registries, spelled as skopeo and podman spell them."""

    tls_verify = tls_verify_switch(
        "require HTTPS and valid certificates when talking to registries (false only "
        "for a plain-HTTP registry you trust)",
        default="true",
    )
    cert_dir = cli.SwitchAttr(
        ["--cert-dir"],
        cli.ExistingDirectory,
        default=None,
        argname="DIR",
        help="CA certificates (*.crt) and client keys (*.cert, *.key) for the registry, as "
        "skopeo takes them (default: /etc/containers/certs.d/HOST and the system store)",
    )
    authfile = cli.SwitchAttr(
        ["--authfile"],
        cli.ExistingFile,
        default=None,
        argname="FILE",
        help="registry credentials (default: the containers auth files, as podman uses)",
    )
    creds = cli.SwitchAttr(
        ["--creds"],
        str,
        default=None,
        argname="USER[:PASSWORD]",
        help="registry credentials given directly; without :PASSWORD it is asked for on "
        "the terminal",
    )
    retry_times = cli.SwitchAttr(
        ["--retry-times"],
        cli.Range(0, 100),
        default=None,
        argname="N",
        help="retry a failed registry request up to N times (default: the tool's own)",
    )

    signature_policy = signature_policy_switch(
        "the containers trust policy (policy.json) images must satisfy; skopeo "
        "verifies signatures on the pull (default: ~/.config/containers/policy.json for "
        "a user, else /etc/containers/policy.json)"
    )

    def registry_options(self) -> RegistryOptions:
        return registry_options(
            str(self.tls_verify),
            self.authfile,
            ask_password(self.creds),
            cert_dir=self.cert_dir,
            retry_times=self.retry_times,
            signature_policy=self.signature_policy,
        )


def ask_password(creds: str | None) -> str | None:
    """``USER`` without ``:PASSWORD`` asks for the password on the terminal, as
    podman does; without a terminal it is one line saying what to pass."""
    if not creds or ":" in creds:
        return creds
    if not sys.stdin.isatty():
        raise UsageError(
            f"--creds {creds} gives no password and there is no terminal to ask for it on",
            "pass --creds USER:PASSWORD, or log in with podman login and pass --authfile",
        )
    try:
        password = getpass.getpass(f"Password for {creds}: ")
    except EOFError:
        password = ""
    if not password:
        raise UsageError(f"no password given for {creds}", "pass --creds USER:PASSWORD")
    return f"{creds}:{password}"


def registry_options(
    tls_verify: str | bool,
    authfile: object,
    creds: str | None,
    *,
    cert_dir: object = None,
    retry_times: int | None = None,
    signature_policy: object = None,
) -> RegistryOptions:
    """The registry switches as :class:`RegistryOptions` (``--tls-verify`` is a
    "true"/"false" string on the command line)."""
    verify = tls_verify if isinstance(tls_verify, bool) else str(tls_verify).lower() != "false"
    return RegistryOptions(
        tls_verify=verify,
        authfile=str(authfile) if authfile else None,
        creds=creds or None,
        cert_dir=str(cert_dir) if cert_dir else None,
        retry_times=retry_times,
        signature_policy=str(signature_policy) if signature_policy else None,
    )
