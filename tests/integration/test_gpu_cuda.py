"""The libcuda binding against a stand-in libcuda.so.1 compiled from C.

The library is loaded by soname, so each case runs in a child process whose
LD_LIBRARY_PATH points at the stand-in (the loader reads it at process start);
FAKECUDA_SCENARIO chooses what the stand-in answers (tests/harness/fakecuda).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.harness import fakecuda

pytestmark = pytest.mark.integration

PROBE = """
import dataclasses, json
from tcv.gpu import cuda
r = cuda.probe()
print(json.dumps(dataclasses.asdict(r)))
"""


@pytest.fixture(scope="module")
def libdir(tmp_path_factory):
    return fakecuda.build(tmp_path_factory.mktemp("fakecuda"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAKECUDA_", "TCV_")) and k not in ("LD_LIBRARY_PATH",)
    }
    env.update(extra)
    return env


def probe(libdir, **env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=clean_env(LD_LIBRARY_PATH=str(libdir), **env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


H100 = {
    "ordinal": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "arch": "90",
    "warp_size": 32,
    "max_shared_memory": 232448,
    "uuid": "GPU-5e3a1f20-900d-4c11-8a7e-0123456789ab",
    "pci_address": "0000:3b:00.0",
}
A100 = {
    "ordinal": 1,
    "name": "NVIDIA A100-SXM4-80GB",
    "arch": "80",
    "warp_size": 32,
    "max_shared_memory": 166912,
    "uuid": "GPU-0a100000-1111-2222-3333-444455556666",
    "pci_address": "0000:86:00.0",
}


def test_no_device_is_a_normal_outcome(libdir):
    r = probe(libdir, FAKECUDA_SCENARIO="none")
    assert r == {
        "status": "no-device",
        "driver": [12, 4],
        "devices": [],
        "message": "cuInit: no CUDA device",
    }


def test_one_h100_driver_12_4(libdir):
    r = probe(libdir, FAKECUDA_SCENARIO="h100")
    assert r["status"] == "ok"
    assert r["driver"] == [12, 4]
    assert r["devices"] == [H100]


def test_two_different_gpus(libdir):
    r = probe(libdir, FAKECUDA_SCENARIO="two", FAKECUDA_DRIVER="13000")
    assert r["driver"] == [13, 0]
    assert r["devices"] == [H100, A100]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        pytest.param("999", "cuInit failed with CUDA_ERROR_UNKNOWN (999)", id="unknown"),
        pytest.param(
            "35",
            "cuInit failed with CUDA_ERROR_INSUFFICIENT_DRIVER (35): the kernel module and "
            "libcuda.so.1 are from different driver releases",
            id="insufficient-driver",
        ),
        pytest.param(
            "34",
            "cuInit failed with CUDA_ERROR_STUB_LIBRARY (34): this libcuda.so.1 is the CUDA "
            "toolkit's stub, not the driver's",
            id="stub-library-name-from-table",
        ),
    ],
)
def test_cuinit_errors(libdir, code, message):
    r = probe(libdir, FAKECUDA_SCENARIO="init-error", FAKECUDA_INIT_ERROR=code)
    assert r["status"] == "error"
    assert r["message"] == message
    assert r["devices"] == []


def test_a_crashing_library_is_caught(libdir):
    r = probe(libdir, FAKECUDA_SCENARIO="crash")
    assert r == {
        "status": "error",
        "driver": None,
        "devices": [],
        "message": "libcuda.so.1 crashed (SIGSEGV)",
    }


def test_absent_library(tmp_path):
    r = probe(tmp_path)  # an empty directory first on the path, no libcuda anywhere
    assert r["status"] == "absent"
    assert "libcuda.so.1" in r["message"]


def test_gpus_command_with_overrides_never_loads_libcuda(libdir):
    # --gpu replaces detection: even a crashing libcuda leaves no note.
    out = subprocess.run(
        [sys.executable, "-c", "from tcv.cli.app import main; main()", "gpus", "--gpu", "cuda:90"],
        env=clean_env(LD_LIBRARY_PATH=str(libdir), FAKECUDA_SCENARIO="crash"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "crashed" not in out.stdout + out.stderr
    assert "override" in out.stdout
