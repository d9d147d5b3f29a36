"""NVIDIA GPUs from the CUDA driver API: cffi (ABI mode) to ``libcuda.so.1``.

The library is opened by its soname, so the normal loader search and
``LD_LIBRARY_PATH`` apply, and only inside a forked probe (:mod:`tcv.gpu.probe`):
a driver library that crashes costs a note, not the command. Absent library and
"no device" are normal outcomes.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from tcv.gpu.probe import DEFAULT_TIMEOUT, run_isolated
from tcv.gpu.spec import cuda_version_from_int

SONAME = "libcuda.so.1"

CDEF = """
typedef int CUresult;
typedef int CUdevice;
typedef struct { char bytes[16]; } CUuuid;
CUresult cuInit(unsigned int flags);
CUresult cuDriverGetVersion(int *version);
CUresult cuDeviceGetCount(int *count);
CUresult cuDeviceGet(CUdevice *device, int ordinal);
CUresult cuDeviceGetAttribute(int *value, int attrib, CUdevice device);
CUresult cuDeviceGetName(char *name, int len, CUdevice device);
CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice device);
CUresult cuGetErrorName(CUresult error, const char **name);
"""

# CUdevice_attribute values (cuda.h); stable across driver releases.
ATTR_MAX_SHARED_MEMORY_PER_BLOCK = 8
ATTR_WARP_SIZE = 10
ATTR_PCI_BUS_ID = 33
ATTR_PCI_DEVICE_ID = 34
ATTR_PCI_DOMAIN_ID = 50
ATTR_COMPUTE_CAPABILITY_MAJOR = 75
ATTR_COMPUTE_CAPABILITY_MINOR = 76
ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97

CUDA_SUCCESS = 0
CUDA_ERROR_NO_DEVICE = 100
ERROR_NAMES = {
    3: "CUDA_ERROR_NOT_INITIALIZED",
    34: "CUDA_ERROR_STUB_LIBRARY",
    35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
    46: "CUDA_ERROR_DEVICES_UNAVAILABLE",
    100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE",
    304: "CUDA_ERROR_OPERATING_SYSTEM",
    999: "CUDA_ERROR_UNKNOWN",
}
HINTS = {
    34: "this libcuda.so.1 is the CUDA toolkit's stub, not the driver's",
    35: "the kernel module and libcuda.so.1 are from different driver releases",
}


@dataclass(frozen=True)
class CudaDevice:
    ordinal: int
    name: str
    arch: str  # major*10+minor, "90"
    warp_size: int
    max_shared_memory: int | None
    uuid: str | None
    pci_address: str | None


@dataclass(frozen=True)
class CudaReport:
    """What libcuda said: ``status`` is ``ok``, ``absent``, ``no-device`` or ``error``."""

    status: str
    driver: tuple[int, int] | None = None
    devices: tuple[CudaDevice, ...] = ()
    message: str = ""


def _uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"GPU-{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _query() -> dict[str, Any]:
    """Runs in the probe child: everything libcuda says, as plain JSON."""
    try:
        # A plain dlopen by soname first: cffi's dlopen would fall back to
        # ctypes.util.find_library, which runs ldconfig and gcc.
        ctypes.CDLL(SONAME)
    except OSError as err:
        return {"status": "absent", "message": str(err)}
    # Pre-parsed declarations (tcv/gpu/ffibuild.py): no pycparser at run time.
    from tcv.gpu._cuda_ffi import ffi

    lib = ffi.dlopen(SONAME)

    def error_name(code: int) -> str:
        try:
            out = ffi.new("const char **")
            if lib.cuGetErrorName(code, out) == CUDA_SUCCESS and out[0] != ffi.NULL:
                return ffi.string(out[0]).decode()
        except AttributeError:
            pass
        return ERROR_NAMES.get(code, f"CUresult {code}")

    ver = ffi.new("int *")
    driver = ver[0] if lib.cuDriverGetVersion(ver) == CUDA_SUCCESS else None
    rc = lib.cuInit(0)
    if rc == CUDA_ERROR_NO_DEVICE:
        return {"status": "no-device", "driver": driver, "message": "cuInit: no CUDA device"}
    if rc != CUDA_SUCCESS:
        msg = f"cuInit failed with {error_name(rc)} ({rc})"
        if rc in HINTS:
            msg += f": {HINTS[rc]}"
        return {"status": "error", "driver": driver, "message": msg}
    count = ffi.new("int *")
    rc = lib.cuDeviceGetCount(count)
    if rc != CUDA_SUCCESS:
        return {
            "status": "error",
            "driver": driver,
            "message": f"cuDeviceGetCount failed with {error_name(rc)} ({rc})",
        }
    devices = []
    value = ffi.new("int *")
    name = ffi.new("char[256]")
    for ordinal in range(count[0]):
        dev = ffi.new("CUdevice *")
        if lib.cuDeviceGet(dev, ordinal) != CUDA_SUCCESS:
            continue

        def attr(code: int, handle: int = dev[0]) -> int | None:
            return value[0] if lib.cuDeviceGetAttribute(value, code, handle) == 0 else None

        major = attr(ATTR_COMPUTE_CAPABILITY_MAJOR)
        minor = attr(ATTR_COMPUTE_CAPABILITY_MINOR)
        if major is None or minor is None:
            continue
        uuid = None
        try:
            raw = ffi.new("CUuuid *")
            if lib.cuDeviceGetUuid(raw, dev[0]) == CUDA_SUCCESS:
                uuid = _uuid_text(bytes(ffi.buffer(raw.bytes)))
        except AttributeError:  # drivers before CUDA 9.2 lack the call
            pass
        bus, slot, domain = (
            attr(ATTR_PCI_BUS_ID),
            attr(ATTR_PCI_DEVICE_ID),
            attr(ATTR_PCI_DOMAIN_ID),
        )
        devices.append(
            {
                "ordinal": ordinal,
                "name": ffi.string(name).decode(errors="replace")
                if lib.cuDeviceGetName(name, 256, dev[0]) == CUDA_SUCCESS
                else "",
                "arch": str(major * 10 + minor),
                "warp_size": attr(ATTR_WARP_SIZE) or 32,
                "max_shared_memory": attr(ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
                or attr(ATTR_MAX_SHARED_MEMORY_PER_BLOCK),
                "uuid": uuid,
                "pci_address": f"{domain:04x}:{bus:02x}:{slot:02x}.0"
                if None not in (bus, slot, domain)
                else None,
            }
        )
    return {"status": "ok", "driver": driver, "devices": devices}


def report_from_json(data: dict[str, Any]) -> CudaReport:
    driver = data.get("driver")
    return CudaReport(
        status=data.get("status", "error"),
        driver=cuda_version_from_int(driver) if isinstance(driver, int) and driver > 0 else None,
        devices=tuple(CudaDevice(**d) for d in data.get("devices", ())),
        message=data.get("message", ""),
    )


def probe(*, timeout: float = DEFAULT_TIMEOUT) -> CudaReport:
    """Ask libcuda for its devices, in a forked child; never raises for driver trouble."""
    outcome = run_isolated(_query, timeout=timeout)
    if outcome.data is None:
        return CudaReport("error", message=f"{SONAME} {outcome.error}")
    return report_from_json(outcome.data)
