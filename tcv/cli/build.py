"""``tcv-build``: the non-interactive builder for pipelines and CI (docs/spec.md §6)."""

from __future__ import annotations

import sys

from plumbum import cli

from tcv.cli.base import TcvApplication, sigterm_as_interrupt
from tcv.cli.options import (
    LAYOUT_HELP,
    MOUNT_PATH_HELP,
    RegistrySwitches,
    autotune_device_switch,
    layout_switch,
    mount_path_switch,
    with_autotune_switch,
)


class TcvBuild(TcvApplication, RegistrySwitches):
    """Build the cache image of a Triton cache, for pipelines and CI.

    DIR is a Triton cache root (the directory holding one KEY directory per
    compiled kernel); several DIRs (or -d DIR, repeated: one per build host of
    a CI matrix) are merged, and a key found twice with different bytes stops
    the build (exit 2) before anything is built. tcv-build builds exactly the
    image `tcv -c -i IMAGE -d DIR` builds: one reproducible layer holding io.triton.cache/<KEY>/ and
    io.triton.manifest/manifest.json, and the cache.triton.image/* labels. It
    never prompts; on success it prints the image's manifest digest
    (sha256:...) on stdout and nothing else there: the registry's digest with
    --push, else the digest in local storage. Messages go to stderr.

    With --context-only OUT nothing is built: OUT (a new or empty directory)
    receives a Containerfile (FROM scratch, one COPY, the LABEL lines) and the
    files, so any Containerfile builder makes an equivalent image, e.g.
    `buildah build --timestamp 0 -t IMAGE OUT`. Nothing is printed on stdout.

    With --split-by-target the kernels are grouped by target (backend, arch,
    warp size, Triton version), each group its own image with its own labels,
    all under one OCI image index whose entries carry the target in the
    cache.triton.image/target annotation: each host then downloads only its
    own kernels. --format artifact makes an OCI 1.1 artifact instead.

    --from LAYOUT and --mount-path PATH work as for tcv -c: the layout of DIR
    (Triton, Inductor or vLLM; detected by default) is recorded for tcv -e --for,
    and with --mount-path the group files name PATH/<KEY>/ for a read-only mount.

    The layer is reproducible: the same cache gives the same layer digest.
    File times in the layer and the image's creation time are
    $SOURCE_DATE_EPOCH, or 0 when unset.

    With --with-autotune Triton's autotuning results (<KEY>/*.autotune.json), and
    an Inductor cache's <xx>/*.best_config, are packed too, and the GPU model
    they were measured on is recorded in the cache.triton.image/autotune-device
    label: --autotune-device NAME, else the one GPU model of this host (tcv -e
    installs them only where a visible GPU is that model).

    Exit status: 0 built (and pushed); 2 the build or push failed, or
    --with-autotune cannot tell the GPU model (pass --autotune-device NAME); 3 bad
    usage (missing DIR, invalid IMAGE, OUT not empty, a bad --autotune-device); 5
    the registry could not be reached on --push. Every failure is one line on stderr.
    """

    PROGNAME = "tcv-build"
    USAGE = (
        "    tcv-build DIR... -t IMAGE [--split-by-target] [--context-only OUT] [--push] "
        "[options]\n"
    )

    tag = cli.SwitchAttr(
        ["-t", "--tag"],
        str,
        mandatory=True,
        argname="IMAGE",
        help="the image to build: REGISTRY/REPOSITORY[:TAG] or containers-storage:NAME",
    )
    context_only = cli.SwitchAttr(
        ["--context-only"],
        str,
        default=None,
        argname="OUT",
        excludes=["--push"],
        help="write a Containerfile build context to OUT (new or empty) instead of building",
    )
    push = cli.Flag(["--push"], help="push the image to its registry after building")
    image_format = cli.SwitchAttr(
        ["--format"],
        cli.Set("oci", "docker", "artifact", case_sensitive=False),
        default="oci",
        help="image and layer media types: oci (application/vnd.oci.image.layer.v1.tar+gzip "
        "when pushed), docker (application/vnd.docker.image.rootfs.diff.tar.gzip) or "
        "artifact (an OCI 1.1 artifact, application/vnd.triton.cache.v1)",
    )
    directories = cli.SwitchAttr(
        ["-d", "--dir"],
        str,
        list=True,
        argname="DIR",
        help="a Triton cache to pack, as the DIR arguments (repeatable)",
    )
    split_by_target = cli.Flag(
        ["--split-by-target"],
        excludes=["--context-only"],
        help="one image per GPU target under one OCI image index (a fleet image)",
    )
    include_launchers = cli.Flag(
        ["--include-launchers"],
        help="also pack the host-specific launcher/utils .so directories",
    )
    source = layout_switch(LAYOUT_HELP)
    mount_path = mount_path_switch(MOUNT_PATH_HELP)

    with_autotune = with_autotune_switch(
        "also pack the autotuning results (<KEY>/*.autotune.json, and an Inductor "
        "cache's <xx>/*.best_config) and record the GPU model they were measured on"
    )
    autotune_device = autotune_device_switch(
        'the GPU model the results were measured on ("NVIDIA H100 80GB HBM3"; '
        "default: this host's one GPU model, exit 2 when there is none or several)"
    )

    def main(self, *args: str) -> int:
        from tcv.autotune.pack import AutotuneRequest
        from tcv.create import create_image, write_build_context
        from tcv.errors import UsageError

        directories = [*args, *self.directories]
        if not directories:
            raise UsageError("tcv-build needs the Triton cache to pack", "pass DIR (or -d DIR)")
        tuned = AutotuneRequest(self.autotune_device) if self.with_autotune else None

        if self.context_only:
            if str(self.image_format).lower() == "artifact":
                raise UsageError(
                    "--context-only writes a Containerfile context, which cannot make an artifact",
                    "drop --format artifact, or --context-only",
                )
            result = write_build_context(
                directories,
                self.tag,
                self.context_only,
                include_launchers=self.include_launchers,
                autotune=tuned,
                source=self.layout(),
                mount_path=self.mount_path,
            )
            print(
                f"tcv-build: wrote {result.out} ({result.entries} kernels); "
                f"build it with: buildah build --timestamp 0 -t {self.tag} {result.out}",
                file=sys.stderr,
            )
            return 0
        with sigterm_as_interrupt():
            built = create_image(
                directories,
                self.tag,
                image_format=str(self.image_format).lower(),
                push=self.push,
                registry=self.registry_options(),
                include_launchers=self.include_launchers,
                split_by_target=self.split_by_target,
                autotune=tuned,
                source=self.layout(),
                mount_path=self.mount_path,
            )
        print(built.digest)
        return 0

    def layout(self) -> str | None:
        return str(self.source).lower() if self.source else None


def main() -> None:
    """Console-script entry point."""
    from tcv.cli.base import run_main

    run_main(TcvBuild)
