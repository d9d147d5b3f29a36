"""Switches shared by several commands (GPU overrides, JSON output)."""

from __future__ import annotations

from plumbum import cli


class JsonOption:
    json = cli.Flag(["--json"], help="print machine-readable JSON (SPEC §2) instead of a table")


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
        argname="X.Y",
        default=None,
        help="CUDA version the host driver supports, for the PTX rule (default: from the driver)",
    )
    triton_version = cli.SwitchAttr(
        ["--triton-version"],
        str,
        argname="VERSION",
        default=None,
        help="the Triton that will consume the kernels; entries of other versions are "
        "reported as never hit (default: the importable triton, if any)",
    )
