"""``tcv gpus`` in-process, with GPUs given as overrides (detection: integration tests)."""

from __future__ import annotations

import json

import pytest

from tcv.cli.app import Tcv
from tcv.errors import EXIT_USAGE


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    monkeypatch.delenv("TCV_GPUS", raising=False)
    monkeypatch.delenv("TCV_CUDA_DRIVER", raising=False)


def run(capsys, *argv):
    _, code = Tcv.run(["tcv", *argv], exit=False)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_the_spec_shape(capsys):
    code, out, _ = run(
        capsys,
        "gpus",
        "--gpu",
        "cuda:90",
        "--gpu",
        "hip:gfx1100",
        "--cuda-driver",
        "12.4",
        "--json",
    )
    assert code == 0
    assert json.loads(out) == {
        "gpus": [
            {
                "index": 0,
                "backend": "cuda",
                "arch": "90",
                "warp_size": 32,
                "name": "cuda:90",
                "driver": "12.4",
                "source": "override",
            },
            {
                "index": 1,
                "backend": "hip",
                "arch": "gfx1100",
                "warp_size": 32,
                "name": "hip:gfx1100",
                "driver": None,
                "source": "override",
            },
        ]
    }


def test_table(capsys):
    code, out, _ = run(capsys, "gpus", "--gpu", "hip:gfx942", "--gpu", "cuda:80:32")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "INDEX",
        "BACKEND",
        "ARCH",
        "WARP",
        "NAME",
        "DRIVER",
        "SOURCE",
        "PCI",
    ]
    assert lines[1].split()[:4] == ["0", "hip", "gfx942", "64"]
    assert lines[2].split()[:4] == ["1", "cuda", "80", "32"]


def test_tcv_gpus_env(capsys, monkeypatch):
    monkeypatch.setenv("TCV_GPUS", "hip:gfx90a;cuda:100")
    code, out, _ = run(capsys, "gpus", "--json")
    assert code == 0
    assert [(g["backend"], g["arch"]) for g in json.loads(out)["gpus"]] == [
        ("hip", "gfx90a"),
        ("cuda", "100"),
    ]


def test_switches_before_the_command_name(capsys):
    code, out, _ = run(capsys, "--gpu", "cuda:90", "gpus", "--json")
    assert code == 0
    assert json.loads(out)["gpus"][0]["arch"] == "90"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        pytest.param(["--gpu", "cuda:9.0"], "bad GPU SPEC 'cuda:9.0'", id="bad-spec"),
        pytest.param(
            ["--gpu", "cuda:90", "--cuda-driver", "new"], "bad CUDA driver version", id="bad-driver"
        ),
    ],
)
def test_bad_usage_is_one_line(capsys, argv, needle):
    code, out, err = run(capsys, "gpus", *argv)
    assert code == EXIT_USAGE
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in out + err


def test_help_documents_the_sources(capsys):
    code, out, _ = run(capsys, "gpus", "--help")
    assert code == 0
    for word in ("udev", "KFD", "libcuda.so.1", "libamdhip64", "--gpu", "TCV_GPUS", "--json"):
        assert word in out


@pytest.mark.parametrize("how", ["switch", "env"])
def test_a_driver_release_is_mapped_to_its_cuda_version(capsys, monkeypatch, how):
    """What nvidia-smi prints first (550.54.15) is taken as the driver it is."""
    argv = ["gpus", "--gpu", "cuda:90", "--json"]
    if how == "switch":
        argv += ["--cuda-driver", "550.54.15"]
    else:
        monkeypatch.setenv("TCV_CUDA_DRIVER", "550.54.15")
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert json.loads(out)["gpus"][0]["driver"] == "12.4"
