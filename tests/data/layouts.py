"""Real Triton kernels arranged the way Inductor and vLLM keep them.

The kernels are the 3.9 fixture (compiled by the official wheel, see
make_caches.py); only their place differs, and Triton's group files name
absolute paths anyway, which every install rewrites (docs/spec.md §4).

* Inductor: ``cache_dir()/triton/<device index>/<KEY>/`` — PyTorch
  ``torch/_inductor/runtime/cache_dir_utils.py``: ``triton_cache_dir(device)``
  returns ``os.path.join(cache_dir(), "triton", str(device))`` (used by
  ``triton_heuristics.py`` when ``TRITON_CACHE_DIR`` is unset), and
  ``cache_dir()`` is ``$TORCHINDUCTOR_CACHE_DIR`` else
  ``default_cache_dir()`` = ``<tempdir>/torchinductor_<user>``. Beside
  ``triton/`` Inductor keeps ``fxgraph/``, ``aotautograd/`` and two-letter
  directories of generated Python.
* vLLM (torch ≤ 2.7, ``InductorAdaptor`` in ``vllm/compilation/compiler_interface.py``):
  ``initialize_cache`` sets ``TORCHINDUCTOR_CACHE_DIR`` to
  ``<cache_dir>/inductor_cache`` and ``TRITON_CACHE_DIR`` to
  ``<cache_dir>/triton_cache``, where ``cache_dir`` is
  ``$VLLM_CACHE_ROOT/torch_compile_cache/<hash>/rank_<rank>_<dp_rank>``
  (``vllm/compilation/backends.py``), next to ``vllm_compile_cache.py`` and
  ``computation_graph.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURE = Path(__file__).parent / "caches" / "triton-3.9"


def _copy_kernels(into: Path, keys: list[str] | None = None) -> list[str]:
    into.mkdir(parents=True, exist_ok=True)
    chosen = sorted(p.name for p in FIXTURE.iterdir() if p.is_dir())
    if keys is not None:
        chosen = [k for k in chosen if k in keys]
    for key in chosen:
        shutil.copytree(FIXTURE / key, into / key)
    return chosen


def inductor_tree(base: Path, devices: tuple[int, ...] = (0,)) -> Path:
    """An Inductor cache directory with the fixture kernels under ``triton/<i>``."""
    for i in devices:
        _copy_kernels(base / "triton" / str(i))
    (base / "fxgraph" / "ab").mkdir(parents=True)
    (base / "fxgraph" / "ab" / "fabcdefgh").write_text("graph\n")
    (base / "aotautograd").mkdir()
    (base / "xy").mkdir()
    (base / "xy" / "cxyz.py").write_text("# generated\n")
    return base


def vllm_tree(
    root: Path, ranks: tuple[str, ...] = ("rank_0_0",), digest: str = "1a2b3c4d5e"
) -> Path:
    """``$VLLM_CACHE_ROOT`` with the fixture kernels in each rank's ``triton_cache``."""
    for rank in ranks:
        rank_dir = root / "torch_compile_cache" / digest / rank
        _copy_kernels(rank_dir / "triton_cache")
        (rank_dir / "inductor_cache" / "fxgraph").mkdir(parents=True)
        (rank_dir / "vllm_compile_cache.py").write_text("{}\n")
        (rank_dir / "computation_graph.py").write_text("# graph\n")
    return root
