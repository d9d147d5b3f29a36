"""``tcv``: the command line for people (docs/spec.md §2).

The seed's forms are switches on the top-level command::

    tcv -c -i IMAGE -d DIR     # create
    tcv -e -i IMAGE            # extract

and the rest are subcommands, loaded lazily so ``tcv scan`` never imports
what ``tcv -e`` needs.
"""

from __future__ import annotations

from plumbum import cli

from tcv.cli.base import TcvApplication
from tcv.cli.options import (
    LAYOUT_HELP,
    MOUNT_PATH_HELP,
    GpuOptions,
    JsonOption,
    RegistrySwitches,
    autotune_device_switch,
    layout_switch,
    mount_path_switch,
    with_autotune_switch,
)
from tcv.errors import UsageError


class Tcv(TcvApplication, GpuOptions, JsonOption, RegistrySwitches):
    """Triton Cache Vault: pack a Triton kernel cache into an OCI image, ship it through
    any registry, and install on each host only the kernels its GPUs can run.

    -c builds an image from the cache in -d DIR with buildah (one reproducible layer
    holding io.triton.cache/<KEY>/ and io.triton.manifest/manifest.json, and the
    cache.triton.image/* labels) and, with --push, pushes it; -d may be repeated (the
    caches are merged), --split-by-target makes one image per GPU target under one
    OCI image index (a fleet image) and --format artifact an OCI artifact. -e reads the image's
    labels first and stops before any layer is downloaded when nothing fits this
    host's GPUs; otherwise it pulls, verifies and installs each fitting kernel
    atomically into DEST, rewriting Triton's group files so Triton finds them there.

    Environment: TCV_GPUS (';'-separated SPECs, as --gpu), TCV_CUDA_DRIVER (as
    --cuda-driver), TCV_LOG_LEVEL, TRITON_CACHE_DIR and TRITON_HOME (DEST's default).

    Exit status: 0 success; 1 extraction failed; 2 creation failed (also: --with-autotune
    cannot tell the GPU model, pass --autotune-device NAME); 3 bad usage or
    configuration; 4 nothing in the image fits this host; 5 image not found,
    registry unreachable, or the image is not a Triton cache image (an
    application image: no cache.triton.image labels, and a command or an
    environment in its configuration). Every failure is one line on stderr
    saying what to do."""

    PROGNAME = "tcv"
    USAGE = (
        "    tcv -c -i IMAGE -d DIR [options]     create an image from a Triton cache\n"
        "    tcv -e -i IMAGE [-d DEST] [options]  extract the kernels that fit this host\n"
        "    tcv COMMAND [options] ...            see the sub-commands below\n"
    )

    create = cli.Flag(
        ["-c", "--create"], excludes=["-e"], help="create an image from the cache in -d DIR"
    )
    extract = cli.Flag(
        ["-e", "--extract"], excludes=["-c"], help="extract the image's fitting kernels into DEST"
    )
    image = cli.SwitchAttr(
        ["-i", "--image"],
        str,
        argname="IMAGE",
        help="image reference: a registry name (docker://), containers-storage:NAME, "
        "oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE",
    )
    directories = cli.SwitchAttr(
        ["-d", "--dir"],
        str,
        list=True,
        argname="DIR",
        help="create: the Triton cache to pack (repeatable: the caches are merged); "
        "extract: where to install (default $TRITON_CACHE_DIR, else "
        "$TRITON_HOME/.triton/cache, else ~/.triton/cache)",
    )
    image_format = cli.SwitchAttr(
        ["--format"],
        cli.Set("oci", "docker", "artifact", case_sensitive=False),
        default="oci",
        help="create: image and layer media types, or an OCI 1.1 artifact "
        "(application/vnd.triton.cache.v1)",
    )
    split_by_target = cli.Flag(
        ["--split-by-target"],
        help="create: one image per GPU target under one OCI image index (a fleet image)",
    )
    push = cli.Flag(["--push"], help="create: push the image to its registry after building")
    no_gpu_check = cli.Flag(
        ["--no-gpu-check"], help="extract: install every kernel, whatever this host's GPUs"
    )
    force = cli.Flag(["--force"], help="extract: replace installed kernels that differ")
    max_size = cli.SwitchAttr(
        ["--max-size"],
        int,
        default=None,
        argname="BYTES",
        help="extract: refuse layers that unpack to more than this "
        "(default: the image's cache-size-bytes label)",
    )
    workload = cli.SwitchAttr(
        ["--for"],
        cli.Set("triton", "inductor", "vllm", case_sensitive=False),
        default="triton",
        argname="WORKLOAD",
        help="extract: where that workload's Triton reads — triton: DEST; inductor: "
        "${TORCHINDUCTOR_CACHE_DIR:-<tempdir>/torchinductor_$USER}/triton/<i> for each GPU "
        "index i, each with what fits GPU i; vllm: the vLLM tree the image recorded, under "
        "$VLLM_CACHE_ROOT (-d names that directory instead)",
    )
    verbose = cli.Flag(
        ["--verbose"],
        help="extract: one row per kernel (key, name, target, result, reason) instead of "
        "the summary by target; --json always lists every kernel",
    )
    include_launchers = cli.Flag(
        ["--include-launchers"],
        help="create: also pack the host-specific launcher/utils .so directories",
    )
    source = layout_switch("create: " + LAYOUT_HELP)
    mount_path = mount_path_switch("create: " + MOUNT_PATH_HELP)

    with_autotune = with_autotune_switch(
        "create: also pack Triton's autotuning results (<KEY>/*.autotune.json) and "
        "an Inductor cache's <xx>/*.best_config, recording the GPU model they were "
        "measured on; extract installs them only where a visible GPU is that model "
        "(best_configs with --for inductor)"
    )
    autotune_device = autotune_device_switch(
        "create: the GPU model the autotuning results were measured on, as the "
        'driver names it ("NVIDIA H100 80GB HBM3"; default: this host\'s one GPU model — '
        "exit 2 when there is none or several)"
    )

    @property
    def directory(self) -> str | None:
        """The one ``-d`` of extract (create reads :attr:`directories`)."""
        if len(self.directories) > 1:
            raise UsageError(
                f"-d is given {len(self.directories)} times, but extract installs into one DEST",
                "pass -d once",
            )
        return self.directories[0] if self.directories else None

    def main(self, *args: str) -> int:
        if args:
            raise UsageError(f"unknown command {args[0]!r}", "run 'tcv --help' for the commands")
        if self.nested_command:
            return 0
        if self.create:
            from tcv.cli.create import run_create

            return run_create(self)
        if self.extract:
            from tcv.cli.extract import run_extract

            return run_extract(self)
        self.help()
        return 0


Tcv.subcommand("scan", "tcv.cli.scan.Scan")
Tcv.subcommand("gpus", "tcv.cli.gpus.Gpus")
Tcv.subcommand("check", "tcv.cli.check.Check")
Tcv.subcommand("inspect", "tcv.cli.inspect.Inspect")
Tcv.subcommand("hook", "tcv.cli.hook.Hook")


def main() -> None:
    """Console-script entry point."""
    from tcv.cli.base import run_main

    run_main(Tcv)
