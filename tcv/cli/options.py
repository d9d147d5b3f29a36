"""Switches shared by several commands (GPU overrides, JSON output)."""

from __future__ import annotations

from plumbum import cli

from tcv.registry import RegistryOptions


class JsonOption:
    json = cli.Flag(
        ["--json"],
        help="print machine-readable JSON (SPEC §2) instead of a table; a failure "
        'is printed as {"error": LINE, "exit_code": N}',
    )


class GpuOptions:
    """``--gpu SPEC`` (repeatable), ``--cuda-driver``, ``--triton-version``.

    ``$TCV_GPUS`` (``;``-separated SPECs) applies when no ``--gpu`` is given.
    """

    gpu_specs = cli.SwitchAttr(
        ["--gpu"],
        str,
        list=True,
        argname="SPEC",
        help="use this accelerator instead of detecting: cuda:90, cuda:90:32, hip:gfx942, "
        "hip:gfx1100:32 (repeatable; default $TCV_GPUS)",
    )
    cuda_driver = cli.SwitchAttr(
        ["--cuda-driver"],
        str,
        argname="X.Y|DRIVER",
        default=None,
        help="CUDA version the host driver supports (12.4), or the driver release nvidia-smi "
        "prints (550.54.15), for the PTX rule (default: from the driver; $TCV_CUDA_DRIVER)",
    )
    triton_version = cli.SwitchAttr(
        ["--triton-version"],
        str,
        argname="VERSION",
        default=None,
        help="the Triton that will consume the kernels; entries of other versions are "
        "reported as never hit (default: the importable triton, if any)",
    )


class RegistrySwitches:
    """``--tls-verify``, ``--authfile``, ``--creds``: how to talk to registries."""

    tls_verify = cli.SwitchAttr(
        ["--tls-verify"],
        cli.Set("true", "false", case_sensitive=False),
        default="true",
        argname="BOOL",
        help="require HTTPS and valid certificates when talking to registries",
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
        help="registry credentials given directly",
    )

    def registry_options(self) -> RegistryOptions:
        return registry_options(self.tls_verify, self.authfile, self.creds)


def registry_options(
    tls_verify: str | bool, authfile: object, creds: str | None
) -> RegistryOptions:
    """The registry switches as :class:`RegistryOptions` (``--tls-verify`` is a
    "true"/"false" string on the command line)."""
    verify = tls_verify if isinstance(tls_verify, bool) else str(tls_verify).lower() != "false"
    return RegistryOptions(
        tls_verify=verify,
        authfile=str(authfile) if authfile else None,
        creds=creds or None,
    )
