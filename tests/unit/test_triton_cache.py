"""The read-only fallback cache manager, and group files written for a mount path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.create import check_mount_path, groups_for_mount
from tcv.errors import UsageError
from tcv.triton_cache import ReadOnlyFallbackCacheManager, readonly_dirs
from tests.data.layouts import FIXTURE

KEY = "4SDXVXBFAHNXZM5UPNFTYK7NXZAF7A5DGE3DQLXW5HXK7GQX2FAA"


def _group_at(root: Path, key: str, name: str = "add_kernel.json") -> None:
    entry = root / key
    entry.mkdir(parents=True)
    (entry / name).write_text("{}")
    (entry / f"__grp__{name}").write_text(json.dumps({"child_paths": {name: str(entry / name)}}))


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    ro1, ro2, rw = tmp_path / "ro1", tmp_path / "ro2", tmp_path / "rw"
    monkeypatch.setenv("TCV_TRITON_READONLY_DIRS", f"{ro1}:{ro2}")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(rw))
    return ro1, ro2, rw


def test_readonly_dirs_in_order_empty_parts_dropped():
    assert readonly_dirs({"TCV_TRITON_READONLY_DIRS": "/a::/b"}) == ["/a", "/b"]
    assert readonly_dirs({}) == []


def test_lookups_read_the_readonly_dirs_first_and_create_nothing(dirs):
    _ro1, ro2, rw = dirs
    _group_at(ro2, "K")
    mgr = ReadOnlyFallbackCacheManager("K")
    assert mgr.get_group("add_kernel.json") == {"add_kernel.json": str(ro2 / "K/add_kernel.json")}
    assert mgr.get_file("add_kernel.json") == str(ro2 / "K/add_kernel.json")
    assert mgr.get_file("other.json") is None
    assert not rw.exists()


def test_a_group_with_a_missing_child_is_a_miss_and_the_next_dir_is_tried(dirs):
    ro1, _ro2, rw = dirs
    _group_at(ro1, "K")
    (ro1 / "K" / "add_kernel.json").unlink()
    _group_at(rw, "K")
    mgr = ReadOnlyFallbackCacheManager("K")
    assert mgr.get_group("add_kernel.json") == {"add_kernel.json": str(rw / "K/add_kernel.json")}


def test_writes_go_to_the_writable_dir(dirs):
    ro1, _ro2, rw = dirs
    ro1.mkdir()
    ro1.chmod(0o555)
    mgr = ReadOnlyFallbackCacheManager("K")
    path = mgr.put(b"data", "k.cubin")
    assert path == str(rw / "K" / "k.cubin")
    grp = mgr.put_group("k.json", {"k.cubin": path})
    assert json.loads(Path(grp).read_text()) == {"child_paths": {"k.cubin": path}}
    assert mgr.get_group("k.json") == {"k.cubin": path}
    assert list(ro1.iterdir()) == []


def test_group_files_are_written_for_the_mount_path(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "c")
    scan = scan_cache(tmp_path / "c")
    roots = {e.key: scan.source_of(e.key) for e in scan.entries}
    entries, contents = groups_for_mount(scan.entries, roots, "/triton-cache")
    by_key = {e.key: e for e in entries}
    data = contents[f"{KEY}/__grp__add_kernel.json"]
    children = json.loads(data)["child_paths"]
    assert set(children.values()) == {f"/triton-cache/{KEY}/{n}" for n in children}
    info = by_key[KEY].files["__grp__add_kernel.json"]
    assert info.size == len(data)
    original = {e.key: e for e in scan.entries}[KEY]
    assert info.sha256 != original.files["__grp__add_kernel.json"].sha256
    assert by_key[KEY].files["add_kernel.cubin"] == original.files["add_kernel.cubin"]


@pytest.mark.parametrize("bad", ["relative/dir", "/", "/a/../.."])
def test_a_mount_path_must_be_an_absolute_directory(bad):
    with pytest.raises(UsageError) as err:
        check_mount_path(bad)
    assert err.value.exit_code == 3


def test_a_mount_path_is_normalised():
    assert check_mount_path("/triton-cache/") == "/triton-cache"
