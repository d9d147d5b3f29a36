"""Scanning a Triton cache root (docs/spec.md §4), checked against index.json, the
oracle written from Triton's own data by tests/data/make_caches.py.

Unreadable input: the tests run as root, so file permissions cannot make a
file unreadable; they use what root cannot read either — a FIFO (no data, and
opening it for reading would block), a dangling symlink, a symlink that
leaves the root, and a directory where a file is expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tcv.cache.keys import LOCK_NAME, key_candidates, key_encoding, key_for_hash
from tcv.cache.scan import NotAKernelError, ScanResult, default_cache_dir, read_entry, scan_cache
from tcv.errors import EXIT_USAGE, UsageError

CACHES = Path(__file__).resolve().parent.parent / "data" / "caches"
INDEX: dict[str, Any] = json.loads((CACHES / "index.json").read_text())
FIXTURES = sorted({e["fixture"] for e in INDEX["entries"]})
ENTRY_PARAMS = [
    pytest.param(e, id=f"{e['fixture']}/{e['name']}-{e['backend']}{e['arch']}-{e['key'][:8]}")
    for e in INDEX["entries"]
]
FIELDS = ("name", "backend", "arch", "warp_size", "triton_version", "ptx_version", "hash")


def _oracle(fixture: str) -> dict[str, dict[str, Any]]:
    return {e["key"]: e for e in INDEX["entries"] if e["fixture"] == fixture}


def _expected(want: dict[str, Any], field: str) -> Any:
    """The oracle's value as the metadata can tell it: Triton writes
    ``triton_version`` into the metadata only from 3.3 (docs/spec.md §4), so an older
    entry does not know which Triton made it."""
    if field == "triton_version":
        major, minor = (int(p) for p in want["triton_version"].split(".")[:2])
        return want["triton_version"] if (major, minor) >= (3, 3) else None
    return want.get(field)


@pytest.mark.parametrize("fixture", [pytest.param(f, id=f) for f in FIXTURES])
def test_scan_matches_the_oracle(fixture):
    result = scan_cache(CACHES / fixture)
    oracle = _oracle(fixture)
    assert [e.key for e in result.entries] == sorted(oracle)
    assert result.skipped == []
    for entry in result.entries:
        want = oracle[entry.key]
        got = {f: getattr(entry, f) for f in FIELDS}
        assert got == {f: _expected(want, f) for f in FIELDS}, entry.key
        assert sorted(entry.files) == sorted(want["files"])
        assert entry.num_warps == want["num_warps"]


@pytest.mark.parametrize("want", ENTRY_PARAMS)
def test_file_sizes_and_hashes_are_the_bytes_on_disk(want):
    entry = read_entry(CACHES / want["fixture"] / want["key"])
    for name, info in entry.files.items():
        data = (CACHES / want["fixture"] / want["key"] / name).read_bytes()
        assert info.size == len(data)
        assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert entry.bytes == sum(f.size for f in entry.files.values())


@pytest.mark.parametrize("want", ENTRY_PARAMS)
def test_key_encodings(want):
    assert key_encoding(want["key"]) == want["key_encoding"]
    if want["key_encoding"] != "md5-hex" and want.get("hash"):
        assert want["key"] in key_candidates(want["hash"])
        assert key_for_hash(want["hash"], want["triton_version"]) == want["key"]


def test_key_encoding_of_nonsense():
    assert key_encoding("not-a-key") is None
    assert key_candidates("xyz") == ["xyz"]
    assert key_candidates("ab" * 16) == ["ab" * 16]


# ------------------------------------------------------------ building bad caches


def _real(backend: str = "cuda") -> Path:
    e = next(
        e
        for e in INDEX["entries"]
        if e["fixture"] == "triton-3.9" and e["backend"] == backend and e["name"] == "add_kernel"
    )
    return CACHES / e["fixture"] / e["key"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A cache root holding one good real entry under key GOOD."""
    r = tmp_path / "cache"
    r.mkdir()
    shutil.copytree(_real(), r / "GOOD")
    return r


def _copy(root: Path, key: str) -> Path:
    return Path(shutil.copytree(_real(), root / key))


def _reasons(result: ScanResult) -> dict[str, str]:
    return {s.path: s.reason for s in result.skipped}


def _launcher(root: Path, key: str, so: str) -> None:
    (root / key).mkdir()
    (root / key / so).write_bytes(b"\x7fELF not really")


def _mk_tmp_root(root: Path) -> None:
    (root / "tmp.pid_12_0a1b").mkdir()
    (root / "tmp.pid_12_0a1b" / "add_kernel.ptx").write_text("half")


def _mk_empty(root: Path) -> None:
    (root / "EMPTY").mkdir()


def _mk_no_metadata(root: Path) -> None:
    d = _copy(root, "BAD")
    (d / "add_kernel.json").unlink()
    (d / "__grp__add_kernel.json").unlink()


def _mk_corrupt_json(root: Path) -> None:
    d = _copy(root, "BAD")
    (d / "add_kernel.json").write_text('{"hash": "ab", "target": ')


def _mk_json_array(root: Path) -> None:
    d = _copy(root, "BAD")
    (d / "add_kernel.json").write_text("[1, 2, 3]")


def _mk_no_target(root: Path) -> None:
    d = _copy(root, "BAD")
    meta = json.loads((d / "add_kernel.json").read_text())
    del meta["target"], meta["arch"]
    (d / "add_kernel.json").write_text(json.dumps(meta))
    (d / "add_kernel.ptx").unlink()


def _mk_fifo(root: Path) -> None:
    d = _copy(root, "BAD")
    (d / "add_kernel.cubin").unlink()
    os.mkfifo(d / "add_kernel.cubin")


def _mk_dangling(root: Path) -> None:
    d = _copy(root, "BAD")
    (d / "add_kernel.cubin").unlink()
    (d / "add_kernel.cubin").symlink_to(d / "gone.cubin")


def _mk_file_escape(root: Path) -> None:
    d = _copy(root, "BAD")
    outside = root.parent / "secret.cubin"
    outside.write_bytes(b"not yours")
    (d / "add_kernel.cubin").unlink()
    (d / "add_kernel.cubin").symlink_to(outside)


def _mk_dir_escape(root: Path) -> None:
    outside = Path(shutil.copytree(_real(), root.parent / "elsewhere"))
    (root / "BAD").symlink_to(outside)


def _mk_dangling_dir(root: Path) -> None:
    (root / "BAD").symlink_to(root.parent / "nothing-here")


def _mk_metadata_is_dir(root: Path) -> None:
    d = _copy(root, "BAD")
    (d / "add_kernel.json").unlink()
    (d / "add_kernel.json").mkdir()


def _mk_autotune(root: Path) -> None:
    (root / "AUTOTUNE").mkdir()
    (root / "AUTOTUNE" / "matmul.autotune.json").write_text('{"key": [], "configs_timings": []}')


def _mk_top_file(root: Path) -> None:
    (root / "notes.txt").write_text("hello")


def _mk_top_lock(root: Path) -> None:
    (root / "lock").write_text("")


@pytest.mark.parametrize(
    ("make", "path", "needle"),
    [
        pytest.param(
            lambda r: _launcher(r, "LAUNCH", "__triton_launcher.cpython-311-x86_64-linux-gnu.so"),
            "LAUNCH",
            "launcher/utils .so",
            id="launcher",
        ),
        pytest.param(
            lambda r: _launcher(r, "UTILS", "cuda_utils.cpython-311-x86_64-linux-gnu.so"),
            "UTILS",
            "launcher/utils .so",
            id="cuda-utils",
        ),
        pytest.param(
            lambda r: _launcher(r, "HIPUTILS", "hip_utils.cpython-311-x86_64-linux-gnu.so"),
            "HIPUTILS",
            "launcher/utils .so",
            id="hip-utils",
        ),
        pytest.param(_mk_tmp_root, "tmp.pid_12_0a1b", "interrupted Triton write", id="tmp-dir"),
        pytest.param(_mk_empty, "EMPTY", "empty directory", id="empty-dir"),
        pytest.param(_mk_no_metadata, "BAD", "no metadata", id="metadata-missing"),
        pytest.param(_mk_corrupt_json, "BAD", "not valid JSON", id="metadata-corrupt"),
        pytest.param(_mk_json_array, "BAD", "not an object", id="metadata-array"),
        pytest.param(_mk_no_target, "BAD", "no target", id="metadata-no-target"),
        pytest.param(_mk_metadata_is_dir, "BAD", "no metadata", id="metadata-is-a-dir"),
        pytest.param(_mk_fifo, "BAD", "add_kernel.cubin is a FIFO", id="fifo"),
        pytest.param(_mk_dangling, "BAD", "dangling symlink", id="dangling-file"),
        pytest.param(_mk_dangling_dir, "BAD", "dangling symlink", id="dangling-dir"),
        pytest.param(_mk_file_escape, "BAD", "out of the cache root", id="file-symlink-escape"),
        pytest.param(_mk_dir_escape, "BAD", "out of the cache root", id="dir-symlink-escape"),
        pytest.param(_mk_autotune, "AUTOTUNE", "autotuning results", id="autotune"),
        pytest.param(_mk_top_file, "notes.txt", "not a kernel directory", id="top-level-file"),
        pytest.param(_mk_top_lock, "lock", "lock", id="top-level-lock"),
    ],
)
def test_not_a_kernel_is_skipped_with_a_reason(root, make, path, needle):
    make(root)
    result = scan_cache(root)
    assert [e.key for e in result.entries] == ["GOOD"]
    reasons = _reasons(result)
    assert list(reasons) == [path]
    assert needle in reasons[path]


@pytest.mark.parametrize(
    ("name", "make", "needle"),
    [
        pytest.param("lock", lambda p: p.write_text(""), "lock file", id="lock"),
        pytest.param(
            "add_kernel.json.tmp.pid_7_ff",
            lambda p: p.write_text("{"),
            "interrupted Triton write",
            id="tmp-file",
        ),
        pytest.param(
            "tmp.pid_7_ff", lambda p: p.mkdir(), "interrupted Triton write", id="tmp-subdir"
        ),
        pytest.param("extra", lambda p: p.mkdir(), "subdirectory", id="other-subdir"),
    ],
)
def test_leftovers_inside_an_entry_are_skipped_but_the_entry_stays(root, name, make, needle):
    make(root / "GOOD" / name)
    result = scan_cache(root)
    (entry,) = result.entries
    assert name not in entry.files
    assert sorted(entry.files) == sorted(read_entry(_real()).files)
    assert needle in _reasons(result)[f"GOOD/{name}"]


def test_symlinks_inside_the_root_are_followed(root):
    (root / "ALIAS").symlink_to(root / "GOOD")
    shared = root / "GOOD" / "add_kernel.cubin"
    other = _copy(root, "OTHER")
    (other / "add_kernel.cubin").unlink()
    (other / "add_kernel.cubin").symlink_to(shared)
    result = scan_cache(root)
    assert [e.key for e in result.entries] == ["ALIAS", "GOOD", "OTHER"]
    assert result.skipped == []
    by_key = {e.key: e for e in result.entries}
    assert by_key["OTHER"].files["add_kernel.cubin"] == by_key["GOOD"].files["add_kernel.cubin"]


def test_launchers_are_entries_when_asked(root):
    so = "cuda_utils.cpython-311-x86_64-linux-gnu.so"
    _launcher(root, "UTILS", so)
    result = scan_cache(root, include_launchers=True)
    assert [e.key for e in result.entries] == ["GOOD", "UTILS"]
    utils = result.entries[1]
    assert (utils.name, utils.backend, utils.arch, utils.warp_size) == ("cuda_utils", "", "", None)
    assert list(utils.files) == [so]
    assert result.skipped == []


def test_the_scan_does_not_hang_on_a_fifo_swapped_in_late(root, monkeypatch):
    """A FIFO appearing between listing and reading is refused by fstat, not
    waited on (the open is non-blocking)."""
    import tcv.cache.scan as cache

    real_entry_files = cache._entry_files

    def swap(*args, **kwargs):  # type: ignore[no-untyped-def]
        files = real_entry_files(*args, **kwargs)
        target = root / "GOOD" / "add_kernel.cubin"
        target.unlink()
        os.mkfifo(target)
        return files

    monkeypatch.setattr(cache, "_entry_files", swap)
    result = scan_cache(root)
    assert result.entries == []
    assert "add_kernel.cubin is a FIFO" in _reasons(result)["GOOD"]


def test_empty_root_is_zero_entries(tmp_path):
    result = scan_cache(tmp_path)
    assert (result.entries, result.skipped, result.total_bytes) == ([], [], 0)
    assert result.root == tmp_path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(lambda p: p, "does not exist", id="missing"),
        pytest.param(lambda p: (p.write_text("x"), p)[1], "is not a directory", id="a-file"),
        pytest.param(
            lambda p: (p.symlink_to(p.parent / "nowhere"), p)[1], "does not exist", id="dangling"
        ),
    ],
)
def test_bad_root_is_a_usage_error(tmp_path, make, needle):
    bad = make(tmp_path / "root")
    with pytest.raises(UsageError) as err:
        scan_cache(bad)
    assert err.value.exit_code == EXIT_USAGE
    assert needle in err.value.line()
    assert "\n" not in err.value.line()


def test_read_entry_refuses_what_is_not_a_kernel(tmp_path):
    (tmp_path / "EMPTY").mkdir()
    with pytest.raises(NotAKernelError, match="empty directory"):
        read_entry(tmp_path / "EMPTY")
    with pytest.raises(NotAKernelError, match="not a directory"):
        read_entry(tmp_path / "missing")


def test_to_json_is_the_spec_shape(root):
    _mk_empty(root)
    doc = scan_cache(root).to_json()
    assert set(doc) == {"root", "entries", "skipped"}
    (entry,) = doc["entries"]
    assert list(entry) == [
        "key",
        "name",
        "backend",
        "arch",
        "warp_size",
        "triton_version",
        "ptx_version",
        "files",
        "bytes",
    ]
    assert isinstance(entry["arch"], str)
    assert isinstance(entry["ptx_version"], int)
    assert entry["files"] == len(read_entry(_real()).files)
    assert doc["skipped"] == [{"path": "EMPTY", "reason": "empty directory"}]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {"TRITON_CACHE_DIR": "/c", "TRITON_HOME": "/t", "HOME": "/h"}, "/c", id="cache-dir"
        ),
        pytest.param({"TRITON_HOME": "/t", "HOME": "/h"}, "/t/.triton/cache", id="triton-home"),
        pytest.param({"HOME": "/h"}, "/h/.triton/cache", id="home"),
        pytest.param(
            {"TRITON_CACHE_DIR": "", "TRITON_HOME": "", "HOME": "/h"},
            "/h/.triton/cache",
            id="empty-values-unset",
        ),
    ],
)
def test_default_cache_dir(env, expected):
    assert default_cache_dir(env) == Path(expected)


def test_install_lock_is_not_reported(tmp_path):
    """The lock tcv.install leaves in every DEST is TCV's own file, not cache content."""
    (tmp_path / LOCK_NAME).write_text("")
    (tmp_path / "lock").write_text("")
    result = scan_cache(tmp_path)
    assert [s.path for s in result.skipped] == ["lock"]
    assert result.entries == []
