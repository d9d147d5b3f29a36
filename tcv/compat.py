"""The compatibility rules of docs/spec.md §5: which kernels this host's GPUs can use.

Pure: plain kernel entries (or summary targets) and a :class:`HostGpus` in,
verdicts with reasons a person can read out. A kernel fits a GPU when the
backend, the architecture and the warp size are equal and, for CUDA, the host
driver supports the kernel's PTX ISA. A host with several GPUs, even of mixed
vendors, gets the union of what fits each. Where the consuming Triton is known,
entries written by another Triton version are reported as never hit: Triton
reuses an entry only when its key matches, and the key includes the Triton
build (runtime/cache.py, ``triton_key()``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tcv.cache.kernel import KernelEntry, Target
from tcv.gpu.model import Gpu, HostGpus
from tcv.gpu.spec import default_warp_size

NO_GPU_REASON = (
    "no accelerator found on this host — pass --gpu SPEC (e.g. cuda:90 or hip:gfx942) "
    "or set TCV_GPUS to check against a GPU this host does not have"
)

# Lowest CUDA version that accepts each PTX ISA, Triton's integer form (84 = 8.4).
# From NVIDIA's PTX ISA release notes; 8.5 covers both CUDA 12.5 and 12.6.
# The Go tools compared the PTX version with the driver's *release* number (550):
# the rule is against the CUDA version the driver supports (cuDriverGetVersion).
PTX_MIN_CUDA: dict[int, tuple[int, int]] = {
    60: (9, 0),
    61: (9, 1),
    62: (9, 2),
    63: (10, 0),
    64: (10, 1),
    65: (10, 2),
    70: (11, 0),
    71: (11, 1),
    72: (11, 2),
    73: (11, 3),
    74: (11, 4),
    75: (11, 5),
    76: (11, 6),
    77: (11, 7),
    78: (11, 8),
    80: (12, 0),
    81: (12, 1),
    82: (12, 2),
    83: (12, 3),
    84: (12, 4),
    85: (12, 5),
    86: (12, 7),
    87: (12, 8),
    88: (12, 9),
}

# Distributions that install the ``triton`` module (upstream, PyTorch's builds).
TRITON_DISTRIBUTIONS = ("triton", "pytorch-triton", "pytorch-triton-rocm", "pytorch-triton-xpu")

# The first Triton that records its version in the kernel metadata (docs/spec.md §4).
FIRST_VERSIONED_TRITON = (3, 3)


def ptx_min_cuda(ptx_version: int) -> tuple[int, int] | None:
    """The lowest CUDA version that accepts this PTX ISA, or None when unknown.

    PTX 9.y goes with CUDA 13.y (docs/spec.md §5).
    """
    if ptx_version in PTX_MIN_CUDA:
        return PTX_MIN_CUDA[ptx_version]
    major, minor = divmod(ptx_version, 10)
    if major == 9:
        return (13, minor)
    return None


def ptx_supported(ptx_version: int, cuda: tuple[int, int]) -> bool:
    """Whether a driver supporting CUDA ``cuda`` accepts PTX ISA ``ptx_version``."""
    needed = ptx_min_cuda(ptx_version)
    if needed is None:
        # Older than the table: every driver TCV can meet takes it; newer: none does.
        return ptx_version < min(PTX_MIN_CUDA)
    return tuple(cuda) >= needed


def _ptx_text(ptx_version: int) -> str:
    return f"{ptx_version // 10}.{ptx_version % 10}"


def _public_version(version: str) -> str:
    """Drop the local part (``3.1.0+cf34004b8a`` -> ``3.1.0``): PyTorch's Triton builds
    carry one in the distribution version but not in ``triton.__version__``."""
    return version.strip().split("+", 1)[0]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", _public_version(version))[:3])


def consumer_triton_version(explicit: str | None) -> str | None:
    """The Triton that will read the kernels: ``explicit`` (``--triton-version``), else
    the installed ``triton`` distribution, found without importing triton, else None.

    ``explicit`` ``"any"`` turns the rule off.
    """
    if explicit is not None and explicit.strip():
        text = explicit.strip()
        return None if text.lower() == "any" else text
    # Imported here: importlib.metadata costs ~18 ms, paid on every hook start otherwise.
    import importlib.metadata

    for dist in TRITON_DISTRIBUTIONS:
        try:
            return _public_version(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@dataclass(frozen=True)
class Verdict:
    """One kernel against the host: compatible with the GPUs listed in ``gpus``, or
    not, with the reason."""

    key: str
    compatible: bool
    reason: str | None
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    verdicts: tuple[Verdict, ...]

    @property
    def compatible(self) -> list[str]:
        return [v.key for v in self.verdicts if v.compatible]

    @property
    def incompatible(self) -> list[tuple[str, str]]:
        return [(v.key, v.reason or "") for v in self.verdicts if not v.compatible]

    def matched(self, gpu_index: int) -> list[str]:
        """Keys of the kernels that fit GPU ``gpu_index``."""
        return [v.key for v in self.verdicts if gpu_index in v.gpus]


@dataclass(frozen=True)
class _Kernel:
    """What the rules look at, common to a kernel entry and a summary target."""

    backend: str
    arch: str
    warp_size: int | None
    triton_version: str | None
    ptx_version: int | None


def _gpu_label(gpus: Sequence[Gpu]) -> str:
    nums = ", ".join(str(g.index) for g in gpus)
    return f"GPU {nums}" if len(gpus) == 1 else f"GPUs {nums}"


def _warp(k: _Kernel) -> int:
    return k.warp_size if k.warp_size is not None else default_warp_size(k.backend, k.arch)


def _verb(clause: str, count: int) -> str:
    """ "is …"/"has …" for one GPU, "are …"/"have …" for several."""
    if count > 1:
        for one, many in (("is ", "are "), ("has ", "have ")):
            if clause.startswith(one):
                return many + clause[len(one) :]
    return clause


def _mismatch(k: _Kernel, gpu: Gpu, cuda: tuple[int, int] | None) -> str | None:
    """Why kernel ``k`` does not fit ``gpu``, as the rest of a sentence that starts
    with the GPU's label ("GPU 0 …"), or None when it fits."""
    if not gpu.arch:
        return "has an unknown architecture (no driver library named it) — pass --gpu SPEC"
    if k.backend != gpu.backend or k.arch != gpu.arch or _warp(k) != gpu.warp_size:
        return f"is {gpu.backend}:{gpu.arch} (warp {gpu.warp_size})"
    if (
        k.backend == "cuda"
        and k.ptx_version is not None
        and cuda is not None
        and not ptx_supported(k.ptx_version, cuda)
    ):
        return f"has a driver for CUDA {cuda[0]}.{cuda[1]} — update the NVIDIA driver"
    return None


def _kernel_text(k: _Kernel, with_ptx: bool) -> str:
    text = f"built for {k.backend}:{k.arch} (warp {_warp(k)})"
    if with_ptx and k.ptx_version is not None:
        needed = ptx_min_cuda(k.ptx_version)
        need = f"CUDA {needed[0]}.{needed[1]} or newer" if needed else "a newer CUDA"
        text += f" with PTX ISA {_ptx_text(k.ptx_version)}, which needs {need}"
    return text


def _never_hit(k: _Kernel, consumer: str | None) -> str | None:
    if consumer is None:
        return None
    if k.triton_version is None:
        if _version_tuple(consumer) >= FIRST_VERSIONED_TRITON:
            return (
                f"written by a Triton older than 3.3 (no version in its metadata), the "
                f"consuming Triton is {consumer}: it will never be hit"
            )
        return None
    if _public_version(k.triton_version) != _public_version(consumer):
        return (
            f"built by Triton {k.triton_version}, the consuming Triton is {consumer}: "
            f"it will never be hit"
        )
    return None


def _judge(k: _Kernel, host: HostGpus, consumer: str | None) -> tuple[str | None, tuple[int, ...]]:
    """(reason, fitting GPU indices): reason None means the kernel fits."""
    if not host.gpus:
        return NO_GPU_REASON, ()
    if k.backend not in ("cuda", "hip"):
        shown = repr(k.backend) if k.backend else "none"
        return f"unknown backend ({shown}): the metadata names no cuda or hip target", ()
    if not k.arch:
        return f"unknown {k.backend} architecture: the metadata names none", ()
    fits: list[int] = []
    # Group the GPUs that fail for the same reason, so two H100s read as one clause.
    clauses: dict[str, list[Gpu]] = {}
    for gpu in host.gpus:
        why = _mismatch(k, gpu, host.cuda_driver)
        if why is None:
            fits.append(gpu.index)
        else:
            clauses.setdefault(why, []).append(gpu)
    if not fits:
        with_ptx = any("CUDA" in why for why in clauses)
        parts = [_kernel_text(k, with_ptx)]
        parts += [f"{_gpu_label(gpus)} {_verb(why, len(gpus))}" for why, gpus in clauses.items()]
        return "; ".join(parts), ()
    never = _never_hit(k, consumer)
    if never is not None:
        return never, ()
    return None, tuple(fits)


def check_entries(
    entries: Iterable[KernelEntry], host: HostGpus, *, triton_version: str | None = None
) -> CheckResult:
    """Per-kernel verdicts against ``host``; ``triton_version`` is the consuming Triton
    (see :func:`consumer_triton_version`), None when unknown."""
    verdicts = []
    for e in entries:
        k = _Kernel(e.backend, e.arch, e.warp_size, e.triton_version, e.ptx_version)
        reason, gpus = _judge(k, host, triton_version)
        verdicts.append(Verdict(e.key, reason is None, reason, gpus))
    return CheckResult(tuple(verdicts))


def check_targets(
    targets: Iterable[Target], host: HostGpus, *, triton_version: str | None = None
) -> list[tuple[Target, str | None]]:
    """Preflight on the image summary label: each target with None when it fits.

    A target's ``ptx_version`` is the highest PTX ISA among its kernels; the kernels
    of one Triton build share one, so the rule applies to the target as a whole.
    """
    out = []
    for t in targets:
        k = _Kernel(t.backend, t.arch, t.warp_size, t.triton_version, t.ptx_version)
        reason, _ = _judge(k, host, triton_version)
        out.append((t, reason))
    return out
