"""Detection end to end under umockdev: recorded PCI devices and KFD topology
(tests/data/udev), the stand-in libcuda, the real libamdhip64.

``umockdev-run`` replaces /sys, libudev's view and the recorded /dev nodes for the
child it runs; every case runs discovery (or the ``tcv`` command) in such a child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcv.compat import NO_GPU_REASON
from tests.harness import fakecuda

pytestmark = pytest.mark.integration

UDEV = Path(__file__).resolve().parents[1] / "data" / "udev"
CACHES = Path(__file__).resolve().parents[1] / "data" / "caches"

DISCOVER = """
import dataclasses, json, sys
from tcv.gpu.discover import host_gpus, select_visible
h = host_gpus()
if len(sys.argv) > 1:
    h = select_visible(h, sys.argv[1].split(","), sys.argv[2] or None)
print(json.dumps({"gpus": [dataclasses.asdict(g) for g in h.gpus],
                  "cuda_driver": h.cuda_driver, "notes": list(h.notes)}))
"""
TCV = "import sys; from tcv.cli.app import main; sys.argv[0] = 'tcv'; main()"


@pytest.fixture(scope="module")
def libdir(tmp_path_factory):
    return fakecuda.build(tmp_path_factory.mktemp("fakecuda"))


def umockdev(recording: str | None, argv: list[str], libdir=None, scenario=None, check=True):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAKECUDA_", "TCV_")) and k != "LD_LIBRARY_PATH"
    }
    if libdir is not None:
        env["LD_LIBRARY_PATH"] = str(libdir)
    if scenario is not None:
        env["FAKECUDA_SCENARIO"] = scenario
    devices = ["--device", str(UDEV / f"{recording}.umockdev")] if recording else []
    out = subprocess.run(
        ["umockdev-run", *devices, "--", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def discover(recording: str | None, *args: str, libdir=None, scenario=None) -> dict:
    out = umockdev(recording, [sys.executable, "-c", DISCOVER, *args], libdir, scenario)
    return json.loads(out.stdout)


def short(gpus: list[dict]) -> list[tuple]:
    return [(g["index"], g["backend"], g["arch"], g["warp_size"], g["source"]) for g in gpus]


def test_no_gpu_host_loads_no_driver_library(libdir):
    # The stand-in would crash if loaded: the note would say so.
    host = discover("none", libdir=libdir, scenario="crash")
    assert host == {
        "gpus": [],
        "cuda_driver": None,
        "notes": ["no NVIDIA or AMD accelerator found"],
    }


def test_no_gpu_host_tcv_gpus_and_check():
    out = umockdev("none", [sys.executable, "-c", TCV, "gpus"])
    assert "no accelerator found on this host" in out.stdout
    assert "--gpu SPEC" in out.stdout
    out = umockdev("none", [sys.executable, "-c", TCV, "gpus", "--json"])
    assert json.loads(out.stdout) == {"gpus": []}
    out = umockdev(
        "none",
        [sys.executable, "-c", TCV, "check", str(CACHES / "triton-3.9"), "--json"],
        check=False,
    )
    assert out.returncode == 4
    reasons = {i["reason"] for i in json.loads(out.stdout)["incompatible"]}
    assert reasons == {NO_GPU_REASON}


def test_h100_without_libcuda_is_seen_but_unnamed(tmp_path):
    host = discover("h100", libdir=tmp_path)  # nothing on the library path
    (gpu,) = host["gpus"]
    assert (gpu["backend"], gpu["arch"], gpu["source"]) == ("cuda", "", "udev")
    assert gpu["name"] == "GH100 [H100 SXM5 80GB]"
    assert gpu["pci_address"] == "0000:3b:00.0"
    assert host["notes"][0].startswith("an NVIDIA GPU is present but libcuda.so.1 cannot be loaded")


def test_h100_with_libcuda(libdir):
    host = discover("h100", libdir=libdir, scenario="h100")
    assert host["cuda_driver"] == [12, 4]
    (gpu,) = host["gpus"]
    assert gpu == {
        "index": 0,
        "backend": "cuda",
        "arch": "90",
        "warp_size": 32,
        "name": "NVIDIA H100 80GB HBM3",
        "driver": "12.4",
        "source": "cuda",
        "pci_address": "0000:3b:00.0",
        "device_nodes": [],
        "uuid": "GPU-5e3a1f20-900d-4c11-8a7e-0123456789ab",
        "max_shared_memory": 232448,
    }
    assert host["notes"] == []


def test_h100_with_a_crashing_libcuda_still_lists_the_gpu(libdir):
    host = discover("h100", libdir=libdir, scenario="crash")
    assert short(host["gpus"]) == [(0, "cuda", "", 0, "udev")]
    assert host["notes"] == ["libcuda.so.1 crashed (SIGSEGV)"]


def test_mi300x_from_kfd_without_rocm(libdir):
    # KFD names the arch: neither libcuda (would crash) nor libamdhip64 is loaded.
    host = discover("mi300x", libdir=libdir, scenario="crash")
    (gpu,) = host["gpus"]
    assert (gpu["backend"], gpu["arch"], gpu["warp_size"], gpu["source"]) == (
        "hip",
        "gfx942",
        64,
        "kfd",
    )
    assert gpu["name"] == "Aqua Vanjaram [Instinct MI300X]"
    assert gpu["device_nodes"] == ["/dev/dri/card0", "/dev/dri/renderD128"]
    assert host["notes"] == []


def test_mi300x_without_kfd_asks_the_real_libamdhip64():
    host = discover("mi300x-no-kfd")
    assert short(host["gpus"]) == [(0, "hip", "", 0, "udev")]
    assert host["notes"] == ["libamdhip64.so.5: hipGetDeviceCount: no device (100)"]


def test_both_vendors(libdir):
    host = discover("both", libdir=libdir, scenario="two")
    assert short(host["gpus"]) == [
        (0, "cuda", "90", 32, "cuda"),
        (1, "cuda", "80", 32, "cuda"),
        (2, "hip", "gfx942", 64, "kfd"),
        (3, "hip", "gfx1100", 32, "kfd"),  # RDNA3: wave32
    ]
    assert host["cuda_driver"] == [12, 4]


def test_both_vendors_restricted_to_a_containers_devices(libdir):
    host = discover("both", "/dev/kfd,/dev/dri/renderD129", "1", libdir=libdir, scenario="two")
    assert short(host["gpus"]) == [(1, "cuda", "80", 32, "cuda"), (3, "hip", "gfx1100", 32, "kfd")]


def test_both_vendors_check_is_the_union(libdir):
    out = umockdev(
        "both",
        [
            sys.executable,
            "-c",
            TCV,
            "check",
            str(CACHES / "triton-3.9"),
            "--cuda-driver",
            "13.9",
            "--triton-version",
            "any",
            "--json",
        ],
        libdir,
        "two",
    )
    index = [
        e
        for e in json.loads((CACHES / "index.json").read_text())["entries"]
        if e["fixture"] == "triton-3.9"
    ]
    wanted = {("cuda", "90"), ("cuda", "80"), ("hip", "gfx942"), ("hip", "gfx1100")}
    assert set(json.loads(out.stdout)["compatible"]) == {
        e["key"] for e in index if (e["backend"], e["arch"]) in wanted
    }


def test_tcv_gpus_json_under_umockdev(libdir):
    out = umockdev("both", [sys.executable, "-c", TCV, "gpus", "--json"], libdir, "two")
    gpus = json.loads(out.stdout)["gpus"]
    assert [set(g) for g in gpus] == [
        {"index", "backend", "arch", "warp_size", "name", "driver", "source"}
    ] * 4
    assert [(g["arch"], g["driver"]) for g in gpus] == [
        ("90", "12.4"),
        ("80", "12.4"),
        ("gfx942", None),
        ("gfx1100", None),
    ]


def test_without_any_pci_view_the_driver_libraries_are_asked(libdir):
    # An empty testbed: sysfs shows no PCI device at all, which no real machine
    # has, so udev is no guide and libcuda is probed directly. (libamdhip64 is
    # not: without /dev/kfd, HIP cannot reach an AMD GPU.)
    host = discover(None, libdir=libdir, scenario="h100")
    assert short(host["gpus"]) == [(0, "cuda", "90", 32, "cuda")]
    assert host["gpus"][0]["pci_address"] == "0000:3b:00.0"
    assert host["notes"] == [
        "udev unavailable (udev lists no PCI device at all); asked the driver libraries directly"
    ]


def test_tcv_gpus_table_shows_unnamed_gpu_and_the_note(libdir):
    out = umockdev("h100", [sys.executable, "-c", TCV, "gpus"], libdir, "crash")
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["INDEX", "BACKEND", "ARCH", "WARP"]
    assert lines[1].split()[:4] == ["0", "cuda", "?", "?"]
    assert "GH100 [H100 SXM5 80GB]" in lines[1]
    assert "note: libcuda.so.1 crashed (SIGSEGV)" in lines
    assert "Traceback" not in out.stdout + out.stderr
