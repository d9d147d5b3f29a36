"""Driver-library probes: the forked child, and reading what the libraries answer."""

from __future__ import annotations

import os
import signal

import pytest

from tcv.gpu import cuda, hip
from tcv.gpu.probe import run_isolated


def _answer():
    return {"pid": os.getpid(), "devices": [1, 2]}


def _raises():
    raise RuntimeError("driver said no")


def _segfaults():
    os.kill(os.getpid(), signal.SIGSEGV)
    return {}


def _hangs():
    signal.pause()  # a wedged driver: never returns
    return {}


def _exits():
    os._exit(7)


def test_probe_runs_in_a_child_and_returns_its_answer():
    outcome = run_isolated(_answer)
    assert outcome.error is None
    assert outcome.data["devices"] == [1, 2]
    assert outcome.data["pid"] != os.getpid()


@pytest.mark.parametrize(
    ("fn", "timeout", "error"),
    [
        pytest.param(_raises, 10, "RuntimeError: driver said no", id="exception"),
        pytest.param(_segfaults, 10, "crashed (SIGSEGV)", id="segfault"),
        pytest.param(_hangs, 0.3, "did not answer within 0s (killed)", id="hang"),
        pytest.param(_exits, 10, "exited with status 7, no answer", id="exit"),
    ],
)
def test_probe_failures_become_an_error_not_a_crash(fn, timeout, error):
    outcome = run_isolated(fn, timeout=timeout)
    assert outcome.data is None
    assert outcome.error == error


def test_cuda_report_from_json():
    report = cuda.report_from_json(
        {
            "status": "ok",
            "driver": 12040,
            "devices": [
                {
                    "ordinal": 0,
                    "name": "NVIDIA H100",
                    "arch": "90",
                    "warp_size": 32,
                    "max_shared_memory": 232448,
                    "uuid": "GPU-x",
                    "pci_address": "0000:3b:00.0",
                }
            ],
        }
    )
    assert report.driver == (12, 4)
    assert report.devices[0].arch == "90"


def test_cuda_uuid_text_is_nvidia_smi_form():
    raw = bytes(range(16))
    assert cuda._uuid_text(raw) == "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"


def _props(offset: int, arch: bytes, size: int = 2048) -> bytes:
    buf = bytearray(size)
    buf[0:19] = b"AMD Instinct MI300X"
    buf[offset : offset + len(arch)] = arch
    return bytes(buf)


@pytest.mark.parametrize(
    ("buf", "arch"),
    [
        pytest.param(_props(396, b"gfx942:sramecc+:xnack-"), "gfx942", id="rocm5-layout"),
        pytest.param(_props(1160, b"gfx90a:sramecc+:xnack-"), "gfx90a", id="rocm6-layout"),
        pytest.param(_props(1160, b"gfx1100"), "gfx1100", id="no-features"),
        pytest.param(_props(396, b""), None, id="nothing"),
    ],
)
def test_hip_arch_from_properties_of_any_layout(buf, arch):
    assert hip.arch_from_properties(buf) == arch


def test_hip_version_text():
    assert hip.hip_version_text(50221153) == "5.2.21153"
    assert hip.hip_version_text(60342134) == "6.3.42134"
