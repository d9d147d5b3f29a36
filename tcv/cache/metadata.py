"""One cache entry's metadata, in every shape Triton has written (docs/spec.md §4).

Pure functions over names, decoded JSON and text; the scanner in
``tcv/cache/scan.py`` does the reading. The shapes, oldest last:

- 3.x: ``"target": {"backend": "cuda", "arch": 90, "warp_size": 32}`` (arch is
  an int for CUDA, a string for HIP); ``triton_version`` from 3.3;
- 2.3: ``"target": ["cuda", 80]``;
- 2.2: ``"target": {"capability": 80}``;
- 2.1: ``"arch": 80`` at the top level;
- 2.0: no target at all: the ``.target sm_NN`` line of ``<name>.ptx``.

The metadata's own ``ptx_version`` is a user override and almost always null;
the PTX ISA really used is the ``.version X.Y`` line of ``<name>.ptx``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tcv.errors import TcvError

GROUP_PREFIX = "__grp__"
AUTOTUNE_SUFFIX = ".autotune.json"

# `.version 8.4` → 84, Triton's integer form (backends/nvidia/compiler.py).
_PTX_VERSION = re.compile(rb"^[ \t]*\.version[ \t]+(\d+)\.(\d+)", re.MULTILINE)
# `.target sm_90a` (optionally followed by `, debug` and the like).
_PTX_TARGET = re.compile(rb"^[ \t]*\.target[ \t]+sm_(\d+)([a-z]?)", re.MULTILINE)
# AMDGPU assembly names its processor at the end of the target string:
# `.amdgcn_target "amdgcn-amd-amdhsa--gfx90a:xnack-"` or
# `.amdgcn_target "amdgpu11.00-amd-amdhsa-unknown-gfx1100"` (3.9).
_AMDGCN_TARGET = re.compile(rb'\.amdgcn_target[ \t]+"[^"\n]*?\b(gfx[0-9a-z]+)')

# Warp size when the metadata does not say: every NVIDIA GPU has 32 lanes.
_DEFAULT_WARP = {"cuda": 32}


class MetadataError(TcvError):
    """An entry's metadata cannot be understood; the message is the reason."""


@dataclass(frozen=True)
class Metadata:
    """What one entry's metadata JSON (plus its ``.ptx``) says."""

    name: str
    backend: str
    arch: str
    warp_size: int | None
    triton_version: str | None = None
    hash: str | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    debug: bool | None = None


def group_name(filename: str) -> str | None:
    """``__grp__add_kernel.json`` → ``add_kernel.json`` (the metadata file it lists)."""
    if filename.startswith(GROUP_PREFIX) and filename.endswith(".json"):
        rest = filename[len(GROUP_PREFIX) :]
        return rest if len(rest) > len(".json") else None
    return None


def metadata_filename(filenames: Iterable[str]) -> str | None:
    """The metadata file among an entry's file names, or None.

    Triton names it ``<kernel>.json`` and, from 2.1 on, writes a group file
    ``__grp__<kernel>.json`` pointing at it (compiler.py ``put_group``), so the
    group file decides; a 2.0 entry has no group file and one ``.json``.
    """
    names = sorted(filenames)
    present = set(names)
    for fname in names:
        target = group_name(fname)
        if target is not None and target in present:
            return target
    candidates = [
        n
        for n in names
        if n.endswith(".json") and not n.startswith(GROUP_PREFIX)
        if not n.endswith(AUTOTUNE_SUFFIX)
    ]
    return candidates[0] if len(candidates) == 1 else None


def group_filenames(filenames: Iterable[str]) -> list[str]:
    """The ``__grp__*.json`` group files among an entry's file names."""
    return sorted(n for n in filenames if group_name(n) is not None)


def ptx_version(ptx: bytes) -> int | None:
    """The PTX ISA of a ``.ptx`` text in Triton's int form: ``.version 8.4`` → 84."""
    m = _PTX_VERSION.search(ptx)
    return int(m.group(1)) * 10 + int(m.group(2)) if m else None


def ptx_arch(ptx: bytes) -> str | None:
    """The compute capability a ``.ptx`` targets: ``.target sm_90a`` → ``"90"``."""
    m = _PTX_TARGET.search(ptx)
    return m.group(1).decode() if m else None


def amdgcn_arch(asm: bytes) -> str | None:
    """The processor an ``.amdgcn`` text targets: ``…amdhsa--gfx942`` → ``"gfx942"``."""
    m = _AMDGCN_TARGET.search(asm)
    return m.group(1).decode() if m else None


def normalize_arch(backend: str, arch: Any) -> str:
    """Arch as TCV compares it (docs/spec.md §5): a string; CUDA ``major*10+minor``
    (``90``, ``"sm_90a"`` → ``"90"``); HIP ``gcnArchName`` before the first
    ``:`` (``gfx90a:sramecc+:xnack-`` → ``gfx90a``)."""
    if isinstance(arch, bool):
        raise MetadataError(f"target arch {arch!r} is not an architecture")
    if isinstance(arch, int):
        return str(arch)
    if isinstance(arch, float) and arch.is_integer():
        return str(int(arch))
    if isinstance(arch, str) and arch:
        text = arch.split(":", 1)[0]
        if backend == "cuda":
            m = re.fullmatch(r"(?:sm_?)?(\d+)[a-z]?", text)
            if m:
                return m.group(1)
        return text
    raise MetadataError(f"target arch {arch!r} is not an architecture")


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _backend_of(arch: Any) -> str:
    """2.1 wrote only ``arch``: an int is a CUDA capability, ``gfx…`` is HIP."""
    if isinstance(arch, str) and arch.startswith("gfx"):
        return "hip"
    return "cuda"


def _target(meta: Mapping[str, Any], ptx: bytes | None, amdgcn: bytes | None) -> tuple[str, Any]:
    """(backend, raw arch) from whichever shape this Triton wrote."""
    target = meta.get("target")
    if isinstance(target, Mapping):
        if "backend" in target:  # 3.x
            return str(target["backend"]), target.get("arch")
        if "capability" in target:  # 2.2
            return "cuda", target["capability"]
        raise MetadataError("metadata 'target' has neither 'backend' nor 'capability'")
    if isinstance(target, list | tuple):  # 2.3: ["cuda", 80]
        if len(target) >= 2 and isinstance(target[0], str):
            return target[0], target[1]
        raise MetadataError(f"metadata 'target' list {target!r} is not [backend, arch]")
    if target is not None:
        raise MetadataError(f"metadata 'target' {target!r} is not a known shape")
    if "arch" in meta and meta["arch"] is not None:  # 2.1
        return _backend_of(meta["arch"]), meta["arch"]
    # 2.0: the assembly says what it was compiled for.
    if ptx is not None and (arch := ptx_arch(ptx)) is not None:
        return "cuda", arch
    if amdgcn is not None and (arch := amdgcn_arch(amdgcn)) is not None:
        return "hip", arch
    raise MetadataError("metadata has no target and no .ptx/.amdgcn says which GPU it is for")


def _warp_size(meta: Mapping[str, Any], backend: str) -> int | None:
    target = meta.get("target")
    if isinstance(target, Mapping) and (w := _int_or_none(target.get("warp_size"))) is not None:
        return w
    if (
        isinstance(target, list | tuple)
        and len(target) >= 3
        and (w := _int_or_none(target[2])) is not None
    ):
        return w
    if (w := _int_or_none(meta.get("warp_size"))) is not None:
        return w
    return _DEFAULT_WARP.get(backend)


def parse_metadata(
    meta: object,
    *,
    name: str | None = None,
    ptx: bytes | None = None,
    amdgcn: bytes | None = None,
) -> Metadata:
    """Read a decoded metadata JSON of any Triton shape.

    ``name`` is the file stem (``<stem>.json``), used when the metadata has
    no ``name``; ``ptx``/``amdgcn`` are the assembly texts, needed only for
    2.0 entries. Raises ``MetadataError`` with a reason.
    """
    if not isinstance(meta, Mapping):
        raise MetadataError(f"metadata is a JSON {type(meta).__name__}, not an object")
    backend, raw_arch = _target(meta, ptx, amdgcn)
    if backend not in ("cuda", "hip"):
        # Other backends (cpu, xpu…) are kept as they are: compat decides.
        backend = str(backend)
    arch = normalize_arch(backend, raw_arch)
    # Triton's own name for the kernel (2.x: the specialised one, e.g.
    # `add_kernel_0123`); the file stem when the metadata has none.
    kname = meta.get("name")
    if not isinstance(kname, str) or not kname:
        kname = name
    if not kname:
        raise MetadataError("cannot tell the kernel name: no group file and no 'name' in metadata")
    version = meta.get("triton_version")
    hash_ = meta.get("hash")
    debug = meta.get("debug")
    return Metadata(
        name=kname,
        backend=backend,
        arch=arch,
        warp_size=_warp_size(meta, backend),
        triton_version=version if isinstance(version, str) and version else None,
        hash=hash_ if isinstance(hash_, str) and hash_ else None,
        num_warps=_int_or_none(meta.get("num_warps")),
        num_stages=_int_or_none(meta.get("num_stages")),
        debug=debug if isinstance(debug, bool) else None,
    )
