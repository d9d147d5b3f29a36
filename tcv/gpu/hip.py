"""AMD GPUs from the HIP runtime: cffi (ABI mode) to ``libamdhip64.so``.

Used when the KFD topology cannot name an AMD GPU's arch (no KFD in sysfs). The
library is opened by soname, trying the versioned names, inside a forked probe
(:mod:`tcv.gpu.probe`). Without a GPU ``hipGetDeviceCount`` answers 100
(hipErrorNoDevice): a normal "none found".

``hipDeviceProp_t`` changed layout in ROCm 6.0 (``hipGetDevicePropertiesR0600``),
so the arch name is not read through a struct declaration: the properties are
written into a zeroed buffer larger than any layout, ``gcnArchName`` is taken at
its ROCm 5 offset when it holds a gfx name there, else found as the gfx name in
the buffer. The count, versions, name, PCI id and warp size come from calls
whose ABI is stable.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from typing import Any

from tcv.gpu.probe import DEFAULT_TIMEOUT, run_isolated
from tcv.gpu.spec import default_warp_size, hip_arch

SONAMES = ("libamdhip64.so", "libamdhip64.so.7", "libamdhip64.so.6", "libamdhip64.so.5")

CDEF = """
typedef int hipError_t;
hipError_t hipGetDeviceCount(int *count);
hipError_t hipDriverGetVersion(int *version);
hipError_t hipDeviceGetName(char *name, int len, int device);
hipError_t hipDeviceGetPCIBusId(char *bus_id, int len, int device);
hipError_t hipDeviceGetAttribute(int *value, int attr, int device);
hipError_t hipGetDeviceProperties(void *prop, int device);
hipError_t hipGetDevicePropertiesR0600(void *prop, int device);
"""

HIP_SUCCESS = 0
HIP_ERROR_NO_DEVICE = 100
# hipDeviceAttribute_t: the CUDA-compatible block, unchanged since ROCm 5.0.
ATTR_WARP_SIZE = 87
# offsetof(hipDeviceProp_t, gcnArchName) in ROCm 5.x (hip_runtime_api.h).
R0000_GCN_ARCH_NAME = 396
PROPS_BUFFER = 16384
_GFX = re.compile(rb"gfx[0-9a-f]{3,4}(?::[A-Za-z0-9_+\-:]*)?(?=\x00)")


@dataclass(frozen=True)
class HipDevice:
    ordinal: int
    name: str
    arch: str
    warp_size: int
    pci_address: str | None


@dataclass(frozen=True)
class HipReport:
    """What libamdhip64 said: ``status`` is ``ok``, ``absent``, ``no-device`` or ``error``."""

    status: str
    library: str | None = None
    driver: str | None = None
    devices: tuple[HipDevice, ...] = ()
    message: str = ""


def arch_from_properties(buf: bytes) -> str | None:
    """The gfx arch in a raw ``hipDeviceProp_t`` of any ROCm layout."""
    at = buf[R0000_GCN_ARCH_NAME : R0000_GCN_ARCH_NAME + 256]
    m = _GFX.match(at)
    if m is None:
        m = _GFX.search(buf)
    return hip_arch(m.group(0).decode()) if m else None


def hip_version_text(value: int) -> str:
    """HIP's major*10000000 + minor*100000 + patch (50221153) -> ``5.2.21153``."""
    return f"{value // 10000000}.{(value // 100000) % 100}.{value % 100000}"


def _query() -> dict[str, Any]:
    """Runs in the probe child: everything libamdhip64 says, as plain JSON."""
    soname = None
    errors = []
    for candidate in SONAMES:
        try:
            ctypes.CDLL(candidate)  # plain dlopen: no find_library subprocesses
        except OSError as err:
            errors.append(str(err))
            continue
        soname = candidate
        break
    if soname is None:
        return {"status": "absent", "message": errors[-1] if errors else "not found"}
    # Pre-parsed declarations (tcv/gpu/ffibuild.py): no pycparser at run time.
    from tcv.gpu._hip_ffi import ffi

    lib = ffi.dlopen(soname)
    value = ffi.new("int *")
    driver = hip_version_text(value[0]) if lib.hipDriverGetVersion(value) == HIP_SUCCESS else None
    rc = lib.hipGetDeviceCount(value)
    if rc == HIP_ERROR_NO_DEVICE or (rc == HIP_SUCCESS and value[0] == 0):
        return {
            "status": "no-device",
            "library": soname,
            "driver": driver,
            "message": f"hipGetDeviceCount: no device ({rc})",
        }
    if rc != HIP_SUCCESS:
        return {
            "status": "error",
            "library": soname,
            "driver": driver,
            "message": f"hipGetDeviceCount failed with hipError {rc}",
        }
    try:
        get_props = lib.hipGetDevicePropertiesR0600
    except AttributeError:  # ROCm 5: one layout, one symbol
        get_props = lib.hipGetDeviceProperties
    devices = []
    text = ffi.new("char[256]")
    for ordinal in range(value[0]):
        buf = ffi.new(f"char[{PROPS_BUFFER}]")
        if get_props(buf, ordinal) != HIP_SUCCESS:
            continue
        arch = arch_from_properties(bytes(ffi.buffer(buf)))
        if arch is None:
            continue
        warp = ffi.new("int *")
        if lib.hipDeviceGetAttribute(warp, ATTR_WARP_SIZE, ordinal) != HIP_SUCCESS or warp[
            0
        ] not in (32, 64):
            warp[0] = default_warp_size("hip", arch)
        name = (
            ffi.string(text).decode(errors="replace")
            if lib.hipDeviceGetName(text, 256, ordinal) == HIP_SUCCESS
            else ""
        )
        pci = (
            ffi.string(text).decode(errors="replace").lower()
            if lib.hipDeviceGetPCIBusId(text, 256, ordinal) == HIP_SUCCESS
            else None
        )
        devices.append(
            {
                "ordinal": ordinal,
                "name": name,
                "arch": arch,
                "warp_size": warp[0],
                "pci_address": pci,
            }
        )
    return {"status": "ok", "library": soname, "driver": driver, "devices": devices}


def report_from_json(data: dict[str, Any]) -> HipReport:
    return HipReport(
        status=data.get("status", "error"),
        library=data.get("library"),
        driver=data.get("driver"),
        devices=tuple(HipDevice(**d) for d in data.get("devices", ())),
        message=data.get("message", ""),
    )


def probe(*, timeout: float = DEFAULT_TIMEOUT) -> HipReport:
    """Ask libamdhip64 for its devices, in a forked child; never raises for driver trouble."""
    outcome = run_isolated(_query, timeout=timeout)
    if outcome.data is None:
        return HipReport("error", message=f"libamdhip64 {outcome.error}")
    return report_from_json(outcome.data)
