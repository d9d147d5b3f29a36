"""Where ``tcv -e --for WORKLOAD`` puts the kernels: the directories each
workload's Triton reads. Pure, given the environment.

* ``triton``: DEST (``-d``, else ``$TRITON_CACHE_DIR``, else
  ``$TRITON_HOME/.triton/cache``, else ``~/.triton/cache``), every fitting kernel.
* ``inductor``: ``<cache dir>/triton/<i>`` for each GPU index ``i``, each with
  only the kernels that fit GPU ``i`` — PyTorch
  ``torch/_inductor/runtime/cache_dir_utils.py``: ``triton_cache_dir(device)``
  is ``cache_dir()/triton/<device>``, read whenever ``TRITON_CACHE_DIR`` is
  unset; ``cache_dir()`` is ``$TORCHINDUCTOR_CACHE_DIR`` else
  ``default_cache_dir()`` = ``<tempdir>/torchinductor_<user>`` (the user name
  with ``\\/:*?"<>|`` replaced by ``_``). ``-d`` names the cache dir instead.
* ``vllm``: each Triton root the image recorded in its layout label, under
  ``$VLLM_CACHE_ROOT`` (vLLM ``envs.py``: else ``$XDG_CACHE_HOME/vllm``, else
  ``~/.cache/vllm``); ``-d`` names the cache root instead.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tcv.cache.layout import VLLM, Layout
from tcv.errors import UsageError
from tcv.gpu.model import HostGpus

TRITON = "triton"
INDUCTOR = "inductor"
WORKLOADS = (TRITON, INDUCTOR, VLLM)

_UNSAFE_USER = re.compile(r'[\\/:*?"<>|]')


@dataclass(frozen=True)
class Placement:
    """One directory to install into: the kernels fitting GPU ``gpu`` there,
    or every fitting kernel when ``gpu`` is None."""

    dest: Path
    gpu: int | None = None


def inductor_cache_dir(env: Mapping[str, str], user: str, tmpdir: str | None = None) -> Path:
    """Inductor's ``cache_dir()``: ``$TORCHINDUCTOR_CACHE_DIR``, else
    ``<tempdir>/torchinductor_<user>``."""
    if value := env.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(value)
    base = tmpdir if tmpdir is not None else tempfile.gettempdir()
    return Path(base) / f"torchinductor_{_UNSAFE_USER.sub('_', user)}"


def vllm_cache_root(env: Mapping[str, str], home: str) -> Path:
    """vLLM's ``VLLM_CACHE_ROOT``: set, else ``$XDG_CACHE_HOME/vllm``, else ``~/.cache/vllm``."""
    if value := env.get("VLLM_CACHE_ROOT"):
        return Path(os.path.expanduser(value))
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return Path(xdg) / "vllm"


def base_dir(
    workload: str, directory: str | None, env: Mapping[str, str], *, user: str, home: str
) -> Path:
    """The directory ``-d`` stands for under ``--for workload``, with its default."""
    if directory:
        return Path(os.path.abspath(os.path.expanduser(directory)))
    if workload == INDUCTOR:
        return Path(os.path.abspath(inductor_cache_dir(env, user)))
    if workload == VLLM:
        return Path(os.path.abspath(vllm_cache_root(env, home)))
    from tcv.cache.scan import default_cache_dir

    return Path(os.path.abspath(default_cache_dir(env)))


def plan(
    workload: str, base: Path, host: HostGpus | None, layout: Layout | None
) -> list[Placement]:
    """The placements for ``workload``. ``host`` None (``--no-gpu-check``)
    gives Inductor only device 0. Raises UsageError (exit 3) for ``vllm`` when
    the image recorded no vLLM layout."""
    if workload == TRITON:
        return [Placement(base)]
    if workload == INDUCTOR:
        indexes = sorted({g.index for g in host.gpus}) if host is not None else [0]
        return [Placement(base / "triton" / str(i), None if host is None else i) for i in indexes]
    if workload == VLLM:
        if layout is None or layout.kind != VLLM:
            raise UsageError(
                "the image records no vLLM layout, so there is no tree to restore",
                "pack the vLLM cache root with tcv -c, or extract with -d "
                "<rank dir>/triton_cache (vLLM's TRITON_CACHE_DIR)",
            )
        return [Placement(base / posixpath.normpath(r.path)) for r in layout.roots]
    raise UsageError(f"unknown workload {workload!r}", "use --for triton, inductor or vllm")
