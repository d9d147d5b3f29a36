"""Merging several Triton caches into one image (tcv.cache.merge)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tcv.cache.merge import merge_scans, source_root
from tcv.cache.scan import scan_cache
from tcv.errors import CreateError

CUDA90 = "4SDXVXBFAHNXZM5UPNFTYK7NXZAF7A5DGE3DQLXW5HXK7GQX2FAA"
GFX942 = "CICLSTXG324UF2GRJZBDSSPMY4J5QFIDWDUNIBOC4KTJHQKUJJOQ"


def _cache(src: Path, dest: Path, *keys: str) -> Path:
    dest.mkdir()
    for key in keys:
        shutil.copytree(src / key, dest / key)
    return dest


@pytest.fixture
def fixture39(caches_dir: Path) -> Path:
    return caches_dir / "triton-3.9"


def test_disjoint_caches_merge_sorted_with_their_roots(fixture39, tmp_path):
    a = _cache(fixture39, tmp_path / "a", GFX942)
    b = _cache(fixture39, tmp_path / "b", CUDA90)
    merged = merge_scans([(a, scan_cache(a)), (b, scan_cache(b))])
    assert [e.key for e in merged.entries] == sorted([CUDA90, GFX942])
    assert merged.roots == {GFX942: a, CUDA90: b}


def test_the_same_kernel_twice_is_packed_once_from_the_first(fixture39, tmp_path):
    a = _cache(fixture39, tmp_path / "a", CUDA90)
    b = _cache(fixture39, tmp_path / "b", CUDA90, GFX942)
    grp = next((b / CUDA90).glob("__grp__*.json"))
    grp.write_text(grp.read_text().replace("/tmp/", "/srv/runner-2/"))
    merged = merge_scans([(a, scan_cache(a)), (b, scan_cache(b))])
    assert [e.key for e in merged.entries] == sorted([CUDA90, GFX942])
    assert merged.roots[CUDA90] == a


def test_one_key_with_different_bytes_is_refused(fixture39, tmp_path):
    a = _cache(fixture39, tmp_path / "a", CUDA90)
    b = _cache(fixture39, tmp_path / "b", CUDA90)
    ptx = next((b / CUDA90).glob("*.ptx"))
    ptx.write_bytes(ptx.read_bytes() + b"// changed\n")
    with pytest.raises(CreateError) as err:
        merge_scans([(a, scan_cache(a)), (b, scan_cache(b))])
    assert err.value.exit_code == 2
    line = err.value.line()
    assert CUDA90 in line and str(a) in line and str(b) in line and ptx.name in line
    assert "\n" not in line


def test_source_root_joins_several(tmp_path):
    assert source_root([tmp_path / "a"]) == str((tmp_path / "a").resolve())
    assert source_root([tmp_path / "a", tmp_path / "b"]).count(":") == 1
