"""The reproducible layer tar (docs/spec.md §3), by value, on a real Triton cache."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from tcv.cache.kernel import FileInfo, KernelEntry
from tcv.cache.scan import scan_cache
from tcv.errors import CreateError
from tcv.image.layer import Member, plan_layer, source_date_epoch, write_layer, write_layer_file

MANIFEST = b'{"triton": []}\n'


@pytest.fixture
def cache(tmp_path: Path, caches_dir: Path) -> Path:
    root = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", root)
    return root


def layer_bytes(root: Path, mtime: int = 0) -> bytes:
    scan = scan_cache(root)
    buf = io.BytesIO()
    write_layer(plan_layer(root, scan.entries, MANIFEST), buf, mtime=mtime)
    return buf.getvalue()


def members_of(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_plan_lists_dirs_before_their_files_in_sorted_order():
    entries = [
        KernelEntry("B", "k", "cuda", "90", 32, files={"k.json": FileInfo(3, "x")}),
        KernelEntry(
            "A",
            "k",
            "cuda",
            "90",
            32,
            files={"k.ptx": FileInfo(1, "y"), "k.json": FileInfo(2, "z")},
        ),
    ]
    plan = plan_layer(Path("/src"), entries, MANIFEST)
    assert [m.path for m in plan] == [
        "io.triton.cache",
        "io.triton.cache/A",
        "io.triton.cache/A/k.json",
        "io.triton.cache/A/k.ptx",
        "io.triton.cache/B",
        "io.triton.cache/B/k.json",
        "io.triton.manifest",
        "io.triton.manifest/manifest.json",
    ]
    assert plan[2].source == Path("/src/A/k.json") and plan[2].size == 2
    assert plan[-1].data == MANIFEST


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("../escape", id="dotdot"),
        pytest.param("/abs", id="absolute"),
        pytest.param(".", id="dot"),
    ],
)
def test_plan_refuses_paths_that_leave_the_layer(key):
    entries = [KernelEntry(key, "k", "cuda", "90", 32, files={"k.json": FileInfo(1, "x")})]
    with pytest.raises(CreateError, match="not a plain relative path"):
        plan_layer(Path("/src"), entries, MANIFEST)


def test_tar_is_normalised(cache):
    scan = scan_cache(cache)
    members = members_of(layer_bytes(cache, mtime=1234))
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    expected = {"io.triton.cache", "io.triton.manifest", "io.triton.manifest/manifest.json"}
    for e in scan.entries:
        expected.add(f"io.triton.cache/{e.key}")
        expected |= {f"io.triton.cache/{e.key}/{f}" for f in e.files}
    assert set(names) == expected
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 1234)
        assert m.mode == (0o755 if m.isdir() else 0o644)
        assert m.isdir() or m.isfile()
        assert str(cache) not in m.name and not m.name.startswith("/")


def test_tar_holds_the_files_byte_for_byte(cache):
    data = layer_bytes(cache)
    scan = scan_cache(cache)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for e in scan.entries:
            for name, info in e.files.items():
                fh = tar.extractfile(f"io.triton.cache/{e.key}/{name}")
                assert fh is not None
                assert hashlib.sha256(fh.read()).hexdigest() == info.sha256
        manifest = tar.extractfile("io.triton.manifest/manifest.json")
        assert manifest is not None and manifest.read() == MANIFEST


def test_same_cache_gives_same_bytes_whatever_the_mtimes_and_modes(cache):
    first = layer_bytes(cache)
    for p in sorted(cache.rglob("*")):
        os.chmod(p, 0o775 if p.is_dir() else 0o600)
        os.utime(p, (1_700_000_000, 1_700_000_000))
    assert layer_bytes(cache) == first


def test_file_changed_since_scan_is_refused(cache):
    scan = scan_cache(cache)
    plan = plan_layer(cache, scan.entries, MANIFEST)
    victim = next(m for m in plan if m.source is not None)
    with open(victim.source, "ab") as fh:
        fh.write(b"more")
    with pytest.raises(CreateError, match="changed while packing"):
        write_layer(plan, io.BytesIO())


def test_vanished_file_is_one_clear_error(cache):
    scan = scan_cache(cache)
    plan = plan_layer(cache, scan.entries, MANIFEST)
    victim = next(m for m in plan if m.source is not None)
    victim.source.unlink()
    with pytest.raises(CreateError, match="disappeared while packing"):
        write_layer(plan, io.BytesIO())


def test_write_layer_file_reports_an_unwritable_destination(tmp_path):
    plan = [Member("io.triton.manifest", is_dir=True)]
    with pytest.raises(CreateError, match="cannot write the layer"):
        write_layer_file(plan, tmp_path / "missing-dir" / "layer.tar")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, 0, id="unset"),
        pytest.param({"SOURCE_DATE_EPOCH": ""}, 0, id="empty"),
        pytest.param({"SOURCE_DATE_EPOCH": "1700000000"}, 1_700_000_000, id="set"),
    ],
)
def test_source_date_epoch(env, expected):
    assert source_date_epoch(env) == expected


@pytest.mark.parametrize(
    "value",
    [pytest.param("yesterday", id="not-a-number"), pytest.param("-5", id="negative")],
)
def test_source_date_epoch_rejects_garbage(value):
    with pytest.raises(CreateError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch({"SOURCE_DATE_EPOCH": value})
