"""A registry that lies about what it serves: the same checks as the hostile
suite, the image coming over HTTP from tests/harness/liar.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.harness import liar
from tests.hostile import craft as c
from tests.hostile.child import MEMORY_LIMIT, run_bounded
from tests.hostile.test_hostile import H100, prefill, tree_digest

pytestmark = pytest.mark.integration

CASES = [
    pytest.param("honest", 0, "", id="honest-control"),
    pytest.param("wrong-bytes", 1, "cannot pull", id="layer-bytes-not-its-digest"),
    pytest.param("short", 1, "cannot pull", id="layer-cut-off-halfway"),
    pytest.param("endless", 1, "the registry sent more than", id="layer-without-end"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    k = c.Kernels.honest(bad_from=None)
    raw = c.tar_of([*k.members(), *k.manifest_members()]) + c.end()
    layout = tmp_path_factory.mktemp("liar") / "oci"
    c.oci_image(layout, [c.Blob(c.gzip_stream([raw]))], k.labels())
    repos = {f"tcv/{b}": liar.load_oci(layout, b) for b, _, _ in (p.values for p in CASES)}
    with liar.serve(repos) as registry:
        yield registry


@pytest.mark.parametrize(("behaviour", "code", "needle"), CASES)
def test_a_lying_registry(served, tmp_path: Path, behaviour: str, code: int, needle: str):
    decoy = tmp_path / "decoy"
    shutil.copytree(c.FIXTURE / c.ALREADY, decoy / "cache" / c.ALREADY)
    dest = tmp_path / "dest"
    prefill(dest, decoy)
    before, decoy_before = tree_digest(dest), tree_digest(decoy)
    staging = tmp_path / "staging"
    args = ["-e", "-i", served.ref(f"tcv/{behaviour}"), "--tls-verify=false", "-d", str(dest)]
    got = run_bounded([*args, *H100], {"TCV_STAGING_ROOT": str(staging)})
    assert not got.timed_out
    assert b"Traceback" not in got.stderr, got.err
    assert got.peak_rss_kib * 1024 < MEMORY_LIMIT // 2
    assert got.returncode == code, got.err
    assert tree_digest(decoy) == decoy_before
    assert os.listdir(staging) == []
    if code == 0:
        assert set(c.GOOD) <= set(os.listdir(dest))
        return
    lines = got.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], got.err
    assert tree_digest(dest) == before
