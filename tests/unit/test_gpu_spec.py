"""GPU SPEC overrides and the architecture facts they rely on (docs/spec.md §2, §5)."""

from __future__ import annotations

import pytest

from tcv.errors import EXIT_USAGE, UsageError
from tcv.gpu.spec import (
    default_warp_size,
    hip_arch,
    parse_cuda_version,
    parse_gpu_spec,
    parse_gpu_specs,
)


@pytest.mark.parametrize(
    ("text", "backend", "arch", "warp"),
    [
        pytest.param("cuda:90", "cuda", "90", 32, id="cuda-default-warp"),
        pytest.param("cuda:90:32", "cuda", "90", 32, id="cuda-explicit-warp"),
        pytest.param("cuda:120", "cuda", "120", 32, id="cuda-blackwell-3-digits"),
        pytest.param("CUDA:sm_80", "cuda", "80", 32, id="cuda-sm-prefix-and-case"),
        pytest.param("hip:gfx942", "hip", "gfx942", 64, id="hip-cdna3-wave64"),
        pytest.param("hip:gfx90a", "hip", "gfx90a", 64, id="hip-cdna2-hex-stepping"),
        pytest.param("hip:gfx906", "hip", "gfx906", 64, id="hip-gcn-wave64"),
        pytest.param("hip:gfx1030", "hip", "gfx1030", 32, id="hip-rdna2-wave32"),
        pytest.param("hip:gfx1100", "hip", "gfx1100", 32, id="hip-rdna3-wave32"),
        pytest.param("hip:gfx1201", "hip", "gfx1201", 32, id="hip-rdna4-wave32"),
        pytest.param("hip:gfx1100:64", "hip", "gfx1100", 64, id="hip-explicit-warp-wins"),
        pytest.param("hip:gfx942:32", "hip", "gfx942", 32, id="hip-explicit-warp-wins-cdna"),
        pytest.param("hip:gfx90a:sramecc+:xnack-", "hip", "gfx90a", 64, id="hip-gcnarchname"),
        pytest.param(" hip:GFX942 ", "hip", "gfx942", 64, id="hip-spaces-and-case"),
    ],
)
def test_parse_gpu_spec(text, backend, arch, warp):
    gpu = parse_gpu_spec(text, index=3)
    assert (gpu.backend, gpu.arch, gpu.warp_size) == (backend, arch, warp)
    assert gpu.index == 3
    assert gpu.source == "override"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("", "expected backend:arch", id="empty"),
        pytest.param("cuda", "expected backend:arch", id="no-arch"),
        pytest.param("rocm:gfx942", "unknown backend 'rocm'", id="unknown-backend"),
        pytest.param("cuda:9.0", "is not major*10+minor", id="cuda-dotted"),
        pytest.param("cuda:gfx942", "is not major*10+minor", id="cuda-with-hip-arch"),
        pytest.param("hip:942", "is not a gfx name", id="hip-without-gfx"),
        pytest.param("cuda:90:48", "warp size 48 is neither 32 nor 64", id="bad-warp"),
        pytest.param("cuda:90:a100", "unexpected 'a100'", id="cuda-extra-field"),
        pytest.param("hip:gfx942:fast", "unexpected 'fast'", id="hip-junk-field"),
    ],
)
def test_bad_spec_is_one_usage_line(text, needle):
    with pytest.raises(UsageError) as info:
        parse_gpu_spec(text)
    line = info.value.line()
    assert needle in line
    assert "cuda:90, cuda:90:32, hip:gfx942 or hip:gfx1100:32" in line
    assert "\n" not in line
    assert info.value.exit_code == EXIT_USAGE


def test_parse_gpu_specs_indexes_and_splits_semicolons():
    gpus = parse_gpu_specs(["cuda:90;hip:gfx942", " ", "hip:gfx1100"])
    assert [(g.index, g.backend, g.arch, g.warp_size) for g in gpus] == [
        (0, "cuda", "90", 32),
        (1, "hip", "gfx942", 64),
        (2, "hip", "gfx1100", 32),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("12.4", (12, 4), id="major-minor"),
        pytest.param("13", (13, 0), id="major-only"),
        pytest.param("12.8.1", (12, 8), id="patch-ignored"),
        pytest.param("12040", (12, 4), id="driver-api-integer"),
        pytest.param("13000", (13, 0), id="driver-api-integer-13"),
        pytest.param("550.54.15", (12, 4), id="driver-release"),
        pytest.param("550.54.14", (12, 4), id="driver-release-minimum"),
        pytest.param("550", (12, 3), id="driver-branch-only"),
        pytest.param("535.183.01", (12, 2), id="driver-535"),
        pytest.param("470.256.02", (11, 4), id="driver-470"),
        pytest.param("580.95.05", (13, 0), id="driver-580"),
        pytest.param("999.1", (13, 0), id="driver-newer-than-table"),
    ],
)
def test_parse_cuda_version(text, expected):
    assert parse_cuda_version(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("twelve", id="words"),
        pytest.param("12.x", id="letter-minor"),
        pytest.param("", id="empty"),
        pytest.param("v12", id="prefix"),
        pytest.param("550.x", id="driver-letter"),
        pytest.param("1200.1", id="four-digit-major"),
    ],
)
def test_bad_cuda_version(text):
    with pytest.raises(UsageError, match="bad CUDA driver version"):
        parse_cuda_version(text)


def test_driver_older_than_the_table_is_refused_with_what_to_give():
    with pytest.raises(UsageError, match="older than any CUDA version") as err:
        parse_cuda_version("375.26")
    assert "--cuda-driver" in err.value.line()


def test_driver_release_keeps_the_ptx_rule_on():
    """A driver release (what nvidia-smi prints first) must not switch the PTX rule
    off: 525 supports CUDA 12.0, too old for a PTX 8.4 (CUDA 12.4) kernel."""
    from tcv.compat import PTX_MIN_CUDA

    assert parse_cuda_version("525.60.13") < PTX_MIN_CUDA[84]
    assert parse_cuda_version("550.54.15") >= PTX_MIN_CUDA[84]


def test_hip_arch_drops_features():
    assert hip_arch("gfx942:sramecc+:xnack-") == "gfx942"


@pytest.mark.parametrize(
    ("backend", "arch", "warp"),
    [
        pytest.param("cuda", "100", 32, id="nvidia"),
        pytest.param("hip", "gfx908", 64, id="cdna1"),
        pytest.param("hip", "gfx950", 64, id="cdna4"),
        pytest.param("hip", "gfx1151", 32, id="rdna3.5"),
    ],
)
def test_default_warp_size(backend, arch, warp):
    assert default_warp_size(backend, arch) == warp
