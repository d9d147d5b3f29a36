"""NVIDIA and AMD display controllers from udev (pyudev): cheap, no driver library.

This is the first and fastest discovery source: which GPUs the PCI bus has, their
kernel driver, PCI address and device nodes. It does not know the architecture
(the product name is no guide: the Go tools read MI300 as gfx90c); that comes from
the KFD topology (AMD) or the driver libraries.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)

VENDORS = {0x10DE: "cuda", 0x1002: "hip"}  # NVIDIA, AMD
VENDOR_NAMES = {"cuda": "NVIDIA", "hip": "AMD"}
# PCI base class 0x03: display controller (VGA 0x0300, 3D 0x0302, other 0x0380).
DISPLAY_CLASS = 0x03


class UdevUnavailable(Exception):
    """libudev cannot be loaded or sysfs cannot be enumerated."""


@dataclass(frozen=True)
class PciGpu:
    backend: str  # "cuda" for NVIDIA, "hip" for AMD
    pci_address: str  # 0000:3b:00.0
    device_id: int
    driver: str | None
    name: str
    device_nodes: tuple[str, ...] = ()


def _int_attr(device, name: str) -> int | None:
    try:
        return int(device.attributes.asstring(name), 16)
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def nvidia_device_nodes(pci_address: str) -> tuple[str, ...]:
    """``/dev/nvidiaN`` for an NVIDIA GPU: the minor is in the driver's procfs entry."""
    path = f"/proc/driver/nvidia/gpus/{pci_address}/information"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            m = re.search(r"^Device Minor:\s*(\d+)", fh.read(), re.MULTILINE)
    except OSError:
        return ()
    return (f"/dev/nvidia{m.group(1)}",) if m else ()


def pci_gpus() -> list[PciGpu]:
    """NVIDIA (0x10de) and AMD (0x1002) display/3D controllers, in PCI order.

    Raises :class:`UdevUnavailable` when udev cannot be used at all (no libudev,
    no sysfs); an empty list means udev works and sees no such device.
    """
    try:
        import pyudev

        context = pyudev.Context()
        pci = list(context.list_devices(subsystem="pci"))
    except (ImportError, OSError) as err:
        raise UdevUnavailable(str(err)) from err
    if not pci:
        # Every Linux machine with sysfs has PCI devices (host bridges at least);
        # none means this is no real view of the hardware (sysfs hidden or absent).
        raise UdevUnavailable("udev lists no PCI device at all")
    found = []
    for dev in pci:
        vendor = _int_attr(dev, "vendor")
        if vendor not in VENDORS:
            continue
        klass = _int_attr(dev, "class")
        if klass is None or klass >> 16 != DISPLAY_CLASS:
            continue
        backend = VENDORS[vendor]
        address = dev.sys_name.lower()
        device_id = _int_attr(dev, "device") or 0
        name = dev.properties.get("ID_MODEL_FROM_DATABASE") or (
            f"{VENDOR_NAMES[backend]} device {vendor:04x}:{device_id:04x}"
        )
        found.append(
            PciGpu(backend, address, device_id, dev.driver, name, _drm_nodes(context, dev))
        )
    found.sort(key=lambda g: g.pci_address)
    out = []
    for g in found:
        if g.backend == "cuda":
            extra = nvidia_device_nodes(g.pci_address)
            g = PciGpu(
                g.backend, g.pci_address, g.device_id, g.driver, g.name, g.device_nodes + extra
            )
        out.append(g)
    return out


def _drm_nodes(context, pci_device) -> tuple[str, ...]:
    """The DRM card/render nodes of one PCI device (``/dev/dri/renderD128``)."""
    nodes = []
    for child in context.list_devices(subsystem="drm", parent=pci_device):
        if child.device_node:
            nodes.append(child.device_node)
    return tuple(sorted(nodes))
