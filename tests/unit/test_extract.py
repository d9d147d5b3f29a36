"""Extract's logic: summary preflight, manifest verification, the whole flow with
a faked skopeo (the real one runs in tests/integration/test_extract_*.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.errors import ExtractError, IncompatibleError, NotACacheError
from tcv.extract import extract_image
from tcv.gpu.model import Gpu, HostGpus
from tcv.image.describe import describe, preflight, preflight_verdicts
from tcv.image.fetch import fetch_image
from tcv.image.manifest import LABEL_SUMMARY, build_labels, build_manifest
from tcv.image.ref import parse_image_ref
from tcv.image.unpack import unpack_layers
from tcv.image.verify import resolve_entries
from tcv.tools.registry import RegistryOptions
from tests.harness import hostile as h

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "caches" / "triton-3.9"
SCAN = scan_cache(FIXTURE)
H100 = HostGpus((Gpu(0, "cuda", "90", 32),), (13, 4))  # the fixtures use PTX ISA 9.4
MI300 = HostGpus((Gpu(0, "hip", "gfx942", 64),), None)
TURING = HostGpus((Gpu(0, "cuda", "75", 32),), (12, 4))


def keys_for(backend: str, arch: str) -> list[str]:
    return sorted(e.key for e in SCAN.entries if (e.backend, e.arch) == (backend, arch))


def unpacked(tmp_path: Path, members: list[h.Member]):
    layer = tmp_path / "layer"
    layer.write_bytes(h.compress(h.tar_bytes(members), h.OCI_GZIP))
    root = tmp_path / "root"
    root.mkdir()
    return unpack_layers([(layer, h.OCI_GZIP)], root)


def manifest() -> dict:
    return build_manifest(SCAN.entries, str(FIXTURE))


# ---------------------------------------------------------------- summary


def test_describe_decodes_the_summary():
    desc = describe(parse_image_ref("q.io/x"), "sha256:1", build_labels(SCAN.entries, "x"))
    assert desc.targets is not None
    assert {(t.backend, t.arch) for t in desc.targets} == {
        (e.backend, e.arch) for e in SCAN.entries
    }
    assert desc.entry_count == len(SCAN.entries)
    assert desc.to_json()["summary"]["targets"][0]["backend"] in ("cuda", "hip")


def test_unreadable_summary_counts_as_absent():
    desc = describe(parse_image_ref("q.io/x"), "", {LABEL_SUMMARY: "{not json"})
    assert desc.targets is None and desc.summary is None


GO_SUMMARY = json.dumps({"targets": [{"backend": "cuda", "arch": "90", "warp_size": 32}]})


@pytest.mark.parametrize(
    ("summary", "fits"),
    [
        pytest.param(GO_SUMMARY, True, id="go-summary-without-version"),
        pytest.param(
            json.dumps(
                {
                    "targets": [
                        {
                            "backend": "cuda",
                            "arch": "90",
                            "warp_size": 32,
                            "triton_version": "3.1.0",
                            "entries": 1,
                        }
                    ]
                }
            ),
            False,
            id="other-triton-never-hit",
        ),
    ],
)
def test_version_rule_only_for_targets_that_state_one(summary, fits):
    desc = describe(parse_image_ref("q.io/x"), "", {LABEL_SUMMARY: summary})
    ((_, reason),) = preflight_verdicts(desc, H100, "3.9.0")
    assert (reason is None) == fits


def fake_inspect(fp, labels, digest="sha256:" + "d" * 64):
    fp.register([fp.program("skopeo"), "inspect", "--raw", fp.any()], stdout=h.IMAGE_MANIFEST)
    fp.register(
        [fp.program("skopeo"), "inspect", fp.any()],
        stdout=json.dumps({"Digest": digest, "Labels": labels, "Layers": []}),
    )


def test_preflight_names_every_target_when_nothing_fits(fp):
    fake_inspect(fp, build_labels(SCAN.entries, "x"))
    with pytest.raises(IncompatibleError) as info:
        preflight(parse_image_ref("q.io/x"), RegistryOptions(), TURING)
    line = info.value.line()
    assert line.startswith("nothing in q.io/x fits this host: ")
    assert "cuda:90:32 (" in line and "hip:gfx942:64 (" in line
    assert "--no-gpu-check" in line


def fake_config(fp, config):
    fp.register(
        [fp.program("skopeo"), "inspect", "--config", fp.any()],
        stdout=json.dumps({"architecture": "amd64", "config": config}),
    )


def test_preflight_passes_an_image_without_summary(fp):
    """The older tools' images: no cache.triton.image labels, built FROM scratch."""
    fake_config(fp, {"Labels": {"org.opencontainers.image.title": "old"}})
    fake_inspect(fp, {"org.opencontainers.image.title": "old"})
    desc = preflight(parse_image_ref("q.io/x"), RegistryOptions(), TURING)
    assert desc.targets is None
    assert fp.call_count([fp.program("skopeo"), "inspect", "--config", fp.any()]) == 1


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"Cmd": ["bash"]}, id="cmd"),
        pytest.param({"Entrypoint": ["/app"]}, id="entrypoint"),
        pytest.param({"Env": ["PATH=/usr/bin"]}, id="env"),
    ],
)
@pytest.mark.parametrize("host", [TURING, None], ids=["gpu-check", "no-gpu-check"])
def test_preflight_refuses_an_application_image(fp, config, host):
    fake_config(fp, config)
    fake_inspect(fp, {"maintainer": "someone"})
    with pytest.raises(NotACacheError) as info:
        preflight(parse_image_ref("q.io/app"), RegistryOptions(), host)
    assert info.value.exit_code == 5
    assert "q.io/app is not a Triton cache image" in info.value.line()


def test_a_cache_image_costs_no_config_request(fp):
    fake_inspect(fp, build_labels(SCAN.entries, "x"))
    preflight(parse_image_ref("q.io/x"), RegistryOptions(), None)
    assert fp.call_count([fp.program("skopeo"), "inspect", "--config", fp.any()]) == 0


# ---------------------------------------------------------------- verification


def test_manifest_entries_verified(tmp_path):
    entries, skipped = resolve_entries(
        unpacked(tmp_path, h.cache_members(FIXTURE, None, manifest()))
    )
    assert sorted(e.key for e in entries) == sorted(e.key for e in SCAN.entries)
    assert skipped == []


def tampered(name_filter, data=b"evil"):
    members = h.cache_members(FIXTURE, None, manifest())
    for m in members:
        if name_filter(m.name):
            m.data = data
            return members
    raise AssertionError("nothing to tamper with")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        pytest.param(
            lambda ms: tampered(lambda n: n.endswith(".cubin")),
            "does not match the sha256",
            id="altered-file",
        ),
        pytest.param(
            lambda ms: [*ms[:-2], h.reg(f"{h.CACHE_DIR}/{SCAN.entries[0].key}/x.so"), *ms[-2:]],
            "not in the image manifest",
            id="extra-file",
        ),
        pytest.param(
            lambda ms: [m for m in ms if not m.name.endswith(".ptx")],
            "missing from the layer",
            id="missing-file",
        ),
    ],
)
def test_verification_failures_refuse_the_image(tmp_path, change, needle):
    members = change(h.cache_members(FIXTURE, None, manifest()))
    with pytest.raises(ExtractError, match=needle):
        resolve_entries(unpacked(tmp_path, members))


def test_kernel_dirs_and_manifest_entries_that_do_not_pair_are_skipped(tmp_path):
    keys = sorted(e.key for e in SCAN.entries)
    members = h.cache_members(FIXTURE, keys[1:], manifest())
    members.insert(1, h.directory(f"{h.CACHE_DIR}/STRAYDIR"))
    entries, skipped = resolve_entries(unpacked(tmp_path, members))
    assert sorted(e.key for e in entries) == keys[1:]
    assert dict(skipped) == {
        keys[0]: "listed in the image manifest but not in its layers",
        "STRAYDIR": "not listed in the image manifest",
    }


@pytest.mark.parametrize(
    "old_manifest",
    [
        pytest.param(None, id="no-manifest"),
        pytest.param(
            [
                {"hash": e.hash, "name": e.name, "backend": e.backend, "arch": int(e.arch)}
                for e in SCAN.entries
                if e.backend == "cuda"
            ],
            id="bare-array",
        ),
    ],
)
def test_older_images_are_read_from_their_metadata(tmp_path, old_manifest):
    entries, _ = resolve_entries(unpacked(tmp_path, h.cache_members(FIXTURE, None, old_manifest)))
    assert {(e.key, e.backend, e.arch, e.warp_size) for e in entries} == {
        (e.key, e.backend, e.arch, e.warp_size) for e in SCAN.entries
    }


def test_not_a_cache_image(tmp_path):
    with pytest.raises(ExtractError, match="not a Triton cache image"):
        resolve_entries(unpacked(tmp_path, [h.reg("io.triton.manifest/manifest.json", b"[]")]))


# ---------------------------------------------------------------- whole flow, faked skopeo


@pytest.fixture
def staging_root(tmp_path, monkeypatch):
    root = tmp_path / "staging"
    monkeypatch.setenv("TCV_STAGING_ROOT", str(root))
    return root


@pytest.fixture
def image(tmp_path):
    labels = build_labels(SCAN.entries, "x")
    layer = h.Layer(h.cache_members(FIXTURE, None, manifest()))
    return h.write_image(tmp_path / "crafted", [layer], labels), labels


def fake_copy(fp, crafted, expect_ref):
    def copy(process):
        assert process.args[-2] == expect_ref
        dest = Path(process.args[-1].removeprefix("dir:"))
        shutil.copytree(crafted.path, dest)

    fp.register([fp.program("skopeo"), "copy", fp.any()], callback=copy)


def test_fetch_pins_the_preflight_digest(fp, image, tmp_path):
    crafted, labels = image
    fake_inspect(fp, labels, crafted.manifest_digest)
    fake_copy(fp, crafted, f"docker://q.io/x@{crafted.manifest_digest}")
    into = tmp_path / "into"
    into.mkdir()
    got = fetch_image(parse_image_ref("q.io/x:1"), RegistryOptions(), into, host=H100)
    assert got.digest == crafted.manifest_digest
    assert len(got.entries) == len(SCAN.entries)
    assert not (into / "image").exists()  # blobs dropped once unpacked
    assert sorted(os.listdir(got.cache_root)) == sorted(e.key for e in SCAN.entries)


def test_fetch_without_host_still_reads_the_labels_first(fp, image, tmp_path):
    """--no-gpu-check and tcv check -i skip the GPU check, not the label check;
    with no digest from the description, the pulled manifest's is taken."""
    crafted, labels = image
    fake_inspect(fp, labels, "")
    fake_copy(fp, crafted, "oci:/some/layout:t")
    into = tmp_path / "into"
    into.mkdir()
    got = fetch_image(parse_image_ref("oci:/some/layout:t"), RegistryOptions(), into)
    assert got.labels == labels
    assert got.digest == crafted.manifest_digest


def test_extract_installs_exactly_what_fits(fp, image, tmp_path, staging_root):
    crafted, labels = image
    fake_inspect(fp, labels, crafted.manifest_digest)
    fake_copy(fp, crafted, f"docker://q.io/x@{crafted.manifest_digest}")
    dest = tmp_path / "dest"
    report = extract_image(parse_image_ref("q.io/x"), RegistryOptions(), dest, host=MI300)
    assert sorted(report.installed) == keys_for("hip", "gfx942")
    assert {k for k, _ in report.skipped} == {e.key for e in SCAN.entries} - set(
        keys_for("hip", "gfx942")
    )
    assert all("gfx942" in r for _, r in report.skipped)
    assert os.listdir(staging_root) == []
    doc = report.to_json()
    assert list(doc) == ["image", "digest", "dest", "installed", "present", "skipped"]


def test_no_gpu_check_installs_everything(fp, image, tmp_path, staging_root):
    crafted, labels = image
    # The manifest is still read first (it may be a fleet index), then pinned.
    fake_inspect(fp, labels, crafted.manifest_digest)
    fake_copy(fp, crafted, f"docker://q.io/x@{crafted.manifest_digest}")
    report = extract_image(parse_image_ref("q.io/x"), RegistryOptions(), tmp_path / "d", host=None)
    assert sorted(report.installed) == sorted(e.key for e in SCAN.entries)


def test_interrupt_mid_unpack_leaves_no_staging_and_dest_untouched(
    fp, image, tmp_path, staging_root
):
    from tcv.progress import Progress

    crafted, labels = image
    fake_inspect(fp, labels, crafted.manifest_digest)
    fake_copy(fp, crafted, f"docker://q.io/x@{crafted.manifest_digest}")

    class CtrlC(Progress):
        def start(self, phase, total=None):
            self.phase = phase

        def update(self, done):
            if self.phase == "unpack":
                raise KeyboardInterrupt

    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine").write_text("x")
    with pytest.raises(KeyboardInterrupt):
        extract_image(
            parse_image_ref("q.io/x"), RegistryOptions(), dest, host=H100, progress=CtrlC()
        )
    assert os.listdir(staging_root) == []
    assert os.listdir(dest) == ["mine"]


def test_a_host_without_gpus_is_one_short_line_before_any_request(fp):
    """No GPU and no --gpu: one line naming --gpu and TCV_GPUS (not the
    no-accelerator reason once per target), and not even the labels are read."""
    with pytest.raises(IncompatibleError) as info:
        preflight(parse_image_ref("q.io/x"), RegistryOptions(), HostGpus())
    line = info.value.line()
    assert line.count("no GPU") == 1 and "--gpu SPEC" in line and "TCV_GPUS" in line
    assert len(line) < 250
    assert info.value.exit_code == 4
    assert fp.call_count([fp.program("skopeo"), fp.any()]) == 0
