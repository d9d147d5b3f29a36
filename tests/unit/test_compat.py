"""The compatibility rules of docs/spec.md §5, pure and against the real cache fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcv.cache.kernel import KernelEntry, Target
from tcv.compat import (
    NO_GPU_REASON,
    PTX_MIN_CUDA,
    check_entries,
    check_targets,
    consumer_triton_version,
    ptx_min_cuda,
    ptx_supported,
)
from tcv.gpu.discover import host_gpus
from tcv.gpu.model import Gpu, HostGpus

CACHES = Path(__file__).resolve().parents[1] / "data" / "caches"


def host(*specs: str, cuda: str | None = None) -> HostGpus:
    return host_gpus(list(specs), cuda, env={})


def entry(backend="cuda", arch="90", warp=32, triton="3.9.0", ptx=None, key="K") -> KernelEntry:
    return KernelEntry(key, "add_kernel", backend, arch, warp, triton, ptx)


# --- the PTX table -----------------------------------------------------------


@pytest.mark.parametrize(
    ("ptx", "cuda", "ok"),
    [
        pytest.param(84, (12, 4), True, id="8.4-on-12.4"),
        pytest.param(85, (12, 4), False, id="8.5-on-12.4"),
        pytest.param(85, (12, 6), True, id="8.5-on-12.6"),
        pytest.param(86, (12, 6), False, id="8.6-needs-12.7"),
        pytest.param(87, (12, 8), True, id="8.7-on-12.8"),
        pytest.param(88, (12, 8), False, id="8.8-needs-12.9"),
        pytest.param(78, (11, 8), True, id="7.8-on-11.8"),
        pytest.param(80, (11, 8), False, id="8.0-needs-12"),
        pytest.param(90, (12, 9), False, id="9.0-needs-13"),
        pytest.param(94, (13, 4), True, id="9.4-on-13.4"),
        pytest.param(94, (13, 3), False, id="9.4-needs-13.4"),
        pytest.param(43, (11, 0), True, id="older-than-table"),
        pytest.param(105, (13, 9), False, id="newer-than-known"),
    ],
)
def test_ptx_supported(ptx, cuda, ok):
    assert ptx_supported(ptx, cuda) is ok


def test_driver_release_number_is_not_a_cuda_version():
    # The Go tools compared PTX with the driver's major number (550): 550 > 8.4
    # "passes". Driver 550 supports CUDA 12.4, and the rule must use that.
    assert ptx_supported(87, (12, 4)) is False
    assert ptx_min_cuda(87) == (12, 8)


def test_ptx_table_is_monotonic():
    needs = [PTX_MIN_CUDA[k] for k in sorted(PTX_MIN_CUDA)]
    assert needs == sorted(needs)


# --- each rule, each reason ---------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "gpus", "triton", "reason"),
    [
        pytest.param(entry(), host("cuda:90", cuda="12.4"), None, None, id="fits"),
        pytest.param(
            entry(arch="80"),
            host("cuda:90"),
            None,
            "built for cuda:80 (warp 32); GPU 0 is cuda:90 (warp 32)",
            id="arch",
        ),
        pytest.param(
            entry(),
            host("hip:gfx942"),
            None,
            "built for cuda:90 (warp 32); GPU 0 is hip:gfx942 (warp 64)",
            id="backend",
        ),
        pytest.param(
            entry("hip", "gfx1100", 64),
            host("hip:gfx1100"),
            None,
            "built for hip:gfx1100 (warp 64); GPU 0 is hip:gfx1100 (warp 32)",
            id="warp",
        ),
        pytest.param(
            entry("hip", "gfx90a", None),
            host("hip:gfx90a"),
            None,
            None,
            id="missing-warp-is-the-arch-default",
        ),
        pytest.param(
            entry(ptx=87),
            host("cuda:90", cuda="12.4"),
            None,
            "built for cuda:90 (warp 32) with PTX ISA 8.7, which needs CUDA 12.8 or newer; "
            "GPU 0 has a driver for CUDA 12.4 — update the NVIDIA driver",
            id="ptx",
        ),
        pytest.param(entry(ptx=87), host("cuda:90"), None, None, id="ptx-unknown-driver"),
        pytest.param(
            entry("hip", "gfx942", 64, ptx=None),
            host("hip:gfx942", cuda="11.0"),
            None,
            None,
            id="ptx-rule-is-cuda-only",
        ),
        pytest.param(
            entry(triton="3.4.0"),
            host("cuda:90"),
            "3.9.0",
            "built by Triton 3.4.0, the consuming Triton is 3.9.0: it will never be hit",
            id="triton-version",
        ),
        pytest.param(
            entry(triton="3.1.0"),
            host("cuda:90"),
            "3.1.0+cf34004b",
            None,
            id="triton-local-version",
        ),
        pytest.param(
            entry(triton=None),
            host("cuda:90"),
            "3.9.0",
            "written by a Triton older than 3.3 (no version in its metadata), the consuming "
            "Triton is 3.9.0: it will never be hit",
            id="triton-unversioned-entry",
        ),
        pytest.param(
            entry(triton=None), host("cuda:90"), "3.2.0", None, id="triton-unversioned-old-consumer"
        ),
        pytest.param(entry(), HostGpus(), None, NO_GPU_REASON, id="no-gpu"),
        pytest.param(
            entry(backend=""),
            host("cuda:90"),
            None,
            "unknown backend (none): the metadata names no cuda or hip target",
            id="unknown-backend",
        ),
        pytest.param(
            entry(backend="xpu"),
            host("cuda:90"),
            None,
            "unknown backend ('xpu'): the metadata names no cuda or hip target",
            id="foreign-backend",
        ),
        pytest.param(
            entry(arch=""),
            host("cuda:90"),
            None,
            "unknown cuda architecture: the metadata names none",
            id="unknown-arch",
        ),
        pytest.param(
            entry(),
            HostGpus((Gpu(0, "cuda", "", 0, "GH100", None, "udev"),)),
            None,
            "built for cuda:90 (warp 32); GPU 0 has an unknown architecture (no driver "
            "library named it) — pass --gpu SPEC",
            id="gpu-arch-unknown",
        ),
        pytest.param(
            entry(arch="80"),
            host("cuda:90", "cuda:90", "hip:gfx942"),
            None,
            "built for cuda:80 (warp 32); GPUs 0, 1 are cuda:90 (warp 32); "
            "GPU 2 is hip:gfx942 (warp 64)",
            id="several-gpus-grouped",
        ),
    ],
)
def test_rule_and_reason(kernel, gpus, triton, reason):
    (verdict,) = check_entries([kernel], gpus, triton_version=triton).verdicts
    assert verdict.reason == reason
    assert verdict.compatible is (reason is None)
    assert (verdict.gpus != ()) is (reason is None)


def test_union_over_mixed_vendors():
    gpus = host("cuda:90", "hip:gfx942", "hip:gfx1100", cuda="12.8")
    entries = [
        entry(key="sm90", ptx=87),
        entry("hip", "gfx942", 64, key="mi300"),
        entry("hip", "gfx1100", 32, key="w7900"),
        entry(arch="80", key="a100"),
    ]
    result = check_entries(entries, gpus)
    assert result.compatible == ["sm90", "mi300", "w7900"]
    assert [k for k, _ in result.incompatible] == ["a100"]
    assert [result.matched(i) for i in range(3)] == [["sm90"], ["mi300"], ["w7900"]]
    assert [v.key for v in result.verdicts if 1 not in v.gpus] == ["sm90", "w7900", "a100"]
    assert {v.key: v.gpus for v in result.verdicts}["sm90"] == (0,)


def test_one_kernel_fits_two_identical_gpus():
    (verdict,) = check_entries([entry()], host("cuda:90", "cuda:90")).verdicts
    assert verdict.gpus == (0, 1)


def test_check_targets_for_the_preflight():
    targets = [
        Target("cuda", "90", 32, "3.9.0", 94, 5),
        Target("hip", "gfx942", 64, "3.9.0", None, 2),
        Target("cuda", "90", 32, "3.8.0", 88, 1),
    ]
    out = check_targets(targets, host("cuda:90", cuda="13.4"), triton_version="3.9.0")
    assert [r for _, r in out] == [
        None,
        "built for hip:gfx942 (warp 64); GPU 0 is cuda:90 (warp 32)",
        "built by Triton 3.8.0, the consuming Triton is 3.9.0: it will never be hit",
    ]
    assert out[0][0] is targets[0]


def test_check_targets_ptx_rule():
    (res,) = check_targets([Target("cuda", "90", 32, None, 94, 1)], host("cuda:90", cuda="12.9"))
    assert res[1] == (
        "built for cuda:90 (warp 32) with PTX ISA 9.4, which needs CUDA 13.4 or newer; "
        "GPU 0 has a driver for CUDA 12.9 — update the NVIDIA driver"
    )


@pytest.mark.parametrize(
    ("explicit", "expected"),
    [
        pytest.param("3.4.0", "3.4.0", id="explicit"),
        pytest.param(" 3.4.0 ", "3.4.0", id="explicit-stripped"),
        pytest.param("any", None, id="any-turns-it-off"),
    ],
)
def test_consumer_triton_version_explicit(explicit, expected):
    assert consumer_triton_version(explicit) == expected


def test_consumer_triton_version_from_the_environment():
    # The venv has the official wheel installed; its version is read from the
    # distribution metadata without importing triton.
    import importlib.metadata
    import sys

    installed = importlib.metadata.version("triton")
    was_imported = "triton" in sys.modules
    assert consumer_triton_version(None) == installed.split("+")[0]
    assert ("triton" in sys.modules) is was_imported


# --- the real fixtures, with index.json as the oracle -------------------------


def _index() -> list[dict]:
    return json.loads((CACHES / "index.json").read_text())["entries"]


def _scanned() -> dict[str, KernelEntry]:
    from tcv.cache.scan import scan_cache

    out: dict[str, KernelEntry] = {}
    for fixture in sorted({e["fixture"] for e in _index()}):
        for e in scan_cache(CACHES / fixture).entries:
            out[e.key] = e
    return out


@pytest.fixture(scope="module")
def fixtures() -> tuple[list[dict], dict[str, KernelEntry]]:
    index = _index()
    scanned = _scanned()
    assert {e["key"] for e in index} <= set(scanned), "scan misses fixture entries"
    return index, scanned


def _spec(e: dict) -> str:
    warp = f":{e['warp_size']}" if e["warp_size"] else ""
    return f"{e['backend']}:{e['arch']}{warp}"


def _warp(e: dict) -> int:
    from tcv.gpu.spec import default_warp_size

    return e["warp_size"] or default_warp_size(e["backend"], e["arch"])


def test_fixtures_fit_their_own_target(fixtures):
    index, scanned = fixtures
    for e in index:
        gpus = host(_spec(e), cuda="13.9")
        (v,) = check_entries([scanned[e["key"]]], gpus).verdicts
        assert v.compatible, (e["key"], v.reason)


def test_fixtures_union_of_every_target_fits_all(fixtures):
    index, scanned = fixtures
    specs = sorted({_spec(e) for e in index})
    result = check_entries([scanned[e["key"]] for e in index], host(*specs, cuda="13.9"))
    assert result.incompatible == []
    for i, spec in enumerate(specs):
        assert sorted(result.matched(i)) == sorted(e["key"] for e in index if _spec(e) == spec)


def test_fixtures_other_arch(fixtures):
    index, scanned = fixtures
    for e in (e for e in index if e["backend"] == "cuda"):
        other = "75" if e["arch"] != "75" else "86"
        (v,) = check_entries([scanned[e["key"]]], host(f"cuda:{other}")).verdicts
        assert v.reason == (
            f"built for cuda:{e['arch']} (warp 32); GPU 0 is cuda:{other} (warp 32)"
        )


def test_fixtures_other_backend(fixtures):
    index, scanned = fixtures
    for e in index:
        spec, shown = ("hip:gfx942", "hip:gfx942 (warp 64)")
        if e["backend"] == "hip":
            spec, shown = ("cuda:90", "cuda:90 (warp 32)")
        (v,) = check_entries([scanned[e["key"]]], host(spec)).verdicts
        assert v.reason == (
            f"built for {e['backend']}:{e['arch']} (warp {_warp(e)}); GPU 0 is {shown}"
        )


def test_fixtures_other_warp(fixtures):
    index, scanned = fixtures
    hip = [e for e in index if e["backend"] == "hip"]
    assert hip, "the fixtures have HIP kernels"
    for e in hip:
        other = 32 if _warp(e) == 64 else 64
        (v,) = check_entries([scanned[e["key"]]], host(f"hip:{e['arch']}:{other}")).verdicts
        assert v.reason == (
            f"built for hip:{e['arch']} (warp {_warp(e)}); GPU 0 is hip:{e['arch']} (warp {other})"
        )


def test_fixtures_ptx_against_an_older_driver(fixtures):
    index, scanned = fixtures
    with_ptx = [e for e in index if e["backend"] == "cuda" and e["ptx_version"]]
    assert with_ptx, "the fixtures have CUDA kernels with a PTX version"
    for e in with_ptx:
        need = ptx_min_cuda(e["ptx_version"])
        assert need is not None
        older = (need[0], need[1] - 1) if need[1] else (need[0] - 1, 9)
        gpus = host(f"cuda:{e['arch']}", cuda=f"{older[0]}.{older[1]}")
        (v,) = check_entries([scanned[e["key"]]], gpus).verdicts
        ptx = f"{e['ptx_version'] // 10}.{e['ptx_version'] % 10}"
        assert v.reason == (
            f"built for cuda:{e['arch']} (warp 32) with PTX ISA {ptx}, which needs CUDA "
            f"{need[0]}.{need[1]} or newer; GPU 0 has a driver for CUDA {older[0]}.{older[1]} "
            "— update the NVIDIA driver"
        )
        exact = host(f"cuda:{e['arch']}", cuda=f"{need[0]}.{need[1]}")
        assert check_entries([scanned[e["key"]]], exact).compatible == [e["key"]]


def _recorded(version: str) -> bool:
    """Triton writes its version into the metadata from 3.3 on (docs/spec.md §4)."""
    return tuple(int(p) for p in version.split(".")[:2]) >= (3, 3)


def test_fixtures_never_hit_by_another_triton(fixtures):
    index, scanned = fixtures
    assert any(_recorded(e["triton_version"]) for e in index)
    assert any(not _recorded(e["triton_version"]) for e in index)
    for e in index:
        kernel = scanned[e["key"]]
        gpus = host(_spec(e), cuda="13.9")

        def reason(consumer: str, kernel=kernel, gpus=gpus) -> str | None:
            return check_entries([kernel], gpus, triton_version=consumer).verdicts[0].reason

        if _recorded(e["triton_version"]):
            assert reason("3.0.0") == (
                f"built by Triton {e['triton_version']}, the consuming Triton is 3.0.0: "
                "it will never be hit"
            )
            assert reason(e["triton_version"]) is None
        else:
            assert reason("3.9.0") == (
                "written by a Triton older than 3.3 (no version in its metadata), the "
                "consuming Triton is 3.9.0: it will never be hit"
            )
            assert reason("3.2.0") is None  # an older consumer: cannot be judged


def test_fixtures_without_gpu(fixtures):
    index, scanned = fixtures
    result = check_entries([scanned[e["key"]] for e in index], HostGpus())
    assert result.compatible == []
    assert {r for _, r in result.incompatible} == {NO_GPU_REASON}
