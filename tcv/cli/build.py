"""``tcv-build``: the non-interactive builder for pipelines and CI (SPEC §6)."""

from __future__ import annotations

import sys

from plumbum import cli

from tcv.cli.base import TcvApplication, sigterm_as_interrupt
from tcv.cli.options import RegistrySwitches


class TcvBuild(TcvApplication, RegistrySwitches):
    """Build the cache image of a Triton cache, for pipelines and CI.

    DIR is a Triton cache root (the directory holding one KEY directory per
    compiled kernel). tcv-build builds exactly the image `tcv -c -i IMAGE -d
    DIR` builds: one reproducible layer holding io.triton.cache/<KEY>/ and
    io.triton.manifest/manifest.json, and the cache.triton.image/* labels. It
    never prompts; on success it prints the image's manifest digest
    (sha256:...) on stdout and nothing else there: the registry's digest with
    --push, else the digest in local storage. Messages go to stderr.

    With --context-only OUT nothing is built: OUT (a new or empty directory)
    receives a Containerfile (FROM scratch, one COPY, the LABEL lines) and the
    files, so any Containerfile builder makes an equivalent image, e.g.
    `buildah build --timestamp 0 -t IMAGE OUT`. Nothing is printed on stdout.

    The layer is reproducible: the same cache gives the same layer digest.
    File times in the layer and the image's creation time are
    $SOURCE_DATE_EPOCH, or 0 when unset.

    Exit status: 0 built (and pushed); 2 the build or push failed; 3 bad usage
    (missing DIR, invalid IMAGE, OUT not empty); 5 the registry could not be
    reached on --push. Every failure is one line on stderr.
    """

    PROGNAME = "tcv-build"
    USAGE = "    tcv-build DIR -t IMAGE [--context-only OUT] [--push] [options]\n"

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
        cli.Set("oci", "docker", case_sensitive=False),
        default="oci",
        help="image and layer media types: oci (application/vnd.oci.image.layer.v1.tar+gzip "
        "when pushed) or docker (application/vnd.docker.image.rootfs.diff.tar.gzip)",
    )
    include_launchers = cli.Flag(
        ["--include-launchers"],
        help="also pack the host-specific launcher/utils .so directories",
    )

    def main(self, directory: str) -> int:
        from tcv.create import create_image, write_build_context

        if self.context_only:
            result = write_build_context(
                directory,
                self.tag,
                self.context_only,
                include_launchers=self.include_launchers,
            )
            print(
                f"tcv-build: wrote {result.out} ({result.entries} kernels); "
                f"build it with: buildah build --timestamp 0 -t {self.tag} {result.out}",
                file=sys.stderr,
            )
            return 0
        with sigterm_as_interrupt():
            built = create_image(
                directory,
                self.tag,
                image_format=str(self.image_format).lower(),
                push=self.push,
                registry=self.registry_options(),
                include_launchers=self.include_launchers,
            )
        print(built.digest)
        return 0


def main() -> None:
    """Console-script entry point."""
    from tcv.cli.base import run_main

    run_main(TcvBuild)
