"""``tcv gpus``: list this host's accelerators as TCV sees them."""

from __future__ import annotations

from typing import Any

from tcv.cli.base import TcvApplication
from tcv.cli.options import GpuOptions, JsonOption
from tcv.gpu.model import Gpu, HostGpus
from tcv.output import render_json, render_table

NO_GPU_HINT = (
    "no accelerator found on this host — to check or extract for another machine, "
    "pass --gpu SPEC (cuda:90, cuda:90:32, hip:gfx942, hip:gfx1100:32) or set TCV_GPUS"
)


def gpu_json(g: Gpu) -> dict[str, Any]:
    """One GPU as in docs/spec.md §2 (``arch``/``warp_size`` null when unknown)."""
    return {
        "index": g.index,
        "backend": g.backend,
        "arch": g.arch or None,
        "warp_size": g.warp_size or None,
        "name": g.name,
        "driver": g.driver,
        "source": g.source,
    }


def host_from_options(app: Any) -> HostGpus:
    """The host's GPUs for a command with :class:`GpuOptions`; the switches may also
    be given to the top-level ``tcv`` before the command name."""
    from tcv.gpu.discover import host_gpus

    parent = getattr(app, "parent", None)
    specs = app.gpu_specs or (getattr(parent, "gpu_specs", None) or [])
    driver = app.cuda_driver or getattr(parent, "cuda_driver", None)
    return host_gpus(specs or None, driver)


def render_gpus(host: HostGpus) -> str:
    lines = []
    if host.gpus:
        rows = [
            (
                g.index,
                g.backend,
                g.arch or "?",
                g.warp_size or "?",
                g.name,
                g.driver,
                g.source,
                g.pci_address,
            )
            for g in host.gpus
        ]
        lines.append(
            render_table(
                ("INDEX", "BACKEND", "ARCH", "WARP", "NAME", "DRIVER", "SOURCE", "PCI"), rows
            )
        )
    else:
        lines.append(NO_GPU_HINT)
    if host.cuda_driver and host.gpus:
        lines.append(f"CUDA driver version: {host.cuda_driver[0]}.{host.cuda_driver[1]}")
    lines.extend(f"note: {n}" for n in host.notes if host.gpus or "no NVIDIA" not in n)
    return "\n".join(lines)


class Gpus(TcvApplication, GpuOptions, JsonOption):
    """List this host's accelerators as TCV sees them.

    Detection goes from the cheapest source to the costliest: udev lists the
    NVIDIA and AMD display controllers on the PCI bus (no driver library loaded);
    the KFD topology in sysfs gives each AMD GPU's exact gfx architecture;
    libcuda.so.1 (loaded only when an NVIDIA GPU is present) gives compute
    capability, warp size, name and the CUDA version the driver supports;
    libamdhip64 is asked only about AMD GPUs the KFD topology does not name.
    Driver libraries are probed in a child process, so a broken one cannot crash
    tcv. A library that is absent or sees no device is not an error.

    --gpu SPEC (repeatable) or $TCV_GPUS (";"-separated) replaces detection:
    cuda:90 (compute capability 9.0, warp 32), hip:gfx942 (warp 64 on CDNA/GCN,
    32 on RDNA gfx10/11/12), an explicit third field sets the warp size.
    --cuda-driver X.Y (or $TCV_CUDA_DRIVER) sets the CUDA version for the PTX rule.

    The table shows index, backend, arch, warp size, name, driver, where the
    answer came from (udev, kfd, cuda, hip, override) and the PCI address; "?"
    marks a GPU seen on the bus whose architecture no source could name. With
    --json: {"gpus": [{"index", "backend", "arch", "warp_size", "name", "driver",
    "source"}]}, arch and warp_size null when unknown.

    Exit status: 0, also when no accelerator is found; 3 for a bad --gpu SPEC or
    --cuda-driver.
    """

    USAGE = "    tcv gpus [--gpu SPEC]... [--cuda-driver X.Y] [--json]\n"

    def main(self) -> int:
        host = host_from_options(self)
        if self.json:
            print(render_json({"gpus": [gpu_json(g) for g in host.gpus]}))
        else:
            print(render_gpus(host))
        return 0
