"""Plain data for accelerators, shared by discovery and the compatibility engine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gpu:
    """One accelerator.

    ``arch``: CUDA ``major*10+minor`` as a string (``"90"``) or the HIP
    ``gcnArchName`` before the first ``:`` (``"gfx942"``). ``driver``: for CUDA
    the CUDA version the driver supports (``"12.4"``), for HIP the runtime's
    driver version, or None. ``source``: where it came from (``"override"``,
    ``"cuda"``, ``"hip"``, ``"udev"``, ``"kfd"``). ``arch`` ``""`` (and ``warp_size``
    0) when a device was seen but nothing named its architecture.
    """

    index: int
    backend: str
    arch: str
    warp_size: int
    name: str = ""
    driver: str | None = None
    source: str = "override"
    pci_address: str | None = None
    device_nodes: tuple[str, ...] = ()
    uuid: str | None = None
    # Largest shared memory one block may use (CUDA opt-in limit), when known.
    max_shared_memory: int | None = None


@dataclass(frozen=True)
class HostGpus:
    """What the host offers: its GPUs and the CUDA version its driver supports."""

    gpus: tuple[Gpu, ...] = ()
    cuda_driver: tuple[int, int] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
