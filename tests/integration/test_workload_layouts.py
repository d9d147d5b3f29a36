"""Kernels packed from where Inductor and vLLM keep them go back where they read them.

A kernel compiled by the real Triton (3.9, CPU, target cuda:90) is arranged in
the Inductor layout (``<cache dir>/triton/<device>/<KEY>/``) and the vLLM one
(``$VLLM_CACHE_ROOT/torch_compile_cache/<hash>/rank_<r>_<dp>/triton_cache/<KEY>/``;
see tests/data/layouts.py for the PyTorch and vLLM sources), packed with
``tcv -c`` (layout detected), and extracted with ``--for inductor`` /
``--for vllm``; a fresh Triton then takes the cache-hit branch there.

torch is not installed here, so the driver gets ``TRITON_CACHE_DIR`` set to the
directory Inductor would choose when it is unset (``cache_dir()/triton/0``,
torch/_inductor/runtime/cache_dir_utils.py ``triton_cache_dir``), and to the
rank's ``triton_cache`` as vLLM sets it.
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

RANK = Path("torch_compile_cache") / "5f3e2a1b0c" / "rank_0_0"
HOST = ("--gpu", "cuda:90", "--gpu", "cuda:80", "--cuda-driver", "13.4")


@pytest.fixture
def compiled(tmp_path):
    a, home = tmp_path / "A", tmp_path / "home"
    first = _compile(a, home)
    assert first["cache_hit"] is False
    (entry,) = scan_cache(a).entries
    return a, home, first, entry


@pytest.fixture
def image():
    name = f"localhost/tcv-it/layout:{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["buildah", "rmi", "-f", name], capture_output=True)


def _labels(image: str) -> dict[str, str]:
    out = subprocess.run(
        ["skopeo", "inspect", f"containers-storage:{image}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["Labels"]


def test_inductor_cache_round_trips_per_device(tmp_path, compiled, image):
    a, home, first, entry = compiled
    inductor = tmp_path / "inductor"
    shutil.copytree(a, inductor / "triton" / "0")
    (inductor / "fxgraph").mkdir()
    shutil.rmtree(a)

    scan = run_tcv("scan", str(inductor), staging=tmp_path / "st")
    assert scan.returncode == 0, scan.stderr
    assert scan.stdout.splitlines()[0] == (
        f"this is an Inductor cache: kernels in {inductor}/triton/0"
    )
    made = run_tcv("-c", "-i", image, "-d", str(inductor), staging=tmp_path / "st")
    assert made.returncode == 0, made.stderr
    assert json.loads(_labels(image)["cache.triton.image/layout"])["kind"] == "inductor"

    out = tmp_path / "out"
    got = run_tcv(
        "-e",
        "-i",
        f"containers-storage:{image}",
        "--for",
        "inductor",
        *HOST,
        "--json",
        staging=tmp_path / "st",
        env={"TORCHINDUCTOR_CACHE_DIR": str(out)},
    )
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert report["dest"] == str(out)
    per_gpu = {d["gpu"]: d for d in report["destinations"]}
    assert per_gpu[0]["installed"] == [entry.key]  # GPU 0, cuda:90: the kernel fits
    assert per_gpu[1]["installed"] == []  # GPU 1, cuda:80: nothing fits it
    assert not (out / "triton" / "1").exists()

    device0 = out / "triton" / "0"
    before = snapshot(device0)
    hit = _compile(device0, home)
    assert hit["cache_hit"] is True
    assert hit["hash"] == first["hash"]
    assert all(Path(p).parent == device0 / entry.key for p in hit["paths"].values())
    assert snapshot(device0) == before


def test_vllm_tree_round_trips(tmp_path, compiled, image):
    a, home, first, entry = compiled
    vllm = tmp_path / "vllm"
    shutil.copytree(a, vllm / RANK / "triton_cache")
    (vllm / RANK / "inductor_cache").mkdir()
    (vllm / RANK / "vllm_compile_cache.py").write_text("{}\n")
    shutil.rmtree(a)

    made = run_tcv("-c", "-i", image, "-d", str(vllm), staging=tmp_path / "st")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == (
        f"layout:  this is a vLLM cache: kernels in {vllm}/{RANK}/triton_cache"
    )
    layout = json.loads(_labels(image)["cache.triton.image/layout"])
    assert layout == {"kind": "vllm", "roots": [{"device": None, "path": f"{RANK}/triton_cache"}]}

    root = tmp_path / "vllm-root"
    got = run_tcv(
        "-e",
        "-i",
        f"containers-storage:{image}",
        "--for",
        "vllm",
        *HOST,
        "--json",
        staging=tmp_path / "st",
        env={"VLLM_CACHE_ROOT": str(root)},
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["installed"] == [entry.key]

    triton_cache = root / RANK / "triton_cache"
    before = snapshot(triton_cache)
    hit = _compile(triton_cache, home)
    assert hit["cache_hit"] is True
    assert hit["hash"] == first["hash"]
    assert snapshot(triton_cache) == before


def test_for_vllm_refuses_an_image_without_a_vllm_layout_before_pulling(tmp_path, compiled, image):
    a, _, _, _ = compiled
    made = run_tcv("-c", "-i", image, "-d", str(a), staging=tmp_path / "st")
    assert made.returncode == 0, made.stderr
    root = tmp_path / "vllm-root"
    got = run_tcv(
        "-e",
        "-i",
        f"containers-storage:{image}",
        "--for",
        "vllm",
        *HOST,
        staging=tmp_path / "st",
        env={"VLLM_CACHE_ROOT": str(root)},
    )
    assert got.returncode == 3
    assert "records no vLLM layout" in got.stderr
    assert len(got.stderr.strip().splitlines()) == 1
    assert not root.exists()


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(("--split-by-target", "--push"), id="fleet-image"),
        pytest.param(("--format", "artifact", "--push"), id="artifact"),
    ],
)
def test_a_vllm_tree_as_a_fleet_image_or_an_artifact_keeps_its_layout(
    tmp_path, compiled, registry, shape
):
    """Where the kernels go travels with every shape ``tcv -c`` makes: the
    fleet index carries the layout on each entry, the artifact in its
    annotations, and ``--for vllm`` puts the kernels back in the rank's tree."""
    a, home, first, entry = compiled
    vllm = tmp_path / "vllm"
    shutil.copytree(a, vllm / RANK / "triton_cache")
    shutil.rmtree(a)
    ref = registry.ref(f"tcv-it/layout:{shape[0].strip('-')}-{uuid.uuid4().hex[:8]}")
    made = run_tcv(
        "-c", *shape, "-i", ref, "--tls-verify=false", "-d", str(vllm),
        "--mount-path", "/triton-cache", staging=tmp_path / "st",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shown = run_tcv("inspect", ref, "--tls-verify=false", "--json", staging=tmp_path / "st")
    assert shown.returncode == 0, shown.stderr
    labels = json.loads(shown.stdout)["labels"]
    assert json.loads(labels["cache.triton.image/layout"])["kind"] == "vllm"
    assert labels["cache.triton.image/mount-path"] == "/triton-cache"

    root = tmp_path / "vllm-root"
    got = run_tcv(
        "-e", "-i", ref, "--tls-verify=false", "--for", "vllm", *HOST, "--json",
        staging=tmp_path / "st", env={"VLLM_CACHE_ROOT": str(root)},
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["installed"] == [entry.key]
    hit = _compile(root / RANK / "triton_cache", home)
    assert hit["cache_hit"] is True
    assert hit["hash"] == first["hash"]
