"""This host's accelerators: overrides first, else detection, cheapest source first.

Order (docs/spec.md §2):

1. ``--gpu SPEC`` (``specs``), else ``$TCV_GPUS`` (``;``-separated SPECs): no
   detection at all, for build hosts and CI.
2. udev (pyudev): NVIDIA/AMD display controllers on the PCI bus, their driver,
   address and device nodes; no driver library loaded.
3. KFD topology: the exact gfx arch of each AMD GPU, without ROCm.
4. libcuda (cffi), only when udev saw an NVIDIA GPU, ``/dev/nvidiactl`` exists, or
   udev is unusable: compute capability, warp size, name, UUID, driver CUDA version.
5. libamdhip64 (cffi), only for an AMD GPU whose arch KFD did not give, or when
   udev and KFD are both unusable.

A host where udev sees no NVIDIA or AMD display controller loads no driver
library at all, which keeps ``tcv gpus`` and the hook fast there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tcv.gpu import kfd, udev
from tcv.gpu.model import Gpu, HostGpus
from tcv.gpu.spec import (
    default_warp_size,
    format_cuda_version,
    parse_cuda_version,
    parse_gpu_specs,
    split_specs,
)

if TYPE_CHECKING:
    from tcv.gpu.hip import HipDevice

log = logging.getLogger(__name__)

NVIDIA_CONTROL_NODE = "/dev/nvidiactl"
KFD_NODE = "/dev/kfd"


def host_gpus(
    specs: Sequence[str] | None = None,
    cuda_driver: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
) -> HostGpus:
    """The GPUs TCV checks kernels against, and the CUDA version of the host driver.

    ``specs`` (``--gpu``) win, else ``TCV_GPUS`` in ``env``, else detection.
    ``cuda_driver`` (``--cuda-driver``), else ``TCV_CUDA_DRIVER`` in ``env``, sets the
    CUDA version for the PTX rule; otherwise it comes from ``cuDriverGetVersion``.
    Raises :class:`~tcv.errors.UsageError` for a bad SPEC or version.
    """
    driver_text = cuda_driver or env.get("TCV_CUDA_DRIVER") or None
    driver = parse_cuda_version(driver_text) if driver_text else None
    if specs:
        gpus = parse_gpu_specs(specs)
        return _with_driver(HostGpus(gpus, driver, ("GPUs given with --gpu",)), driver)
    env_specs = split_specs([env.get("TCV_GPUS", "")])
    if env_specs:
        gpus = parse_gpu_specs(env_specs)
        return _with_driver(HostGpus(gpus, driver, ("GPUs given in TCV_GPUS",)), driver)
    host = detect()
    return _with_driver(host, driver) if driver else host


def _with_driver(host: HostGpus, driver: tuple[int, int] | None) -> HostGpus:
    """Record the CUDA version on the CUDA GPUs too, so ``tcv gpus`` shows it."""
    if driver is None:
        return host
    text = format_cuda_version(driver)
    gpus = tuple(replace(g, driver=text) if g.backend == "cuda" else g for g in host.gpus)
    return HostGpus(gpus, driver, host.notes)


def detect() -> HostGpus:
    """Detect the host's GPUs (see the module docstring for the order)."""
    notes: list[str] = []
    try:
        pci: list[udev.PciGpu] | None = udev.pci_gpus()
    except udev.UdevUnavailable as err:
        log.debug("udev unavailable: %s", err)
        notes.append(f"udev unavailable ({err}); asked the driver libraries directly")
        pci = None
    nodes = kfd.kfd_nodes()
    kfd_by_pci = {n.pci_address: n for n in nodes if n.pci_address}

    nvidia = [g for g in pci or () if g.backend == "cuda"]
    amd = [g for g in pci or () if g.backend == "hip"]
    want_cuda = pci is None or bool(nvidia) or os.path.exists(NVIDIA_CONTROL_NODE)
    amd_unnamed = [g for g in amd if g.pci_address not in kfd_by_pci]
    want_hip = bool(amd_unnamed) or (pci is None and not nodes and os.path.exists(KFD_NODE))

    cuda_gpus: list[Gpu] = []
    cuda_driver: tuple[int, int] | None = None
    if want_cuda:
        cuda_gpus, cuda_driver = _cuda_gpus(nvidia, notes)
    elif pci is not None:
        log.debug("udev sees no NVIDIA GPU: libcuda not loaded")

    hip_gpus = _amd_gpus(amd, pci is None, nodes, kfd_by_pci, want_hip, notes)

    gpus = [replace(g, index=i) for i, g in enumerate(cuda_gpus + hip_gpus)]
    if not gpus:
        notes.append("no NVIDIA or AMD accelerator found")
    return HostGpus(tuple(gpus), cuda_driver, tuple(notes))


def _cuda_gpus(
    nvidia: list[udev.PciGpu], notes: list[str]
) -> tuple[list[Gpu], tuple[int, int] | None]:
    from tcv.gpu import cuda

    report = cuda.probe()
    log.debug("libcuda: %s", report)
    if report.status == "error":
        msg = report.message
        notes.append(msg if msg.startswith("libcuda") else f"libcuda.so.1: {msg}")
    elif report.status == "absent" and nvidia:
        notes.append(
            f"an NVIDIA GPU is present but libcuda.so.1 cannot be loaded ({report.message}) "
            "— install the NVIDIA driver, or pass --gpu cuda:NN"
        )
    elif report.status == "no-device" and nvidia:
        notes.append("libcuda.so.1 reports no CUDA device (check CUDA_VISIBLE_DEVICES)")
    by_pci = {g.pci_address: g for g in nvidia}
    driver_text = format_cuda_version(report.driver) if report.driver else None
    out = []
    seen = set()
    for d in report.devices:
        seen_pci = by_pci.get(d.pci_address or "")
        if seen_pci is not None:
            seen.add(seen_pci.pci_address)
        out.append(
            Gpu(
                index=0,
                backend="cuda",
                arch=d.arch,
                warp_size=d.warp_size,
                name=d.name or (seen_pci.name if seen_pci else ""),
                driver=driver_text,
                source="cuda",
                pci_address=d.pci_address,
                device_nodes=seen_pci.device_nodes if seen_pci else (),
                uuid=d.uuid,
                max_shared_memory=d.max_shared_memory,
            )
        )
    # NVIDIA GPUs udev saw but libcuda did not name (no driver library, hidden by
    # CUDA_VISIBLE_DEVICES): listed, with an unknown arch that fits no kernel.
    for g in nvidia:
        if g.pci_address not in seen:
            out.append(Gpu(0, "cuda", "", 0, g.name, None, "udev", g.pci_address, g.device_nodes))
    out.sort(key=lambda g: g.pci_address or "")
    return out, report.driver


def _amd_gpus(
    amd: list[udev.PciGpu],
    no_udev: bool,
    nodes: list[kfd.KfdNode],
    kfd_by_pci: Mapping[str, kfd.KfdNode],
    want_hip: bool,
    notes: list[str],
) -> list[Gpu]:
    hip_by_pci: dict[str, HipDevice] = {}
    hip_devices: list[HipDevice] = []
    hip_driver = None
    if want_hip:
        from tcv.gpu import hip

        report = hip.probe()
        log.debug("libamdhip64: %s", report)
        if report.status == "absent":
            notes.append(
                "an AMD GPU's arch is not in the KFD topology and libamdhip64 cannot be "
                f"loaded ({report.message}) — install ROCm, or pass --gpu hip:gfxNNN"
            )
        elif report.status != "ok":
            notes.append(f"{report.library or 'libamdhip64'}: {report.message}")
        hip_devices = list(report.devices)
        hip_by_pci = {d.pci_address: d for d in hip_devices if d.pci_address}
        hip_driver = report.driver

    out: list[Gpu] = []
    if no_udev:
        # No PCI view: KFD nodes, else what HIP reports, stand on their own.
        for n in nodes:
            out.append(
                Gpu(
                    0,
                    "hip",
                    n.arch,
                    default_warp_size("hip", n.arch),
                    "",
                    None,
                    "kfd",
                    n.pci_address,
                    (n.render_node, KFD_NODE) if n.render_node else (KFD_NODE,),
                )
            )
        if not nodes:
            for d in hip_devices:
                out.append(
                    Gpu(
                        0,
                        "hip",
                        d.arch,
                        d.warp_size,
                        d.name,
                        hip_driver,
                        "hip",
                        d.pci_address,
                        (KFD_NODE,),
                    )
                )
        return out
    for g in amd:
        nodes_of = g.device_nodes
        node = kfd_by_pci.get(g.pci_address)
        if node is not None:
            out.append(
                Gpu(
                    0,
                    "hip",
                    node.arch,
                    default_warp_size("hip", node.arch),
                    g.name,
                    None,
                    "kfd",
                    g.pci_address,
                    nodes_of,
                )
            )
            continue
        dev = hip_by_pci.get(g.pci_address)
        if dev is not None:
            out.append(
                Gpu(
                    0,
                    "hip",
                    dev.arch,
                    dev.warp_size,
                    dev.name or g.name,
                    hip_driver,
                    "hip",
                    g.pci_address,
                    nodes_of,
                )
            )
            continue
        out.append(Gpu(0, "hip", "", 0, g.name, None, "udev", g.pci_address, nodes_of))
    return out


def select_visible(
    host: HostGpus, device_nodes: Sequence[str], nvidia_visible_devices: str | None
) -> HostGpus:
    """The GPUs a container was given: by its device nodes and NVIDIA_VISIBLE_DEVICES.

    - an NVIDIA GPU is visible when its ``/dev/nvidiaN`` (or DRM node) is among
      ``device_nodes`` or NVIDIA_VISIBLE_DEVICES selects it (``all``, indices in
      PCI order as nvidia-smi numbers them, or ``GPU-…`` UUIDs); ``none``/``void``
      select none; when its node is unknown, N is its place in PCI order;
    - an AMD GPU is visible when one of its ``/dev/dri`` nodes is among
      ``device_nodes``, or, when its nodes are unknown, when ``/dev/kfd`` is.

    Overrides (``--gpu``, ``TCV_GPUS``) describe no real device and pass through,
    except that NVIDIA_VISIBLE_DEVICES ``none``/``void`` removes the CUDA ones.
    """
    env = (nvidia_visible_devices or "").strip()
    env_none = env.lower() in ("none", "void")
    if host.gpus and all(g.source == "override" for g in host.gpus):
        if not env_none:
            return host
        kept = tuple(g for g in host.gpus if g.backend != "cuda")
        return HostGpus(kept, host.cuda_driver, (*host.notes, f"NVIDIA_VISIBLE_DEVICES={env}"))

    given = {os.path.normpath(n) for n in device_nodes}
    selectors = set() if env_none or not env else {s.strip().lower() for s in env.split(",")}
    nvidia_order = [g for g in host.gpus if g.backend == "cuda"]
    nvidia_order.sort(key=lambda g: g.pci_address or f"~{g.index:04d}")
    visible = []
    for g in host.gpus:
        if g.source == "override":
            visible.append(g)
        elif g.backend == "cuda":
            # Without the driver's procfs entry the node is unknown: NVIDIA numbers
            # /dev/nvidiaN like nvidia-smi, in PCI order.
            nodes = g.device_nodes or (f"/dev/nvidia{nvidia_order.index(g)}",)
            by_node = any(n in given for n in nodes)
            by_env = "all" in selectors or (
                str(nvidia_order.index(g)) in selectors
                or (g.uuid is not None and g.uuid.lower() in selectors)
            )
            if by_node or by_env:
                visible.append(g)
        else:
            dri = [n for n in g.device_nodes if n.startswith("/dev/dri/")]
            if (dri and any(n in given for n in dri)) or (not dri and KFD_NODE in given):
                visible.append(g)
    return HostGpus(
        tuple(visible), host.cuda_driver, (*host.notes, "restricted to the container's devices")
    )
