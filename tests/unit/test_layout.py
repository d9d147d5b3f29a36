"""Where the kernels are: layout detection (pure) and the layout scan."""

from __future__ import annotations

import json
import shutil

import pytest

from tcv.cache.keys import is_key
from tcv.cache.layout import INDUCTOR, TRITON, VLLM, Layout, Root, detect, parse_label, select
from tcv.cache.scan import list_dirs, scan_cache, scan_layout
from tcv.errors import UsageError
from tests.data.layouts import FIXTURE, inductor_tree, vllm_tree

KEY = "2E4ZO47NNGMR4ORNW7PVX5KF33774RL2Z7QVUPX3OWK4ZTK6OH3Q"
KEYS = sorted(p.name for p in FIXTURE.iterdir() if p.is_dir())


_is_key = is_key


def test_kernels_at_the_top_are_a_triton_cache_whatever_lies_deeper():
    got = detect([KEY, "triton", "triton/0", f"triton/0/{KEY}"], _is_key)
    assert got == Layout(TRITON, (Root(""),))
    assert not got.nested


def test_inductor_roots_are_one_per_device():
    dirs = ["fxgraph", "triton", "triton/0", f"triton/0/{KEY}", "triton/1", f"triton/1/{KEY}"]
    got = detect(dirs, _is_key)
    assert got.kind == INDUCTOR
    assert got.roots == (Root("triton/0", 0), Root("triton/1", 1))
    assert got.describe("/c") == "this is an Inductor cache: kernels in /c/triton/0, /c/triton/1"


def test_vllm_wins_over_the_inductor_roots_inside_it():
    rank = "torch_compile_cache/h/rank_0_0"
    dirs = [f"{rank}/triton_cache/{KEY}", f"{rank}/inductor_cache/triton/0/{KEY}"]
    got = detect(dirs, _is_key)
    assert got.kind == VLLM
    assert [r.path for r in got.roots] == [
        f"{rank}/inductor_cache/triton/0",
        f"{rank}/triton_cache",
    ]


def test_an_unpacked_vllm_artifact_is_a_vllm_cache_with_its_device(tmp_path):
    artifact = tmp_path / "torch_compile_cache" / "h" / "rank_0_0" / "backbone" / "artifact_0"
    shutil.copytree(FIXTURE, artifact / "triton" / "0")
    result = scan_layout(tmp_path)
    assert result.layout is not None and result.layout.kind == VLLM
    (root,) = result.layout.roots
    assert root == Root("torch_compile_cache/h/rank_0_0/backbone/artifact_0/triton/0", 0)
    assert [e.key for e in result.entries] == KEYS


def test_an_unknown_nesting_still_finds_the_root_and_nothing_is_empty_triton():
    assert detect([f"x/y/{KEY}"], _is_key) == Layout(TRITON, (Root("x/y"),))
    assert detect(["a", "a/b"], _is_key) == Layout(TRITON, (Root(""),))


def test_from_forces_or_refuses_a_layout():
    inductor = Layout(INDUCTOR, (Root("triton/0", 0),))
    assert select(inductor, None, "/c") is inductor
    assert select(inductor, "triton", "/c") == Layout(TRITON, (Root(""),))
    assert select(inductor, "inductor", "/c") is inductor
    with pytest.raises(UsageError) as err:
        select(inductor, "vllm", "/c")
    assert "no vLLM cache in /c" in err.value.message
    assert "this is an Inductor cache: kernels in /c/triton/0" in err.value.message
    assert err.value.exit_code == 3


def test_the_layout_label_round_trips_and_refuses_escapes():
    layout = Layout(VLLM, (Root("torch_compile_cache/h/rank_0_0/triton_cache"),))
    assert parse_label(layout.label()) == layout
    bad = json.dumps({"kind": "vllm", "roots": [{"path": "../etc", "device": None}]})
    assert parse_label(bad) is None
    assert parse_label("{") is None
    assert parse_label(None) is None


def test_list_dirs_does_not_descend_into_kernel_directories(tmp_path):
    inductor_tree(tmp_path / "ind")
    dirs = list_dirs(tmp_path / "ind")
    assert f"triton/0/{KEY}" in dirs
    assert not any(d.startswith(f"triton/0/{KEY}/") for d in dirs)


def test_scan_of_an_inductor_cache_finds_every_device(tmp_path):
    base = inductor_tree(tmp_path / "ind", devices=(0, 1))
    result = scan_layout(base)
    assert result.layout is not None and result.layout.kind == INDUCTOR
    assert [e.key for e in result.entries] == KEYS
    assert result.source_of(KEY) == base / "triton" / "0"
    assert result.skipped == []
    assert result.to_json()["layout"]["roots"][1] == {"path": "triton/1", "device": 1}


def test_scan_of_a_vllm_tree_finds_its_triton_cache(tmp_path):
    root = vllm_tree(tmp_path / "vllm", ranks=("rank_0_0", "rank_1_0"))
    result = scan_layout(root)
    assert result.layout is not None and result.layout.kind == VLLM
    assert [e.key for e in result.entries] == KEYS
    rank0 = root / "torch_compile_cache" / "1a2b3c4d5e" / "rank_0_0" / "triton_cache"
    assert result.source_of(KEY) == rank0
    assert not any("empty directory" in s.reason for s in result.skipped)


def test_a_key_that_differs_between_ranks_is_packed_once_and_the_other_reported(tmp_path):
    root = vllm_tree(tmp_path / "vllm", ranks=("rank_0_0", "rank_1_0"))
    other = root / "torch_compile_cache" / "1a2b3c4d5e" / "rank_1_0" / "triton_cache" / KEY
    (other / "add_kernel.ptx").write_bytes((other / "add_kernel.ptx").read_bytes() + b"\n")
    result = scan_layout(root)
    assert KEY in [e.key for e in result.entries]
    (skip,) = result.skipped
    assert skip.path.endswith(f"rank_1_0/triton_cache/{KEY}")
    assert "differs from the kernel of the same key" in skip.reason


def test_a_plain_cache_scans_as_before(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "c")
    result = scan_layout(tmp_path / "c")
    assert result.layout is None
    assert [e.key for e in result.entries] == KEYS


def test_an_entry_whose_group_lists_a_missing_file_is_skipped_with_the_reason(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "c")
    (tmp_path / "c" / KEY / "add_kernel.cubin").unlink()
    result = scan_cache(tmp_path / "c")
    assert KEY not in [e.key for e in result.entries]
    (skip,) = [s for s in result.skipped if s.path == KEY]
    assert "group file __grp__add_kernel.json lists add_kernel.cubin" in skip.reason
    assert "miss" in skip.reason


def test_empty_directory_is_said_only_of_an_empty_directory(tmp_path):
    (tmp_path / "c" / "EMPTY").mkdir(parents=True)
    (tmp_path / "c" / "NESTED" / "deeper").mkdir(parents=True)
    reasons = {s.path: s.reason for s in scan_cache(tmp_path / "c").skipped}
    assert reasons["EMPTY"] == "empty directory"
    assert "empty" not in reasons["NESTED"]
    assert "only subdirectories" in reasons["NESTED"]
