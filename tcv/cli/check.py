"""``tcv check``: per-kernel verdict of a cache or image against this host."""

from __future__ import annotations

from pathlib import Path

from plumbum import cli

from tcv.cache.kernel import KernelEntry
from tcv.cli.base import TcvApplication, fail
from tcv.cli.gpus import NO_GPU_HINT, host_from_options
from tcv.cli.options import GpuOptions, JsonOption, RegistrySwitches
from tcv.compat import CheckResult, check_entries, consumer_triton_version
from tcv.errors import EXIT_INCOMPATIBLE, EXIT_OK, UsageError
from tcv.gpu.model import HostGpus
from tcv.output import render_json, render_table

_KEY_WIDTH = 16


def _short(key: str) -> str:
    return key if len(key) <= _KEY_WIDTH else key[: _KEY_WIDTH - 1] + "…"


def _target(e: KernelEntry) -> str:
    warp = "?" if e.warp_size is None else str(e.warp_size)
    return f"{e.backend or '?'}:{e.arch or '?'}:{warp}"


def render_check(
    entries: list[KernelEntry], result: CheckResult, host: HostGpus, consumer: str | None
) -> str:
    by_key = {e.key: e for e in entries}
    rows = []
    for v in result.verdicts:
        e = by_key[v.key]
        fits = "fits GPU " + ", ".join(str(i) for i in v.gpus) if v.compatible else v.reason
        rows.append((_short(v.key), e.name, _target(e), e.triton_version, fits))
    lines = []
    if rows:
        lines.append(render_table(("KEY", "NAME", "TARGET", "TRITON", "VERDICT"), rows))
        lines.append("")
    lines.append(f"{len(result.compatible)} of {len(result.verdicts)} kernels fit this host")
    for g in host.gpus:
        label = f"{g.backend}:{g.arch or '?'}:{g.warp_size or '?'}"
        name = f" {g.name}" if g.name and g.name != f"{g.backend}:{g.arch}" else ""
        n = len(result.matched(g.index))
        lines.append(f"  GPU {g.index} {label}{name}: {n} kernel{'' if n == 1 else 's'}")
    if not host.gpus:
        lines.append(NO_GPU_HINT)
    if host.cuda_driver:
        lines.append(f"CUDA driver version: {host.cuda_driver[0]}.{host.cuda_driver[1]}")
    elif any(g.backend == "cuda" for g in host.gpus):
        lines.append("CUDA driver version: unknown, PTX ISA not checked (pass --cuda-driver X.Y)")
    lines.append(
        f"consuming Triton: {consumer}"
        if consumer
        else "consuming Triton: unknown (entries of every Triton version are counted)"
    )
    return "\n".join(lines)


class Check(TcvApplication, GpuOptions, JsonOption, RegistrySwitches):
    """Per-kernel verdict of a Triton cache or a cache image against this host.

    DIR is a Triton cache root (default: $TRITON_CACHE_DIR, else
    $TRITON_HOME/.triton/cache, else ~/.triton/cache); -i IMAGE checks a cache
    image instead, reading only its manifest.

    A kernel fits a GPU when the backend (cuda/hip), the architecture (CUDA
    major*10+minor; HIP gcnArchName before the first ":") and the warp size are
    equal and, for CUDA, the host driver's CUDA version accepts the kernel's PTX
    ISA (PTX 8.4 needs CUDA 12.4, 8.7 needs 12.8, 9.y needs 13.y). A host with
    several GPUs, of one vendor or both, gets the union. When the consuming
    Triton is known (--triton-version, else the triton installed in this Python
    environment), kernels built by another Triton version are reported as never
    hit: Triton reuses an entry only when its key matches, and the key includes
    the Triton version. --triton-version any turns that rule off.

    The GPUs come from detection (see tcv gpus) or from --gpu SPEC / $TCV_GPUS;
    the CUDA version from the driver or --cuda-driver X.Y / $TCV_CUDA_DRIVER.

    The table shows each kernel's key (shortened), name, target, Triton version
    and verdict: the GPUs it fits, or why it fits none; then how many kernels fit
    each GPU. With --json: {"compatible": [key], "incompatible": [{"key",
    "reason"}]}.

    Exit status: 0 when at least one kernel fits, 4 when none does (also when
    there are none), 3 for bad usage (DIR missing, bad SPEC), 5 when the image
    cannot be found.
    """

    USAGE = (
        "    tcv check [DIR] [--gpu SPEC]... [--cuda-driver X.Y] [--triton-version V] [--json]\n"
        "    tcv check -i IMAGE [--gpu SPEC]... [options]\n"
    )

    image = cli.SwitchAttr(
        ["-i", "--image"],
        str,
        argname="IMAGE",
        default=None,
        help="check a cache image (registry name, containers-storage:, oci:, oci-archive:, "
        "docker-archive:) instead of a directory",
    )

    def _entries(
        self, directory: str | None, host: HostGpus, consumer: str | None
    ) -> tuple[str, list[KernelEntry]]:
        if self.image is not None:
            if directory is not None:
                raise UsageError(
                    f"give a cache DIR or -i IMAGE, not both ({directory!r} and {self.image!r})",
                    "run 'tcv check --help' for usage",
                )
            from tcv.extract import image_entries

            # Of a fleet index only the images whose targets fit this host are pulled.
            entries = image_entries(self.image, self.registry_options(), host, consumer)
            return self.image, list(entries)
        from tcv.cache.scan import default_cache_dir, scan_layout

        root = Path(directory) if directory is not None else default_cache_dir()
        return str(root), list(scan_layout(root).entries)

    # No annotation on DIR: plumbum would try to convert with "str | None".
    def main(self, directory=None) -> int:
        host = host_from_options(self)
        parent = getattr(self, "parent", None)
        consumer = consumer_triton_version(
            self.triton_version or getattr(parent, "triton_version", None)
        )
        source, entries = self._entries(directory, host, consumer)
        result = check_entries(entries, host, triton_version=consumer)
        if self.json:
            print(
                render_json(
                    {
                        "compatible": result.compatible,
                        "incompatible": [{"key": k, "reason": r} for k, r in result.incompatible],
                    }
                )
            )
        else:
            print(render_check(entries, result, host, consumer))
        if result.compatible:
            return EXIT_OK
        if not entries:
            fail(
                "tcv check", f"no kernels in {source}: nothing can fit this host", EXIT_INCOMPATIBLE
            )
        else:
            fail(
                "tcv check",
                f"none of the {len(entries)} kernels in {source} fits this host's GPUs — "
                "see the reasons above",
                EXIT_INCOMPATIBLE,
            )
        return EXIT_INCOMPATIBLE
