"""Autotuning results: device names, labels, the manifest section, the scan,
packing and the install verdict (tcv.cache.autotune, tcv.autotune.pack)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tcv.autotune.pack import AutotuneRequest, check_request, pack_autotune
from tcv.cache import autotune
from tcv.cache.autotune import AutotuneEntry
from tcv.cache.kernel import FileInfo
from tcv.cache.scan import AUTOTUNE_HINT, scan_cache, scan_layout
from tcv.errors import CreateError, UsageError
from tcv.gpu.model import Gpu, HostGpus
from tcv.gpu.spec import parse_gpu_spec
from tests.data.layouts import inductor_tree

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
KEY = "ATKYRS2BXABC2ERTSJHQ72BIBWPCXOJM3SAWLDVRALXZYQX4SRJA"
# What runtime/autotuner.py check_disk_cache writes: config.__dict__ and its timings.
RESULTS = {
    "key": [1024, "torch.float32"],
    "configs_timings": [
        [
            {
                "kwargs": {"BLOCK": 128},
                "num_warps": 4,
                "num_ctas": 1,
                "num_stages": 3,
                "maxnreg": None,
                "pre_hook": None,
                "ir_override": None,
            },
            [0.01, 0.009, 0.011],
        ]
    ],
}


def cuda_gpu(name: str, index: int = 0, source: str = "cuda") -> Gpu:
    return Gpu(index, "cuda", "90", 32, name=name, source=source)


def write_results(root: Path, key: str = KEY, doc: object = RESULTS) -> Path:
    (root / key).mkdir(parents=True)
    path = root / key / "add_kernel.autotune.json"
    path.write_text(json.dumps(doc))
    return path


# ---------------------------------------------------------------- device names


@pytest.mark.parametrize(
    "text, valid",
    [
        pytest.param(H100, True, id="nvidia"),
        pytest.param("AMD Instinct MI300X", True, id="amd"),
        pytest.param("", False, id="empty"),
        pytest.param(" padded ", False, id="blanks"),
        pytest.param("evil\x1b[31m", False, id="escape"),
        pytest.param("tab\there", False, id="tab"),
        pytest.param("naïve", False, id="non-ascii"),
        pytest.param("x" * 129, False, id="too-long"),
        pytest.param("x" * 128, True, id="longest"),
        pytest.param(42, False, id="not-a-string"),
    ],
)
def test_valid_device(text, valid):
    assert (autotune.valid_device(text) == text) is valid


def test_check_device_strips_and_refuses_with_one_line():
    assert autotune.check_device(f"  {H100} ") == H100
    with pytest.raises(UsageError, match="is not a GPU device name") as err:
        autotune.check_device("bad\nname")
    assert "\n" not in err.value.line().replace("\\n", "")


@pytest.mark.parametrize(
    "gpus, device, why",
    [
        pytest.param([cuda_gpu(H100)], H100, "", id="one"),
        pytest.param([cuda_gpu(H100), cuda_gpu(H100, 1)], H100, "", id="two-of-one-model"),
        pytest.param([cuda_gpu(H100), cuda_gpu(A100, 1)], None, "2 GPU models", id="two-models"),
        pytest.param([], None, "no GPU", id="none"),
        pytest.param([parse_gpu_spec("cuda:90")], None, "no driver names", id="spec"),
        pytest.param([cuda_gpu("GH100 [H100]", source="udev")], None, "no driver", id="udev"),
    ],
)
def test_host_device(gpus, device, why):
    found, reason = autotune.host_device(HostGpus(tuple(gpus)))
    assert found == device
    assert why in reason


@pytest.mark.parametrize(
    "gpus, expected",
    [
        pytest.param([cuda_gpu(H100)], None, id="same-model"),
        pytest.param([cuda_gpu(A100), cuda_gpu(H100, 1)], None, id="one-of-two"),
        pytest.param(
            [cuda_gpu(A100)], f"measured on {H100}, not on this host's {A100}", id="other"
        ),
        pytest.param(
            [parse_gpu_spec("cuda:90")],
            f"measured on {H100}; unknown device name for this host's GPU",
            id="spec-has-no-name",
        ),
        pytest.param(
            [], f"measured on {H100}; unknown device name for this host's GPU", id="no-gpu"
        ),
    ],
)
def test_mismatch(gpus, expected):
    assert autotune.mismatch(H100, gpus) == expected


# ---------------------------------------------------------------- results files


@pytest.mark.parametrize(
    "doc, problem",
    [
        pytest.param(RESULTS, None, id="triton"),
        pytest.param({"configs_timings": []}, None, id="empty-list"),
        pytest.param({"configs_timings": [[{"num_warps": 4}, 0.5]]}, None, id="scalar-timing"),
        pytest.param([], "is not a JSON object", id="array"),
        pytest.param({"key": []}, "no configs_timings", id="no-timings"),
        pytest.param({"configs_timings": [[{}, 1], 2]}, "not a [config, timings]", id="bad-pair"),
        pytest.param({"configs_timings": [[{"a b": 1}, 1]]}, "not a name", id="bad-field"),
        pytest.param({"configs_timings": [[{}, ["x"]]]}, "not numbers", id="bad-timing"),
        pytest.param({"configs_timings": [[{}, True]]}, "not numbers", id="bool-timing"),
    ],
)
def test_results_problem(doc, problem):
    got = autotune.results_problem(doc)
    assert (got is None) if problem is None else (problem in got)


# ---------------------------------------------------------------- labels, manifest


def test_labels_round_trip():
    entry = AutotuneEntry(KEY, {"f.autotune.json": FileInfo(10, "ab" * 32)})
    rec = autotune.read_labels(autotune.labels(H100, [entry]))
    assert rec == autotune.Recorded(H100, 1)
    assert rec.to_json() == {"device": H100, "count": 1}


@pytest.mark.parametrize(
    "labels, expected",
    [
        pytest.param({}, None, id="absent"),
        pytest.param(
            {autotune.LABEL_DEVICE: "x\x1b]0;pwned\x07", autotune.LABEL_COUNT: "3"},
            autotune.Recorded(None, 3, f"{autotune.LABEL_DEVICE} is not a device name"),
            id="escape-in-device",
        ),
        pytest.param(
            {autotune.LABEL_DEVICE: H100, autotune.LABEL_COUNT: "9" * 40},
            autotune.Recorded(H100, None, f"{autotune.LABEL_COUNT} is not a count"),
            id="huge-count",
        ),
        pytest.param(
            {autotune.LABEL_DEVICE: "y" * 10_000},
            autotune.Recorded(
                None,
                None,
                f"{autotune.LABEL_DEVICE} is not a device name; "
                f"{autotune.LABEL_COUNT} is not a count",
            ),
            id="long-device-no-count",
        ),
    ],
)
def test_read_labels_of_hostile_images(labels, expected):
    assert autotune.read_labels(labels) == expected


def test_manifest_section_round_trip():
    entries = [AutotuneEntry(KEY, {"a.autotune.json": FileInfo(5, "cd" * 32)})]
    doc = {"triton": [], autotune.MANIFEST_KEY: autotune.manifest_section(H100, entries)}
    assert autotune.parse_section(json.loads(json.dumps(doc))) == entries
    assert autotune.parse_section({"triton": []}) == []


@pytest.mark.parametrize(
    "section, message",
    [
        pytest.param({"entries": "x"}, "no entries list", id="not-a-list"),
        pytest.param({"entries": [{"key": KEY}]}, "no key or files", id="no-files"),
        pytest.param(
            {"entries": [{"key": KEY, "files": {"a": {"size": 1}}}]}, "no size", id="no-sha"
        ),
        pytest.param(
            {"entries": [{"key": KEY, "files": {"a": {"size": 1 << 40, "sha256": "ab"}}}]},
            "has the size",
            id="huge",
        ),
    ],
)
def test_parse_section_refuses_malformed(section, message):
    with pytest.raises(autotune.SectionError, match=message):
        autotune.parse_section({autotune.MANIFEST_KEY: section})


# ---------------------------------------------------------------- scan


def test_scan_without_the_switch_skips_them_saying_how_to_pack(tmp_path, caches_dir):
    root = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", root)
    write_results(root)
    scan = scan_cache(root)
    assert scan.autotune == []
    (skip,) = [s for s in scan.skipped if s.path == KEY]
    assert "autotuning results" in skip.reason and AUTOTUNE_HINT in skip.reason
    assert len(scan.entries) == 7


def test_scan_with_the_switch_reads_and_hashes_them(tmp_path, caches_dir):
    root = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", root)
    path = write_results(root)
    (root / KEY / "tmp.pid_1_x").mkdir()  # an interrupted Triton write beside it
    scan = scan_cache(root, with_autotune=True)
    assert len(scan.entries) == 7
    (entry,) = scan.autotune
    import hashlib

    assert entry.key == KEY
    assert entry.files == {
        path.name: FileInfo(path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    }
    assert [s.path for s in scan.skipped] == [f"{KEY}/tmp.pid_1_x"]


@pytest.mark.parametrize(
    "content, reason",
    [
        pytest.param("{not json", "autotuning results", id="corrupt"),
        pytest.param(json.dumps({"key": 1}), "no configs_timings list", id="no-timings"),
    ],
)
def test_scan_skips_results_triton_cannot_read(tmp_path, content, reason):
    root = tmp_path / "cache"
    root.mkdir()
    (root / KEY).mkdir()
    (root / KEY / "k.autotune.json").write_text(content)
    scan = scan_cache(root, with_autotune=True)
    assert scan.autotune == []
    (skip,) = scan.skipped
    assert skip.path == KEY and reason in skip.reason


def test_scan_refuses_a_symlink_out_of_the_root(tmp_path):
    root = tmp_path / "cache"
    (root / KEY).mkdir(parents=True)
    outside = tmp_path / "secret.autotune.json"
    outside.write_text(json.dumps(RESULTS))
    (root / KEY / "k.autotune.json").symlink_to(outside)
    scan = scan_cache(root, with_autotune=True)
    assert scan.autotune == []
    assert "symlink leading out of the cache root" in scan.skipped[0].reason


def test_nested_layout_finds_them_in_each_root(tmp_path):
    base = inductor_tree(tmp_path / "inductor", devices=(0, 1))
    write_results(base / "triton" / "1")
    scan = scan_layout(base, with_autotune=True)
    assert [e.key for e in scan.autotune] == [KEY]
    assert scan.autotune_sources[KEY] == base / "triton" / "1"


# ---------------------------------------------------------------- packing


def scans_with_results(tmp_path: Path) -> list:
    root = tmp_path / "cache"
    root.mkdir()
    write_results(root)
    return [(root, scan_cache(root, with_autotune=True))]


def test_pack_takes_the_device_given(tmp_path):
    packed = pack_autotune(scans_with_results(tmp_path), AutotuneRequest(H100))
    assert packed.device == H100 and [e.key for e in packed.entries] == [KEY]
    assert packed.roots == {KEY: tmp_path / "cache"}
    labels = packed.labels({"cache.triton.image/cache-size-bytes": "100"})
    size = packed.entries[0].bytes
    assert labels == {
        autotune.LABEL_DEVICE: H100,
        autotune.LABEL_COUNT: "1",
        "cache.triton.image/cache-size-bytes": str(100 + size),
    }
    assert packed.manifest()["autotune"]["device"] == H100


def test_pack_detects_the_one_model_of_the_host(tmp_path):
    host = HostGpus((cuda_gpu(A100), cuda_gpu(A100, 1)))
    packed = pack_autotune(scans_with_results(tmp_path), AutotuneRequest(detect=lambda: host))
    assert packed.device == A100


@pytest.mark.parametrize(
    "host, why",
    [
        pytest.param(HostGpus(), "this host has no GPU", id="no-gpu"),
        pytest.param(HostGpus((cuda_gpu(A100), cuda_gpu(H100, 1))), "2 GPU models", id="mixed"),
    ],
)
def test_pack_without_a_known_device_is_exit_2_naming_the_switch(tmp_path, host, why):
    with pytest.raises(CreateError) as err:
        pack_autotune(scans_with_results(tmp_path), AutotuneRequest(detect=lambda: host))
    assert err.value.exit_code == 2
    assert why in err.value.message and "--autotune-device" in err.value.line()


def test_pack_without_results_needs_no_device(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()

    def no_detection() -> HostGpus:
        raise AssertionError("detected without results to pack")

    packed = pack_autotune(
        [(root, scan_cache(root, with_autotune=True))], AutotuneRequest(detect=no_detection)
    )
    assert packed.entries == [] and packed.labels({}) == {} and packed.manifest() == {}


@pytest.mark.parametrize(
    "request_, fmt, split, message",
    [
        pytest.param(AutotuneRequest("bad\x00"), "oci", False, "not a GPU device name", id="name"),
        pytest.param(AutotuneRequest(H100), "oci", True, "not a fleet image", id="fleet"),
        pytest.param(AutotuneRequest(H100), "artifact", False, "an artifact", id="artifact"),
    ],
)
def test_check_request_refuses_before_scanning(request_, fmt, split, message):
    with pytest.raises(UsageError, match=message):
        check_request(request_, fmt, split)
