"""GPU SPEC overrides (``--gpu``, ``$TCV_GPUS``) and the architecture facts they need.

A SPEC names an accelerator without having one (docs/spec.md §2): ``cuda:90``,
``cuda:90:32``, ``hip:gfx942``, ``hip:gfx1100:32``. The warp size, when not
given, follows the hardware: 32 on every NVIDIA GPU and on AMD RDNA
(gfx10/11/12), 64 on AMD CDNA and GCN (docs/spec.md §5). The earlier Go tools fixed AMD
at 64, which is wrong for RDNA.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tcv.errors import UsageError
from tcv.gpu.model import Gpu

ACCEPTED_FORMS = "cuda:90, cuda:90:32, hip:gfx942 or hip:gfx1100:32"

_CUDA_ARCH = re.compile(r"(?:sm_)?(\d{2,3})")
_HIP_ARCH = re.compile(r"gfx[0-9a-f]{3,4}")
_CUDA_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def hip_arch(gcn_arch_name: str) -> str:
    """``gcnArchName`` up to the first ``:`` (``gfx90a:sramecc+:xnack-`` -> ``gfx90a``)."""
    return gcn_arch_name.strip().split(":", 1)[0].lower()


def default_warp_size(backend: str, arch: str) -> int:
    """The warp (wavefront) size Triton compiles for on this architecture.

    RDNA (gfx10, gfx11, gfx12) runs wave32, CDNA and GCN wave64; NVIDIA is 32.
    """
    if backend == "hip":
        return 32 if re.match(r"gfx1[0-2]\d", arch) else 64
    return 32


def _bad(text: str, why: str) -> UsageError:
    return UsageError(
        f"bad GPU SPEC {text!r}: {why}",
        f"use one of {ACCEPTED_FORMS} (backend:arch[:warp_size])",
    )


def parse_gpu_spec(text: str, index: int = 0) -> Gpu:
    """``cuda:90`` / ``cuda:90:32`` / ``hip:gfx942`` / ``hip:gfx1100:32`` -> :class:`Gpu`.

    A HIP SPEC may also be a full ``gcnArchName`` (``hip:gfx90a:sramecc+:xnack-``):
    the feature flags are dropped as Triton does. An explicit warp size wins over
    the architecture's default.
    """
    raw = text.strip()
    parts = [p.strip() for p in raw.split(":")]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise _bad(text, "expected backend:arch")
    backend = parts[0].lower()
    rest = parts[2:]
    warp: int | None = None
    if rest and rest[-1].isdigit():
        warp = int(rest[-1])
        rest = rest[:-1]
    if warp is not None and warp not in (32, 64):
        raise _bad(text, f"warp size {warp} is neither 32 nor 64")
    if backend == "cuda":
        if rest:
            raise _bad(text, f"unexpected {':'.join(rest)!r} after the arch")
        m = _CUDA_ARCH.fullmatch(parts[1].lower())
        if not m:
            raise _bad(text, f"CUDA arch {parts[1]!r} is not major*10+minor such as 80 or 90")
        arch = str(int(m.group(1)))
    elif backend == "hip":
        # Anything left between the arch and the warp size are gcnArchName features.
        if any(not re.fullmatch(r"[a-z0-9_-]+[+-]", f.lower()) for f in rest):
            raise _bad(text, f"unexpected {':'.join(rest)!r} after the arch")
        arch = hip_arch(parts[1])
        if not _HIP_ARCH.fullmatch(arch):
            raise _bad(text, f"HIP arch {parts[1]!r} is not a gfx name such as gfx942")
    else:
        raise _bad(text, f"unknown backend {parts[0]!r} (cuda or hip)")
    return Gpu(
        index=index,
        backend=backend,
        arch=arch,
        warp_size=warp if warp is not None else default_warp_size(backend, arch),
        name=f"{backend}:{arch}",
        source="override",
    )


def split_specs(items: Iterable[str]) -> list[str]:
    """Flatten ``--gpu`` values and ``$TCV_GPUS`` (``;``-separated) into single SPECs."""
    out: list[str] = []
    for item in items:
        out.extend(s.strip() for s in item.split(";") if s.strip())
    return out


def parse_gpu_specs(items: Iterable[str]) -> tuple[Gpu, ...]:
    """Several SPECs (each may hold ``;``-separated SPECs) -> GPUs indexed from 0."""
    return tuple(parse_gpu_spec(s, i) for i, s in enumerate(split_specs(items)))


def parse_cuda_version(text: str) -> tuple[int, int]:
    """``"12.4"`` -> ``(12, 4)``; ``"13"`` -> ``(13, 0)``.

    Also takes the driver API's integer form (``"12040"``, as cuDriverGetVersion
    returns it) and an NVIDIA driver release as ``nvidia-smi`` prints it
    (``"550.54.15"``, ``"550"``: a first number of three digits), mapped to the
    CUDA version that driver supports (:mod:`tcv.gpu.driver`).
    """
    from tcv.gpu.driver import OLDEST_DRIVER, cuda_for_driver

    raw = text.strip()
    if raw.isdigit() and len(raw) >= 4:
        return cuda_version_from_int(int(raw))
    m = _CUDA_VERSION.fullmatch(raw)
    if not m:
        raise UsageError(
            f"bad CUDA driver version {text!r}",
            "give the CUDA version the driver supports (e.g. --cuda-driver 12.4) or the "
            "driver release nvidia-smi prints (e.g. --cuda-driver 550.54.15)",
        )
    major = int(m.group(1))
    if 100 <= major <= 999:
        release = tuple(int(part) for part in raw.split("."))
        cuda = cuda_for_driver(release)
        if cuda is None:
            raise UsageError(
                f"NVIDIA driver {raw} is older than any CUDA version TCV knows "
                f"(the oldest is driver {OLDEST_DRIVER}, CUDA 9.0)",
                "give the CUDA version it supports as X.Y, e.g. --cuda-driver 8.0",
            )
        return cuda
    if major >= 100:
        raise UsageError(
            f"bad CUDA driver version {text!r}",
            "give X.Y (e.g. 12.4), a driver release (e.g. 550.54.15) or the driver API "
            "integer (e.g. 12040)",
        )
    return major, int(m.group(2) or 0)


def cuda_version_from_int(value: int) -> tuple[int, int]:
    """cuDriverGetVersion's ``1000*major + 10*minor`` (12040) -> ``(12, 4)``."""
    return value // 1000, (value % 1000) // 10


def format_cuda_version(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
