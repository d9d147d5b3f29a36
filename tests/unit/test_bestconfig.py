"""Inductor's best_config files: names, checks, the manifest list, the scan of
an Inductor cache, packing beside the Triton results, and on extract the checks
and the install (tcv.cache.bestconfig, tcv.autotune.inductor_pack,
tcv.autotune.inductor_install)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tcv.autotune.inductor_install import BestConfigFile, install_best_configs, resolve_best_configs
from tcv.autotune.inductor_pack import scan_best_configs
from tcv.autotune.install import NOT_LISTED, TunedImage, install_autotune, resolve_autotune
from tcv.autotune.pack import AutotuneRequest, pack_autotune
from tcv.cache import autotune, bestconfig
from tcv.cache.autotune import AutotuneEntry
from tcv.cache.kernel import FileInfo
from tcv.cache.scan import scan_layout
from tcv.errors import ExtractError
from tcv.gpu.model import HostGpus
from tcv.image.layer import plan_layer
from tcv.image.unpack import UnpackResult
from tcv.placement import Placement
from tests.data.layouts import inductor_tree
from tests.unit.test_autotune import A100, H100, cuda_gpu

# codecache.get_path: cache_dir()/basename[1:3]/basename.py, basename "c" + base32.
MODULE = "cxyzq4kq5yb3fvcy4r5bdugdz4plsxhxelxxu6k6vewm2hx2ktpk"
SUB = MODULE[1:3]
NAME = f"{MODULE}.best_config"
# What autotune_cache.py AutotuneCache.save writes (config.kwargs, then its fields).
CONFIG = {
    "XBLOCK": 1024,
    "num_warps": 4,
    "num_stages": 1,
    "configs_hash": "3c4e8b0d" * 8,
    "found_by_coordesc": False,
    "time_taken_ms": 41,
    "triton_cache_hash": None,
}


def write_config(base: Path, sub: str = SUB, name: str = NAME, data: bytes | None = None) -> Path:
    (base / sub).mkdir(parents=True, exist_ok=True)
    path = base / sub / name
    path.write_bytes(data if data is not None else json.dumps(CONFIG).encode())
    return path


# ---------------------------------------------------------------- pure


@pytest.mark.parametrize(
    "name, ok",
    [(SUB, True), ("a7", True), ("abc", False), ("A7", False), ("..", False), ("a", False)],
)
def test_is_subdir(name, ok):
    assert bestconfig.is_subdir(name) is ok


@pytest.mark.parametrize(
    "name, ok",
    [
        (NAME, True),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.best_config", True),
        (".best_config", False),
        ("..best_config", False),
        ("../x.best_config", False),
        ("a/b.best_config", False),
        ("x.best_config.tmp", False),
        ("x y.best_config", False),
    ],
)
def test_is_file_name(name, ok):
    assert bestconfig.is_file_name(name) is ok


@pytest.mark.parametrize(
    "doc, problem",
    [
        (CONFIG, None),
        ({"XBLOCK": 64, "configs_hash": "ab"}, None),  # the oldest format
        ([], "is not a JSON object"),
        ({**CONFIG, "num_warps": "4"}, "has a num_warps that is not an integer"),
        ({**CONFIG, "num_stages": True}, "has a num_stages that is not an integer"),
        (
            {"XBLOCK": 64, "found_by_coordesc": True},
            "is found_by_coordesc without num_warps and num_stages",
        ),
        ({**CONFIG, "configs_hash": 7}, "has a configs_hash that is not a string"),
    ],
)
def test_config_problem(doc, problem):
    assert bestconfig.config_problem(doc) == problem


def test_manifest_items_round_trip():
    entry = AutotuneEntry(SUB, {NAME: FileInfo(size=10, sha256="ab" * 32)})
    doc = {"autotune": {"device": H100, "entries": [], "best_configs": []}}
    doc["autotune"]["best_configs"] = bestconfig.manifest_items([entry])
    assert doc["autotune"]["best_configs"] == [
        {"key": SUB, "files": {NAME: {"size": 10, "sha256": "ab" * 32}}}
    ]
    assert bestconfig.parse_items(json.loads(json.dumps(doc))) == [entry]
    assert bestconfig.parse_items({"autotune": {"entries": []}}) == []


@pytest.mark.parametrize(
    "items, message",
    [
        ({"x": 1}, "best_configs list is malformed"),
        ([{"key": SUB}], "has no key or files"),
        ([{"key": SUB, "files": {NAME: {"size": 1 << 20, "sha256": "ab"}}}], "has the size"),
    ],
)
def test_parse_items_refuses_malformed(items, message):
    with pytest.raises(autotune.SectionError, match=message):
        bestconfig.parse_items({"autotune": {"entries": [], "best_configs": items}})


# ---------------------------------------------------------------- pack


def test_scan_reads_the_two_letter_directories_only(tmp_path):
    base = inductor_tree(tmp_path / "inductor")
    path = write_config(base)
    write_config(base / "fxgraph", "ab", "y.best_config")  # not a module directory
    write_config(base, "abc", "z.best_config")
    found = scan_best_configs(base)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert found.entries == [AutotuneEntry(SUB, {NAME: FileInfo(len(data), sha)})]
    assert found.contents == {f"inductor.best_config/{SUB}/{NAME}": data}
    assert found.skipped == []


def test_scan_skips_what_is_not_a_best_config_with_the_reason(tmp_path):
    base = tmp_path / "inductor"
    write_config(base, name="bad.best_config", data=b"[1]")
    write_config(base, name="huge.best_config", data=b" " * (bestconfig.FILE_MAX + 1))
    write_config(base, name="deep.best_config", data=b'{"a": [[[[[1]]]]]}')
    write_config(base, name="x y.best_config")
    (base / SUB / "link.best_config").symlink_to("/etc/hostname")
    (base / SUB / "dir.best_config").mkdir()
    (base / SUB / "cxyz.py").write_text("# a module: not looked at\n")
    found = scan_best_configs(base)
    assert found.entries == [] and found.contents == {}
    reasons = dict(found.skipped)
    assert reasons[f"{SUB}/bad.best_config"] == "is not a JSON object: Inductor cannot read it"
    assert "larger than 65536 bytes" in reasons[f"{SUB}/huge.best_config"]
    assert "nested more than 4 levels" in reasons[f"{SUB}/deep.best_config"]
    assert reasons[f"{SUB}/x y.best_config"] == "not a plain best_config file name"
    assert reasons[f"{SUB}/link.best_config"] == "a symlink, not followed"
    assert reasons[f"{SUB}/dir.best_config"] == "not a regular file"
    assert len(found.skipped) == 6


def test_a_symlinked_module_directory_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write_config(elsewhere)
    base = tmp_path / "inductor"
    base.mkdir()
    (base / SUB).symlink_to(elsewhere / SUB)
    assert scan_best_configs(base).entries == []


def test_pack_puts_them_beside_the_triton_results_and_counts_them(tmp_path):
    base = inductor_tree(tmp_path / "inductor")
    data = write_config(base).read_bytes()
    scan = scan_layout(base, source="inductor", with_autotune=True)
    packed = pack_autotune([(base, scan)], AutotuneRequest(H100))
    assert packed.device == H100 and packed.entries == []
    assert packed.summary() == {"device": H100, "entries": 1}
    labels = packed.labels({"cache.triton.image/cache-size-bytes": "100"})
    assert labels[autotune.LABEL_COUNT] == "1"
    assert labels["cache.triton.image/cache-size-bytes"] == str(100 + len(data))
    section = packed.manifest()["autotune"]
    assert section["device"] == H100 and section["entries"] == []
    assert bestconfig.parse_items({"autotune": section})[0].files[NAME].size == len(data)
    members = plan_layer(
        Path("."), packed.as_entries(), b"{}", roots=packed.roots, contents=packed.contents
    )
    by_path = {m.path: m for m in members}
    member = by_path[f"io.triton.cache/inductor.best_config/{SUB}/{NAME}"]
    assert member.data == data
    assert by_path["io.triton.cache/inductor.best_config"].is_dir


def test_a_triton_layout_packs_no_best_configs(tmp_path):
    base = inductor_tree(tmp_path / "inductor")
    write_config(base)
    scan = scan_layout(base / "triton" / "0", with_autotune=True)
    packed = pack_autotune([(base / "triton" / "0", scan)], AutotuneRequest(H100))
    assert packed.device is None and packed.count == 0 and packed.manifest() == {}


# ---------------------------------------------------------------- extract


def unpacked_image(
    tmp_path: Path,
    files: dict[str, bytes] | None = None,
    listed: dict[str, bytes] | None = None,
) -> tuple[UnpackResult, dict]:
    """An unpacked image holding best_config files (``<xx>/<name>``: bytes);
    ``listed``: what the manifest describes (default: the files)."""
    files = files if files is not None else {f"{SUB}/{NAME}": json.dumps(CONFIG).encode()}
    listed = listed if listed is not None else files
    root = tmp_path / "root"
    tree = root / "io.triton.cache" / "inductor.best_config"
    hashes = {}
    for where, data in files.items():
        (tree / where).parent.mkdir(parents=True, exist_ok=True)
        (tree / where).write_bytes(data)
        hashes[f"inductor.best_config/{where}"] = hashlib.sha256(data).digest()
    by_dir: dict[str, AutotuneEntry] = {}
    for where, data in listed.items():
        sub, _, name = where.partition("/")
        info = FileInfo(len(data), hashlib.sha256(data).hexdigest())
        by_dir.setdefault(sub, AutotuneEntry(sub)).files[name] = info
    section = autotune.manifest_section(H100, [])
    section["best_configs"] = bestconfig.manifest_items(list(by_dir.values()))
    manifest = {"triton": [], "autotune": section}
    (root / "io.triton.manifest").mkdir(parents=True)
    (root / "io.triton.manifest" / "manifest.json").write_text(json.dumps(manifest))
    return UnpackResult(root, files=hashes), manifest


LABELS = {autotune.LABEL_DEVICE: H100, autotune.LABEL_COUNT: "1"}


def test_resolve_checks_them_and_takes_the_tree_out_of_the_not_listed_skips(tmp_path):
    unpacked, _ = unpacked_image(tmp_path)
    skipped = [("inductor.best_config", NOT_LISTED), ("OTHER", NOT_LISTED)]
    tuned, rest = resolve_autotune(unpacked, LABELS, skipped)
    assert tuned is not None
    assert tuned.best_configs == [BestConfigFile(SUB, NAME)] and tuned.skipped == []
    assert rest == [("OTHER", NOT_LISTED)]


def test_unsafe_names_are_skipped_and_never_looked_up(tmp_path):
    data = json.dumps(CONFIG).encode()
    unpacked, manifest = unpacked_image(
        tmp_path,
        files={},
        listed={f"{SUB}/../../evil.best_config": data, f"../{NAME}": data, "ab/x.json": data},
    )
    ok, skipped, listed = resolve_best_configs(unpacked, manifest)
    assert ok == [] and listed
    assert sorted(skipped) == [
        (f"../{NAME}", "not an Inductor two-character directory: not installed"),
        ("ab/x.json", "not a plain best_config file name: not installed"),
        (f"{SUB}/../../evil.best_config", "not a plain best_config file name: not installed"),
    ]


def test_a_file_differing_from_the_manifest_refuses_the_image(tmp_path):
    unpacked, manifest = unpacked_image(tmp_path, listed={f"{SUB}/{NAME}": b"{}"})
    with pytest.raises(ExtractError, match="does not match the sha256"):
        resolve_best_configs(unpacked, manifest)


def test_a_file_the_manifest_does_not_list_refuses_the_image(tmp_path):
    data = json.dumps(CONFIG).encode()
    files = {f"{SUB}/{NAME}": data, f"{SUB}/extra.best_config": data}
    unpacked, manifest = unpacked_image(tmp_path, files=files, listed={f"{SUB}/{NAME}": data})
    with pytest.raises(ExtractError, match=r"extra\.best_config is in the layer but not in"):
        resolve_best_configs(unpacked, manifest)


def test_content_inductor_cannot_read_and_a_symlinked_tree_are_skipped(tmp_path):
    unpacked, manifest = unpacked_image(tmp_path, files={f"{SUB}/{NAME}": b'"text"'})
    ok, skipped, _ = resolve_best_configs(unpacked, manifest)
    assert ok == [] and skipped == [
        (f"{SUB}/{NAME}", f"{NAME} is not a JSON object: Inductor cannot read it")
    ]
    unpacked, manifest = unpacked_image(tmp_path / "2")
    unpacked.bad["inductor.best_config"] = "the kernel directory is a symlink in the image"
    ok, skipped, _ = resolve_best_configs(unpacked, manifest)
    assert ok == [] and skipped[0][1] == "the kernel directory is a symlink in the image"


def test_an_unreadable_device_label_installs_none(tmp_path):
    unpacked, _ = unpacked_image(tmp_path)
    labels = {autotune.LABEL_DEVICE: "\x1b[2J", autotune.LABEL_COUNT: "1"}
    tuned, _ = resolve_autotune(unpacked, labels, [])
    assert tuned is not None and tuned.best_configs == []
    assert tuned.skipped[0][0] == f"{SUB}/{NAME}"


def test_install_writes_atomically_and_keeps_a_differing_file(tmp_path):
    unpacked, _ = unpacked_image(tmp_path)
    data = json.dumps(CONFIG).encode()
    files = [BestConfigFile(SUB, NAME)]
    base = tmp_path / "torchinductor_u"
    done = install_best_configs(unpacked.cache_root, files, base)
    assert done.installed == [f"{SUB}/{NAME}"] and done.skipped == []
    assert (base / SUB / NAME).read_bytes() == data
    assert os.listdir(base / SUB) == [NAME]  # no temporary left behind
    again = install_best_configs(unpacked.cache_root, files, base)
    assert again.present == [f"{SUB}/{NAME}"] and again.installed == []
    (base / SUB / NAME).write_text('{"XBLOCK": 64}')
    kept = install_best_configs(unpacked.cache_root, files, base)
    assert kept.skipped == [(f"{SUB}/{NAME}", bestconfig.DIFFERING)]
    assert (base / SUB / NAME).read_text() == '{"XBLOCK": 64}'
    forced = install_best_configs(unpacked.cache_root, files, base, force=True)
    assert forced.installed == [f"{SUB}/{NAME}"]
    assert (base / SUB / NAME).read_bytes() == data


def test_install_never_writes_through_a_symlinked_directory(tmp_path):
    unpacked, _ = unpacked_image(tmp_path)
    base = tmp_path / "torchinductor_u"
    outside = tmp_path / "outside"
    outside.mkdir()
    base.mkdir()
    (base / SUB).symlink_to(outside)
    done = install_best_configs(unpacked.cache_root, [BestConfigFile(SUB, NAME)], base)
    assert done.installed == []
    assert done.skipped == [
        (f"{SUB}/{NAME}", f"{base}/{SUB} is a symlink, not followed: not installed")
    ]
    assert os.listdir(outside) == []


def tuned_image(tmp_path: Path) -> TunedImage:
    unpacked, _ = unpacked_image(tmp_path)
    return TunedImage(H100, unpacked.cache_root, best_configs=[BestConfigFile(SUB, NAME)])


@pytest.mark.parametrize(
    "host, for_inductor, reason",
    [
        (HostGpus([cuda_gpu(H100)]), True, None),
        (HostGpus([cuda_gpu(A100)]), True, f"measured on {H100}, not on this host's {A100}"),
        (None, True, autotune.NO_GPU_CHECK),
        (HostGpus([cuda_gpu(H100)]), False, bestconfig.SKIP_WORKLOAD),
    ],
)
def test_install_autotune_gates_them_like_the_triton_results(tmp_path, host, for_inductor, reason):
    base = tmp_path / "torchinductor_u"
    planned = [Placement(base / "triton" / "0", 0)] if for_inductor else [Placement(base)]
    doc = install_autotune(
        tuned_image(tmp_path), planned, host, inductor_dir=base if for_inductor else None
    )
    if reason is None:
        assert doc["installed"] == [f"{SUB}/{NAME}"] and doc["skipped"] == []
        assert (base / SUB / NAME).is_file()
    else:
        assert doc["installed"] == []
        assert doc["skipped"] == [{"key": f"{SUB}/{NAME}", "reason": reason}]
        assert not (base / SUB).exists()


def test_create_summary_lists_the_skipped_best_configs():
    from types import SimpleNamespace

    from tcv.cli.create import autotune_lines

    skipped = [{"path": f"{SUB}/big.best_config", "reason": "is larger than 65536 bytes"}]
    result = SimpleNamespace(autotune={"device": H100, "entries": 2, "skipped": skipped})
    assert autotune_lines(result) == [
        f"autotune: 2 results, measured on {H100}",
        f"  skipped {SUB}/big.best_config: is larger than 65536 bytes",
    ]
    result = SimpleNamespace(autotune={"device": None, "entries": 0, "skipped": skipped})
    assert autotune_lines(result)[0] == "autotune: none in the cache"
