"""The real Triton reuses what ``tcv -e`` installed, without compiling.

Compile a kernel into root A (Triton 3.9 on the CPU, target cuda:90), pack A with
``tcv -c``, push it to a registry on 127.0.0.1, delete A, extract into root B with
``tcv -e`` — and a fresh Triton at B takes the cache-hit branch (Triton's own
``cache_hit`` flag, reported by ``triton_cache_hit_driver.py``) and writes nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tests.harness.hostile import run_tcv, snapshot
from tests.integration.test_triton_cache_hit import _compile

pytestmark = [pytest.mark.integration, pytest.mark.triton]


def test_extracted_kernel_is_a_cache_hit(registry, tmp_path):
    a, b, home = tmp_path / "A", tmp_path / "B", tmp_path / "home"
    first = _compile(a, home)
    assert first["cache_hit"] is False
    (entry,) = scan_cache(a).entries

    ref = registry.ref(f"tcv-it/triton-hit:{uuid.uuid4().hex[:8]}")
    staging = tmp_path / "st"
    made = run_tcv("-c", "-i", ref, "-d", str(a), "--push", "--tls-verify=false", staging=staging)
    assert made.returncode == 0, made.stderr
    subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)
    shutil.rmtree(a)

    got = run_tcv(
        "-e",
        "-i",
        ref,
        "--tls-verify=false",
        "-d",
        str(b),
        "--gpu",
        "cuda:90",
        "--cuda-driver",
        "13.9",
        "--json",
        staging=staging,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["installed"] == [entry.key]
    before = snapshot(b)

    at_b = _compile(b, home)
    assert at_b["cache_hit"] is True
    assert at_b["hash"] == first["hash"]
    assert all(Path(p).parent == b / entry.key for p in at_b["paths"].values())
    assert snapshot(b) == before  # nothing written: no compile happened
    assert not a.exists()

    # A relative DEST, given from another working directory than Triton's: the
    # group files must still name absolute paths, or every kernel misses.
    work = tmp_path / "work"
    work.mkdir()
    rel = run_tcv(
        "-e",
        "-i",
        ref,
        "--tls-verify=false",
        "-d",
        "dst/c",
        "--gpu",
        "cuda:90",
        "--cuda-driver",
        "13.9",
        "--json",
        staging=staging,
        cwd=work,
    )
    assert rel.returncode == 0, rel.stderr
    c = work / "dst" / "c"
    assert json.loads(rel.stdout)["dest"] == str(c)
    before = snapshot(c)
    at_c = _compile(c, home)
    assert at_c["cache_hit"] is True
    assert all(Path(p).parent == c / entry.key for p in at_c["paths"].values())
    assert snapshot(c) == before
