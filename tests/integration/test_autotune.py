"""Autotuning results end to end: a real Triton cache with results written by
Triton's own cache manager, packed by the real ``tcv -c --with-autotune`` into
buildah's local storage, extracted by the real ``tcv -e`` on a detected H100
(umockdev's recorded PCI device and the stand-in libcuda, which names it
"NVIDIA H100 80GB HBM3") and with a GPU SPEC, which names no device.

Benchmarking needs a GPU, so the results file is not produced by a tuning run:
it is written the way ``runtime/autotuner.py`` ``check_disk_cache`` writes it
— ``get_cache_manager(<sha256 hex>).put(json.dumps({"key": tuning_key,
"configs_timings": [(config.__dict__, timings), ...]}),
f"{fn.__name__[:150]}.autotune.json", binary=False)`` — by the Triton wheel
itself, and read back after the install the way the same function reads it
(``cache.get_file`` then ``Config(**config)`` for each pair).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness import fakecuda
from tests.harness.hostile import run_tcv

pytestmark = pytest.mark.integration

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
UDEV = Path(__file__).resolve().parents[1] / "data" / "udev"
HEX = "5d0c1a3f" * 8  # the sha256 check_disk_cache would compute, as hex
TCV = str(Path(sys.executable).with_name("tcv"))

WRITE = """
import json, sys
import triton
from triton.runtime.cache import get_cache_manager
configs = [triton.Config({"BLOCK": 128}, num_warps=4), triton.Config({"BLOCK": 256}, num_warps=8)]
timings = {configs[0]: [0.0102, 0.0098, 0.0110], configs[1]: [0.0081, 0.0079, 0.0090]}
print(get_cache_manager(sys.argv[1]).put(
    json.dumps({"key": [1024, "torch.float32"],
                "configs_timings": [(c.__dict__, t) for c, t in timings.items()]}),
    "add_kernel.autotune.json", binary=False))
"""

READ = """
import builtins, json, sys
from triton import Config
from triton.runtime.cache import get_cache_manager
path = get_cache_manager(sys.argv[1]).get_file("add_kernel.autotune.json")
with open(path) as f:
    timings = {Config(**c): t for c, t in json.load(f)["configs_timings"]}
best = builtins.min(timings, key=timings.get)
print(json.dumps({"path": path, "best": best.kwargs}))
"""


def triton_python(code: str, cache_dir: Path, *args: str) -> str:
    env = {**os.environ, "TRITON_CACHE_DIR": str(cache_dir)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def tuned_cache(caches_dir, tmp_path_factory) -> tuple[Path, str]:
    """The 3.9 fixture kernels plus one autotune results directory; its KEY."""
    cache = tmp_path_factory.mktemp("tuned") / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    written = Path(triton_python(WRITE, cache, HEX))
    assert written.parent.parent == cache
    return cache, written.parent.name


@pytest.fixture(scope="module")
def images(tuned_cache, tmp_path_factory):
    """The cache packed three ways: for an H100, for an A100, without the switch."""
    cache, _ = tuned_cache
    staging = tmp_path_factory.mktemp("staging")
    tag = uuid.uuid4().hex[:8]
    refs = {}
    for name, extra in (
        ("h100", ["--with-autotune", "--autotune-device", H100]),
        ("a100", ["--with-autotune", "--autotune-device", A100]),
        ("plain", []),
    ):
        ref = f"containers-storage:localhost/tcv-it/autotune-{name}:{tag}"
        proc = run_tcv("-c", "-i", ref, "-d", str(cache), "--json", *extra, staging=staging)
        assert proc.returncode == 0, proc.stderr
        refs[name] = (ref, json.loads(proc.stdout))
    yield refs
    for ref, _ in refs.values():
        subprocess.run(["buildah", "rmi", "-f", ref.split(":", 1)[1]], capture_output=True)


@pytest.fixture(scope="module")
def libdir(tmp_path_factory):
    return fakecuda.build(tmp_path_factory.mktemp("fakecuda"))


def run_on_h100(
    libdir: Path, ref: str, dest: Path, staging: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``tcv -e --json`` on a host whose GPU is detected: an H100 on the PCI bus
    (umockdev) that the stand-in libcuda names."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAKECUDA_", "TCV_")) and k != "LD_LIBRARY_PATH"
    }
    env |= {
        "LD_LIBRARY_PATH": str(libdir),
        "FAKECUDA_SCENARIO": "h100",
        "FAKECUDA_DRIVER": "13040",  # the fixtures' PTX ISA 9.4 needs CUDA 13.4
        "TCV_STAGING_ROOT": str(staging),
    }
    argv = ["-e", "-i", ref, "-d", str(dest), "--json", *extra]
    return subprocess.run(
        ["umockdev-run", "--device", str(UDEV / "h100.umockdev"), "--", TCV, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def extract_on_h100(libdir: Path, ref: str, dest: Path, staging: Path) -> dict:
    out = run_on_h100(libdir, ref, dest, staging)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_create_records_the_device_and_count(images, tmp_path):
    ref, created = images["h100"]
    assert created["autotune"] == {"device": H100, "entries": 1}
    proc = run_tcv("inspect", ref, "--json", staging=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["autotune"] == {"device": H100, "count": 1}
    assert doc["labels"]["cache.triton.image/autotune-device"] == H100
    human = run_tcv("inspect", ref, staging=tmp_path).stdout
    assert f"1 results, measured on {H100}" in human
    assert "autotune" not in images["plain"][1]


def test_installed_on_the_same_gpu_model_and_read_by_triton(images, tuned_cache, libdir, tmp_path):
    cache, key = tuned_cache
    dest = tmp_path / "dest"
    doc = extract_on_h100(libdir, images["h100"][0], dest, tmp_path / "staging")
    assert doc["autotune"] == {"device": H100, "installed": [key], "present": [], "skipped": []}
    assert key not in doc["installed"]  # not counted as a kernel
    name = "add_kernel.autotune.json"
    assert (dest / key / name).read_bytes() == (cache / key / name).read_bytes()
    read = json.loads(triton_python(READ, dest, HEX))
    assert read == {"path": str(dest / key / name), "best": {"BLOCK": 256}}


def test_skipped_on_another_gpu_model(images, tuned_cache, libdir, tmp_path):
    _, key = tuned_cache
    dest = tmp_path / "dest"
    doc = extract_on_h100(libdir, images["a100"][0], dest, tmp_path / "staging")
    reason = f"measured on {A100}, not on this host's {H100}"
    assert doc["autotune"]["skipped"] == [{"key": key, "reason": reason}]
    assert doc["autotune"]["installed"] == []
    assert doc["installed"]  # the kernels that fit the H100 still are
    assert not (dest / key).exists()


def test_skipped_when_a_gpu_spec_names_no_device(images, tuned_cache, tmp_path):
    _, key = tuned_cache
    dest = tmp_path / "dest"
    argv = ["-e", "-i", images["h100"][0], "-d", str(dest), "--gpu", "cuda:90"]
    proc = run_tcv(*argv, "--cuda-driver", "13.4", staging=tmp_path / "staging")
    assert proc.returncode == 0, proc.stderr
    reason = f"measured on {H100}; unknown device name for this host's GPU"
    assert f"1 {reason}" in " ".join(proc.stdout.split())
    assert "autotune: 0 installed, 0 already present, 1 skipped" in proc.stdout
    assert not (dest / key).exists()


def test_without_the_switch_nothing_is_packed(images, tuned_cache, libdir, tmp_path):
    _, key = tuned_cache
    dest = tmp_path / "dest"
    doc = extract_on_h100(libdir, images["plain"][0], dest, tmp_path / "staging")
    assert "autotune" not in doc
    assert not (dest / key).exists()
