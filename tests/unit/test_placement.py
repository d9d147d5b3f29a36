"""Where --for puts the kernels (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcv.cache.layout import INDUCTOR, VLLM, Layout, Root
from tcv.errors import UsageError
from tcv.gpu.model import Gpu, HostGpus
from tcv.placement import Placement, base_dir, inductor_cache_dir, plan, vllm_cache_root

HOST = HostGpus((Gpu(0, "cuda", "90", 32), Gpu(1, "cuda", "80", 32)))


def test_inductor_cache_dir_is_the_variable_else_tempdir_and_sanitised_user():
    assert inductor_cache_dir({"TORCHINDUCTOR_CACHE_DIR": "/c"}, "u") == Path("/c")
    assert inductor_cache_dir({}, "dom\\u:x", tmpdir="/tmp") == Path("/tmp/torchinductor_dom_u_x")


def test_vllm_cache_root_is_the_variable_else_xdg_else_home():
    assert vllm_cache_root({"VLLM_CACHE_ROOT": "/v"}, "/h") == Path("/v")
    assert vllm_cache_root({"XDG_CACHE_HOME": "/x"}, "/h") == Path("/x/vllm")
    assert vllm_cache_root({}, "/h") == Path("/h/.cache/vllm")


def test_d_names_the_base_directory():
    assert base_dir(INDUCTOR, "/d", {}, user="u", home="/h") == Path("/d")
    assert base_dir(VLLM, None, {"VLLM_CACHE_ROOT": "/v"}, user="u", home="/h") == Path("/v")


def test_inductor_gets_one_directory_per_gpu_index():
    got = plan(INDUCTOR, Path("/c"), HOST, None)
    assert got == [Placement(Path("/c/triton/0"), 0), Placement(Path("/c/triton/1"), 1)]
    assert plan(INDUCTOR, Path("/c"), None, None) == [Placement(Path("/c/triton/0"))]


def test_vllm_restores_each_recorded_root_and_needs_one():
    layout = Layout(VLLM, (Root("t/h/rank_0_0/triton_cache"), Root("t/h/rank_1_0/triton_cache")))
    got = plan(VLLM, Path("/v"), HOST, layout)
    assert [p.dest for p in got] == [
        Path("/v/t/h/rank_0_0/triton_cache"),
        Path("/v/t/h/rank_1_0/triton_cache"),
    ]
    with pytest.raises(UsageError) as err:
        plan(VLLM, Path("/v"), HOST, Layout(INDUCTOR, (Root("triton/0", 0),)))
    assert err.value.exit_code == 3
