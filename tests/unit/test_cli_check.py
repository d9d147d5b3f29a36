"""``tcv check DIR`` in-process against the real fixtures, GPUs given as overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcv.cli.app import Tcv
from tcv.errors import EXIT_INCOMPATIBLE, EXIT_USAGE

CACHES = Path(__file__).resolve().parents[1] / "data" / "caches"
FIXTURE = CACHES / "triton-3.9"


def _index() -> list[dict]:
    entries = json.loads((CACHES / "index.json").read_text())["entries"]
    return [e for e in entries if e["fixture"] == "triton-3.9"]


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    monkeypatch.delenv("TCV_GPUS", raising=False)
    monkeypatch.delenv("TCV_CUDA_DRIVER", raising=False)


def run(capsys, *argv):
    _, code = Tcv.run(["tcv", "check", *argv], exit=False)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_mixed_host(capsys):
    index = _index()
    code, out, err = run(
        capsys,
        str(FIXTURE),
        "--gpu",
        "cuda:90",
        "--gpu",
        "hip:gfx942",
        "--cuda-driver",
        "13.4",
        "--triton-version",
        "3.9.0",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"compatible", "incompatible"}
    fits = {
        e["key"] for e in index if (e["backend"], e["arch"]) in {("cuda", "90"), ("hip", "gfx942")}
    }
    assert set(data["compatible"]) == fits
    assert {i["key"] for i in data["incompatible"]} == {e["key"] for e in index} - fits
    assert all(set(i) == {"key", "reason"} and i["reason"] for i in data["incompatible"])


def test_nothing_fits_exits_4_with_one_line(capsys):
    code, out, err = run(capsys, str(FIXTURE), "--gpu", "cuda:75", "--json")
    assert code == EXIT_INCOMPATIBLE
    assert json.loads(out)["compatible"] == []
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert f"none of the {len(_index())} kernels" in lines[0]


def test_ptx_rule_with_old_driver(capsys):
    code, out, _ = run(capsys, str(FIXTURE), "--gpu", "cuda:90", "--cuda-driver", "12.4", "--json")
    assert code == EXIT_INCOMPATIBLE
    reasons = {i["key"]: i["reason"] for i in json.loads(out)["incompatible"]}
    sm90 = [e for e in _index() if e["arch"] == "90"]
    assert sm90
    for e in sm90:
        assert "GPU 0 has a driver for CUDA 12.4 — update the NVIDIA driver" in reasons[e["key"]]


def test_never_hit_with_another_triton(capsys):
    code, out, _ = run(
        capsys, str(FIXTURE), "--gpu", "hip:gfx942", "--triton-version", "3.4.0", "--json"
    )
    assert code == EXIT_INCOMPATIBLE
    reasons = [i["reason"] for i in json.loads(out)["incompatible"]]
    assert "built by Triton 3.9.0, the consuming Triton is 3.4.0: it will never be hit" in reasons


def test_table_lists_verdicts_and_per_gpu_counts(capsys):
    code, out, _ = run(
        capsys,
        str(FIXTURE),
        "--gpu",
        "hip:gfx942",
        "--gpu",
        "hip:gfx1100",
        "--triton-version",
        "any",
    )
    assert code == 0
    index = _index()
    n942 = sum(1 for e in index if e["arch"] == "gfx942")
    n1100 = sum(1 for e in index if e["arch"] == "gfx1100")
    assert f"{n942 + n1100} of {len(index)} kernels fit this host" in out
    assert n942 > 1 and n1100 == 1  # the fixtures' mix: both plural and singular shown
    assert f"GPU 0 hip:gfx942:64: {n942} kernels" in out
    assert f"GPU 1 hip:gfx1100:32: {n1100} kernel\n" in out
    assert "fits GPU 0" in out and "fits GPU 1" in out
    assert "consuming Triton: unknown" in out


def test_env_gpus(capsys, monkeypatch):
    monkeypatch.setenv("TCV_GPUS", "hip:gfx1100")
    monkeypatch.setenv("TCV_CUDA_DRIVER", "13.9")
    code, out, _ = run(capsys, str(FIXTURE), "--json")
    assert code == 0
    assert json.loads(out)["compatible"] == [e["key"] for e in _index() if e["arch"] == "gfx1100"]


def test_empty_cache_nothing_fits(capsys, tmp_path):
    code, out, err = run(capsys, str(tmp_path), "--gpu", "cuda:90", "--json")
    assert code == EXIT_INCOMPATIBLE
    assert json.loads(out) == {"compatible": [], "incompatible": []}
    assert "no kernels in" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        pytest.param(
            ["/nonexistent/cache", "--gpu", "cuda:90"], "does not exist", id="missing-dir"
        ),
        pytest.param(
            [str(FIXTURE), "-i", "example.com/x", "--gpu", "cuda:90"],
            "give a cache DIR or -i IMAGE, not both",
            id="dir-and-image",
        ),
        pytest.param([str(FIXTURE), "--gpu", "cuda"], "bad GPU SPEC", id="bad-spec"),
    ],
)
def test_bad_usage(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in out + err
