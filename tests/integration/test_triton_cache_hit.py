"""The real Triton reuses an entry installed through TCV's relocation.

Compile a kernel into root A, install the entry into root B the way extract
and the hook do (:func:`tcv.install.install_kernels`), remove A, and ask a
fresh Triton at B: it must take the cache-hit branch without writing anything.
The same copy into root C *without* relocation must recompile, because
Triton drops a group whose paths do not exist (runtime/cache.py
``get_group``) — so this test fails if relocation stops working.

Each step is a fresh Python process (``triton_cache_hit_driver.py``) that
reports Triton's own ``cache_hit`` flag from ``knobs.compilation.listener``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tcv.cache.scan import read_entry, scan_cache
from tcv.install import install_kernels

pytestmark = pytest.mark.triton

DRIVER = Path(__file__).with_name("triton_cache_hit_driver.py")


def _compile(cache: Path, home: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "TRITON_CACHE_DIR": str(cache),
        "TRITON_HOME": str(home),
        # Pinned so every step has the same cache-relevant environment.
        "TRITON_DEFAULT_FP_FUSION": "1",
    }
    env.pop("TRITON_ALWAYS_COMPILE", None)
    proc = subprocess.run(
        [sys.executable, str(DRIVER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _files(root: Path) -> dict[str, tuple[int, str]]:
    return {
        f"{e.key}/{name}": (info.size, info.sha256)
        for e in scan_cache(root).entries
        for name, info in e.files.items()
    }


def test_relocated_entry_is_a_cache_hit_and_unrelocated_one_is_not(tmp_path):
    a, b, c = tmp_path / "A", tmp_path / "B", tmp_path / "C"
    home = tmp_path / "home"

    first = _compile(a, home)
    assert first["cache_hit"] is False
    (entry,) = scan_cache(a).entries
    assert entry.hash == first["hash"]
    assert (entry.backend, entry.arch, entry.warp_size) == ("cuda", "90", 32)
    assert entry.ptx_version is not None

    assert install_kernels(a, [entry.key], b).installed == [entry.key]
    c.mkdir()
    shutil.copytree(a / entry.key, c / entry.key)
    shutil.rmtree(a)
    before = _files(b)

    at_b = _compile(b, home)
    assert at_b["cache_hit"] is True
    assert at_b["hash"] == first["hash"]
    assert all(Path(p).parent == b / entry.key for p in at_b["paths"].values())
    assert _files(b) == before  # nothing was written: no compile happened
    assert not a.exists()

    at_c = _compile(c, home)
    assert at_c["cache_hit"] is False  # stale absolute paths: Triton recompiled
    assert all(Path(p).parent == c / entry.key for p in at_c["paths"].values())
    assert read_entry(c / entry.key).hash == first["hash"]
