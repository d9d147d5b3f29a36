"""The image manifest and summary labels (docs/spec.md §3), including the older forms
the Go implementations wrote."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from tcv.cache.kernel import FileInfo, KernelEntry, Target
from tcv.cache.scan import scan_cache
from tcv.image.manifest import (
    CACHE_DIR,
    LABEL_CACHE_SIZE,
    LABEL_ENTRY_COUNT,
    LABEL_FORMAT_VERSION,
    LABEL_SUMMARY,
    LABEL_TITLE,
    LABEL_VARIANT,
    MANIFEST_PATH,
    ManifestError,
    build_labels,
    build_manifest,
    build_summary,
    manifest_json,
    parse_manifest,
    parse_summary,
    summary_json,
)

CACHES = Path(__file__).resolve().parent.parent / "data" / "caches"
HASH = "e4877adc2501db7cb3b47b4b3c2bedbe405f83a33136382ef6e9eeaf9a17d140"
B32 = base64.b32encode(bytes.fromhex(HASH)).decode().rstrip("=")
B64 = base64.urlsafe_b64encode(bytes.fromhex(HASH)).decode().rstrip("=")


@pytest.fixture(scope="module")
def entries() -> list[KernelEntry]:
    """Every real entry of every fixture cache."""
    out: list[KernelEntry] = []
    for fixture in sorted(p for p in CACHES.iterdir() if p.is_dir()):
        out += scan_cache(fixture).entries
    assert out
    return out


def test_layout_constants():
    assert CACHE_DIR == "io.triton.cache"
    assert MANIFEST_PATH == "io.triton.manifest/manifest.json"


def test_manifest_round_trips(entries):
    doc = json.loads(manifest_json(build_manifest(entries, "/src/cache")))
    assert doc["source_root"] == "/src/cache"
    assert [e["key"] for e in doc["triton"]] == sorted(e.key for e in entries)
    assert sorted(parse_manifest(doc), key=lambda e: e.key) == sorted(entries, key=lambda e: e.key)


def test_manifest_json_types_for_the_go_readers(entries):
    doc = json.loads(manifest_json(build_manifest(entries, "/src")))
    for item in doc["triton"]:
        assert isinstance(item["arch"], str)
        assert isinstance(item["warp_size"], int)
        assert item["ptx_version"] is None or isinstance(item["ptx_version"], int)
        assert set(item) >= {
            "hash",
            "key",
            "name",
            "backend",
            "arch",
            "warp_size",
            "ptx_version",
            "num_warps",
            "num_stages",
            "debug",
            "triton_version",
            "files",
        }
        for info in item["files"].values():
            assert isinstance(info["size"], int)
            assert len(info["sha256"]) == 64


def test_manifest_bytes_are_reproducible(entries):
    shuffled = list(entries)
    random.Random(7).shuffle(shuffled)
    one = manifest_json(build_manifest(entries, "/src"))
    two = manifest_json(build_manifest(shuffled, "/src"))
    assert one == two
    assert one.endswith(b"\n")
    assert list(json.loads(one)) == sorted(json.loads(one))  # sorted keys


def _go_item(**extra: object) -> dict:  # type: ignore[type-arg]
    item = {
        "hash": HASH,
        "backend": "cuda",
        "arch": "90",
        "warp_size": 32,
        "ptx_version": 0,
        "num_stages": 3,
        "num_warps": 4,
        "dummy_key": "x",
    }
    item.update(extra)
    return item


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        pytest.param([_go_item()], B32, id="bare-array"),
        pytest.param({"triton": [_go_item()]}, B32, id="object-without-key-and-files"),
        pytest.param({"triton": [_go_item(triton_version="3.2.0")]}, B64, id="old-3.2"),
        pytest.param({"triton": [_go_item(triton_version="3.1.0")]}, HASH, id="old-3.1"),
        pytest.param({"triton": [_go_item(key="KEYDIR")]}, "KEYDIR", id="key-given"),
        pytest.param({"triton": [_go_item(arch=90)]}, B32, id="arch-as-number"),
    ],
)
def test_older_manifests_parse(doc, key):
    (entry,) = parse_manifest(doc)
    assert entry.key == key
    assert (entry.backend, entry.arch, entry.warp_size) == ("cuda", "90", 32)
    assert entry.files == {}
    assert entry.hash == HASH
    assert (entry.num_warps, entry.num_stages) == (4, 3)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        pytest.param({"other": []}, "no 'triton'", id="no-triton"),
        pytest.param({"triton": {}}, "not a list", id="triton-not-list"),
        pytest.param("text", "not a list", id="string"),
        pytest.param([1], "not an object", id="entry-not-object"),
        pytest.param([{"backend": "cuda"}], "neither 'key' nor 'hash'", id="no-key-no-hash"),
        pytest.param([_go_item(warp_size="lots")], "warp_size", id="bad-warp"),
        pytest.param([_go_item(files={"a": {"size": 1}})], "no sha256", id="file-without-sha"),
    ],
)
def test_bad_manifests_say_why(doc, needle):
    with pytest.raises(ManifestError) as err:
        parse_manifest(doc)
    assert needle in err.value.message


def _entry(key: str, backend: str, arch: str, warp: int, ptx: int | None, version: str | None):
    return KernelEntry(
        key=key,
        name="k",
        backend=backend,
        arch=arch,
        warp_size=warp,
        triton_version=version,
        ptx_version=ptx,
        files={"k.json": FileInfo(size=10, sha256="0" * 64)},
    )


def test_summary_groups_targets_and_takes_the_highest_ptx():
    entries = [
        _entry("a", "cuda", "90", 32, 84, "3.4.0"),
        _entry("b", "cuda", "90", 32, 87, "3.4.0"),
        _entry("c", "cuda", "90", 32, 90, "3.5.0"),
        _entry("d", "hip", "gfx942", 64, None, "3.4.0"),
        _entry("e", "cuda", "80", 32, None, None),
    ]
    assert build_summary(entries) == [
        Target("cuda", "80", 32, None, None, 1),
        Target("cuda", "90", 32, "3.4.0", 87, 2),
        Target("cuda", "90", 32, "3.5.0", 90, 1),
        Target("hip", "gfx942", 64, "3.4.0", None, 1),
    ]


def test_summary_of_real_entries_round_trips(entries):
    targets = build_summary(entries)
    assert sum(t.entries for t in targets) == len(entries)
    text = summary_json(targets)
    assert parse_summary(text) == targets
    for t in json.loads(text)["targets"]:
        assert isinstance(t["arch"], str)
        assert isinstance(t["warp_size"], int)
        assert t["ptx_version"] is None or isinstance(t["ptx_version"], int)
        assert list(t) == [
            "backend",
            "arch",
            "warp_size",
            "ptx_version",
            "triton_version",
            "entries",
        ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '{"targets":[{"backend":"cuda","arch":"90","warp_size":32}]}',
            [Target("cuda", "90", 32, None, None, 0)],
            id="go-summary-without-new-fields",
        ),
        pytest.param(
            '{"targets":[{"backend":"cuda","arch":90,"warp_size":32.0,"ptx_version":0}]}',
            [Target("cuda", "90", 32, None, None, 0)],
            id="numbers-loosely-typed",
        ),
        pytest.param(
            '{"targets":[{"backend":"hip","arch":"gfx942","warp_size":"64","entries":"3"}]}',
            [Target("hip", "gfx942", 64, None, None, 3)],
            id="numbers-as-strings",
        ),
        pytest.param('{"targets":[]}', [], id="empty"),
    ],
)
def test_parse_summary_accepts_older_labels(text, expected):
    assert parse_summary(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("{", "not valid JSON", id="corrupt"),
        pytest.param('{"x": 1}', "no 'targets'", id="no-targets"),
        pytest.param('{"targets": [3]}', "not an object", id="target-not-object"),
        pytest.param('{"targets": [{"warp_size": true}]}', "warp_size", id="bool-warp"),
    ],
)
def test_bad_summaries_say_why(text, needle):
    with pytest.raises(ManifestError) as err:
        parse_summary(text)
    assert needle in err.value.message


def test_labels(entries):
    labels = build_labels(entries, "my-kernels")
    assert all(isinstance(v, str) for v in labels.values())
    assert labels[LABEL_ENTRY_COUNT] == str(len(entries))
    assert labels[LABEL_CACHE_SIZE] == str(sum(e.bytes for e in entries))
    assert labels[LABEL_VARIANT] == "multi"
    assert labels[LABEL_FORMAT_VERSION] == "1"
    assert labels[LABEL_TITLE] == "my-kernels"
    assert LABEL_SUMMARY == "cache.triton.image/summary"
    assert parse_summary(labels[LABEL_SUMMARY]) == build_summary(entries)
