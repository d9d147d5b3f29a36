"""AMD GPUs from the KFD topology in sysfs: the exact gfx arch, without ROCm.

The amdgpu kernel driver describes every compute node in
``/sys/class/kfd/kfd/topology/nodes/<n>/properties``, one ``name value`` pair a
line. ``gfx_target_version`` is major*10000 + minor*100 + stepping, the stepping
written in hex in the gfx name (90402 -> gfx942, 90010 -> gfx90a); CPU nodes
have 0. ``location_id`` and ``domain`` give the PCI address, ``drm_render_minor``
the render node. The earlier Go tools guessed the arch from the product name
(MI300 became gfx90c); this reads what the driver says.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

TOPOLOGY = "/sys/class/kfd/kfd/topology/nodes"
AMD_VENDOR_ID = 0x1002


@dataclass(frozen=True)
class KfdNode:
    node: int
    arch: str
    pci_address: str | None
    render_node: str | None
    device_id: int | None
    wave_front_size: int | None


def gfx_name(gfx_target_version: int) -> str | None:
    """90402 -> ``gfx942``; 90010 -> ``gfx90a``; 110000 -> ``gfx1100``; 0 -> None."""
    if gfx_target_version <= 0:
        return None
    major = gfx_target_version // 10000
    minor = (gfx_target_version // 100) % 100
    stepping = gfx_target_version % 100
    return f"gfx{major}{minor:x}{stepping:x}"


def parse_properties(text: str) -> dict[str, int]:
    """The ``name value`` lines of a topology node's ``properties`` file."""
    props: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                props[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return props


def pci_address(location_id: int, domain: int = 0) -> str:
    """KFD's ``location_id`` (bus << 8 | device << 3 | function) -> ``0000:c1:00.0``."""
    bus, devfn = location_id >> 8, location_id & 0xFF
    return f"{domain:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7:x}"


def node_from_properties(node: int, props: dict[str, int]) -> KfdNode | None:
    """A GPU node, or None for a CPU node or a non-AMD device."""
    arch = gfx_name(props.get("gfx_target_version", 0))
    if arch is None:
        return None
    vendor = props.get("vendor_id")
    if vendor not in (None, AMD_VENDOR_ID):
        return None
    loc = props.get("location_id")
    minor = props.get("drm_render_minor")
    return KfdNode(
        node=node,
        arch=arch,
        pci_address=pci_address(loc, props.get("domain", 0)) if loc else None,
        render_node=f"/dev/dri/renderD{minor}" if minor else None,
        device_id=props.get("device_id"),
        wave_front_size=props.get("wave_front_size"),
    )


def kfd_nodes(root: str = TOPOLOGY) -> list[KfdNode]:
    """The GPU nodes of the KFD topology; empty when there is no KFD (no amdgpu)."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    out = []
    for name in sorted(names, key=lambda n: (len(n), n)):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(root, name, "properties"), encoding="ascii") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as err:
            log.debug("cannot read KFD node %s: %s", name, err)
            continue
        node = node_from_properties(int(name), parse_properties(text))
        if node is not None:
            out.append(node)
    return out
