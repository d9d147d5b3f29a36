"""Autotuning results read from an unpacked image and installed by GPU model
(tcv.autotune.install)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tcv.autotune.install import NOT_LISTED, install_autotune, resolve_autotune
from tcv.cache import autotune
from tcv.cache.autotune import AutotuneEntry
from tcv.cache.kernel import FileInfo
from tcv.errors import ExtractError
from tcv.gpu.model import Gpu, HostGpus
from tcv.gpu.spec import parse_gpu_spec
from tcv.image.unpack import UnpackResult
from tcv.placement import Placement
from tests.unit.test_autotune import A100, H100, KEY, RESULTS

NAME = "add_kernel.autotune.json"
LABELS = {autotune.LABEL_DEVICE: H100, autotune.LABEL_COUNT: "1"}


def unpacked_image(tmp_path: Path, content: bytes | None = None, listed: bytes | None = None):
    """An unpacked image holding one autotune directory; ``listed``: the bytes
    the manifest describes (default: the content)."""
    data = content if content is not None else json.dumps(RESULTS).encode()
    root = tmp_path / "root"
    (root / "io.triton.cache" / KEY).mkdir(parents=True)
    (root / "io.triton.cache" / KEY / NAME).write_bytes(data)
    described = listed if listed is not None else data
    entry = AutotuneEntry(
        KEY, {NAME: FileInfo(len(described), hashlib.sha256(described).hexdigest())}
    )
    manifest = {"triton": [], "autotune": autotune.manifest_section(H100, [entry])}
    (root / "io.triton.manifest").mkdir()
    (root / "io.triton.manifest" / "manifest.json").write_text(json.dumps(manifest))
    return UnpackResult(root, files={f"{KEY}/{NAME}": hashlib.sha256(data).digest()})


def test_resolve_takes_the_listed_results_out_of_the_not_listed_skips(tmp_path):
    skipped = [(KEY, NOT_LISTED), ("OTHER", NOT_LISTED)]
    tuned, rest = resolve_autotune(unpacked_image(tmp_path), LABELS, skipped)
    assert tuned is not None and tuned.device == H100
    assert [e.key for e in tuned.entries] == [KEY] and tuned.skipped == []
    assert rest == [("OTHER", NOT_LISTED)]


def test_without_the_labels_the_results_stay_unlisted(tmp_path):
    skipped = [(KEY, NOT_LISTED)]
    assert resolve_autotune(unpacked_image(tmp_path), {}, skipped) == (None, skipped)


def test_a_file_that_differs_from_the_manifest_refuses_the_image(tmp_path):
    unpacked = unpacked_image(tmp_path, listed=b'{"configs_timings": []}')
    with pytest.raises(ExtractError, match="does not match the sha256"):
        resolve_autotune(unpacked, LABELS, [])


def test_results_triton_cannot_read_are_skipped(tmp_path):
    tuned, _ = resolve_autotune(unpacked_image(tmp_path, content=b'{"key": 1}'), LABELS, [])
    assert tuned is not None and tuned.entries == []
    assert tuned.skipped == [(KEY, f"{NAME} has no configs_timings list: Triton cannot read it")]


def test_a_symlink_in_the_directory_is_skipped(tmp_path):
    unpacked = unpacked_image(tmp_path)
    (unpacked.cache_root / KEY / "x.autotune.json").symlink_to("/etc/passwd")
    unpacked.bad[KEY] = "x.autotune.json is a symlink leading out of the kernel"
    tuned, _ = resolve_autotune(unpacked, LABELS, [])
    assert tuned is not None and tuned.entries == []
    assert "symlink" in tuned.skipped[0][1]


def test_an_unreadable_device_label_installs_nothing(tmp_path):
    labels = {autotune.LABEL_DEVICE: "\x1b[2J", autotune.LABEL_COUNT: "1"}
    tuned, _ = resolve_autotune(unpacked_image(tmp_path), labels, [])
    assert tuned is not None and tuned.device is None and tuned.entries == []
    assert "not a device name" in tuned.skipped[0][1]


def named(name: str, index: int = 0) -> Gpu:
    return Gpu(index, "cuda", "90", 32, name=name, source="cuda")


@pytest.mark.parametrize(
    "host, installed, reason",
    [
        pytest.param(HostGpus((named(H100),)), [KEY], None, id="same-model"),
        pytest.param(
            HostGpus((named(A100),)),
            [],
            f"measured on {H100}, not on this host's {A100}",
            id="other",
        ),
        pytest.param(
            HostGpus((parse_gpu_spec("cuda:90"),)),
            [],
            f"measured on {H100}; unknown device name for this host's GPU",
            id="gpu-spec",
        ),
        pytest.param(None, [], autotune.NO_GPU_CHECK, id="no-gpu-check"),
    ],
)
def test_install_only_onto_the_recorded_model(tmp_path, host, installed, reason):
    tuned, _ = resolve_autotune(unpacked_image(tmp_path), LABELS, [])
    assert tuned is not None
    dest = tmp_path / "dest"
    doc = install_autotune(tuned, [Placement(dest)], host)
    assert doc["device"] == H100
    assert doc["installed"] == installed
    if reason is None:
        assert doc["skipped"] == []
        assert json.loads((dest / KEY / NAME).read_text()) == RESULTS
    else:
        assert doc["skipped"] == [{"key": KEY, "reason": reason}]
        assert not (dest / KEY).exists()


def test_per_gpu_placements_get_them_only_for_the_matching_gpu(tmp_path):
    tuned, _ = resolve_autotune(unpacked_image(tmp_path), LABELS, [])
    assert tuned is not None
    host = HostGpus((named(A100, 0), named(H100, 1)))
    places = [Placement(tmp_path / "triton" / "0", 0), Placement(tmp_path / "triton" / "1", 1)]
    doc = install_autotune(tuned, places, host)
    assert doc["installed"] == [KEY]
    assert not (tmp_path / "triton" / "0" / KEY).exists()
    assert (tmp_path / "triton" / "1" / KEY / NAME).is_file()
    again = install_autotune(tuned, places, host)
    assert again["installed"] == [] and again["present"] == [KEY]


# ---------------------------------------------------------------- what people see


def test_extract_summary_names_each_skip_reason_once():
    from tcv.cli.extract import autotune_lines

    doc = {
        "device": H100,
        "installed": [],
        "present": [],
        "skipped": [{"key": k, "reason": "measured on X, not on Y"} for k in ("A", "B")],
    }
    assert autotune_lines(doc) == [
        f"autotune: 0 installed, 0 already present, 2 skipped (measured on {H100})",
        "      2  measured on X, not on Y",
    ]
    assert autotune_lines(None) == []


@pytest.mark.parametrize(
    "labels, row, json_doc",
    [
        pytest.param(
            LABELS, f"1 results, measured on {H100}", {"device": H100, "count": 1}, id="ok"
        ),
        pytest.param(
            {autotune.LABEL_DEVICE: "\x1b[2Jgone", autotune.LABEL_COUNT: "2"},
            f"ignored: {autotune.LABEL_DEVICE} is not a device name",
            {
                "device": None,
                "count": 2,
                "problem": f"{autotune.LABEL_DEVICE} is not a device name",
            },
            id="hostile",
        ),
    ],
)
def test_inspect_shows_the_device_and_count_validated(labels, row, json_doc):
    from tcv.cli.inspect import render_description
    from tcv.image.describe import describe
    from tcv.image.ref import parse_image_ref

    desc = describe(parse_image_ref("quay.io/x/y:1"), "sha256:" + "ab" * 32, labels)
    text = render_description(desc)
    assert any(line.split(None, 1) == ["autotune", row] for line in text.splitlines())
    assert "\x1b" not in text
    assert desc.to_json()["autotune"] == json_doc
