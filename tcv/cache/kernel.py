"""One compiled Triton kernel as TCV sees it: a cache entry directory.

Plain data, shared by the cache scanner, the manifest, the compatibility
engine and the installers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileInfo:
    size: int
    sha256: str


@dataclass(frozen=True)
class KernelEntry:
    """A kernel directory ``<root>/<key>/`` and what its metadata says.

    ``arch`` is always a string (``"90"``, ``"gfx942"``); ``ptx_version`` is
    Triton's integer form (84 for PTX ISA 8.4) read from the ``.ptx`` file, or
    None; ``backend`` is ``"cuda"``, ``"hip"`` or ``""`` when unknown.
    """

    key: str
    name: str
    backend: str
    arch: str
    warp_size: int | None
    triton_version: str | None = None
    ptx_version: int | None = None
    hash: str | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    debug: bool | None = None
    files: dict[str, FileInfo] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def target(self) -> tuple[str, str, int | None]:
        return (self.backend, self.arch, self.warp_size)


@dataclass(frozen=True)
class Target:
    """One line of the image summary label (docs/spec.md §3): a distinct
    (backend, arch, warp_size, triton_version) and how many kernels it has.
    ``ptx_version`` is the highest PTX ISA among those kernels."""

    backend: str
    arch: str
    warp_size: int | None
    triton_version: str | None = None
    ptx_version: int | None = None
    entries: int = 0
