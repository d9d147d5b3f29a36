"""NVIDIA driver releases and the CUDA version each supports (for ``--cuda-driver``).

``nvidia-smi`` prints the driver release first (``550.54.15``) and people give
that; the PTX rule needs the CUDA version the driver supports. The table is
NVIDIA's "CUDA Toolkit and Corresponding Driver Versions" (Linux x86_64, the
minimum driver of each toolkit's GA release, from the CUDA Toolkit release
notes): a driver supports the newest CUDA whose minimum it meets. A release
newer than the last row maps to that row's CUDA version, which can only make
the PTX rule stricter than the driver really is, never let through a kernel it
cannot load. Pure.
"""

from __future__ import annotations

# (minimum Linux driver release, CUDA version), oldest first.
DRIVER_CUDA: tuple[tuple[tuple[int, ...], tuple[int, int]], ...] = (
    ((384, 81), (9, 0)),
    ((390, 46), (9, 1)),
    ((396, 26), (9, 2)),
    ((410, 48), (10, 0)),
    ((418, 39), (10, 1)),
    ((440, 33), (10, 2)),
    ((450, 36, 6), (11, 0)),
    ((455, 23), (11, 1)),
    ((460, 27, 3), (11, 2)),
    ((465, 19, 1), (11, 3)),
    ((470, 42, 1), (11, 4)),
    ((495, 29, 5), (11, 5)),
    ((510, 39, 1), (11, 6)),
    ((515, 43, 4), (11, 7)),
    ((520, 61, 5), (11, 8)),
    ((525, 60, 13), (12, 0)),
    ((530, 30, 2), (12, 1)),
    ((535, 54, 3), (12, 2)),
    ((545, 23, 6), (12, 3)),
    ((550, 54, 14), (12, 4)),
    ((555, 42, 2), (12, 5)),
    ((560, 28, 3), (12, 6)),
    ((570, 26), (12, 8)),
    ((575, 51, 3), (12, 9)),
    ((580, 65, 6), (13, 0)),
)

OLDEST_DRIVER = DRIVER_CUDA[0][0][0]


def cuda_for_driver(release: tuple[int, ...]) -> tuple[int, int] | None:
    """The CUDA version driver ``release`` supports; None when older than the table.

    A release given as its branch only (``550``) is read as that branch's first
    release, so ``550`` supports what every 550 driver supports: CUDA 12.3 (the
    550.54.14 minimum for 12.4 is not met by 550.0).
    """
    best: tuple[int, int] | None = None
    for minimum, cuda in DRIVER_CUDA:
        if release >= minimum:
            best = cuda
    return best
