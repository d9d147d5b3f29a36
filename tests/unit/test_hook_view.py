"""Rendered views: one key per tuple, rendered copies (never links), owned by the user."""

from __future__ import annotations

import json
import os

import pytest

from tcv.hook.view import ViewSpec, find_view, list_views, render_view

DIGEST = "sha256:" + "cd" * 32


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(ViewSpec.of("sha256:" + "00" * 32, ["a", "b"], "/c", (0, 0)), id="digest"),
        pytest.param(ViewSpec.of(DIGEST, ["a"], "/c", (0, 0)), id="kernels"),
        pytest.param(ViewSpec.of(DIGEST, ["a", "b"], "/d", (0, 0)), id="path"),
        pytest.param(ViewSpec.of(DIGEST, ["a", "b"], "/c", (1, 0)), id="uid"),
        pytest.param(ViewSpec.of(DIGEST, ["a", "b"], "/c", (0, 1)), id="gid"),
    ],
)
def test_key_differs_per_tuple(other):
    assert ViewSpec.of(DIGEST, ["b", "a", "a"], "/c", (0, 0)).key != other.key


def test_key_ignores_order_and_repeats():
    one = ViewSpec.of(DIGEST, ["b", "a", "a"], "/c", (0, 0))
    assert one.key == ViewSpec.of(DIGEST, ["a", "b"], "/c", (0, 0)).key


def test_render_copies_rewrites_groups_and_owns(tmp_path, caches_dir):
    fixture = caches_dir / "triton-3.9"
    keys = sorted(p.name for p in fixture.iterdir() if p.is_dir())[:2]
    spec = ViewSpec.of(DIGEST, keys, "/home/u/.triton/cache", (1234, 2345))
    assert find_view(tmp_path, spec) is None
    view = render_view(tmp_path, spec, fixture)
    assert find_view(tmp_path, spec) == view and list_views(tmp_path) == [view]
    assert sorted(os.listdir(view.tree)) == keys  # no install lock, nothing else
    assert view.kernels == 2 and view.size > 0
    for key in keys:
        for f in (view.tree / key).iterdir():
            st = f.stat()
            assert (st.st_uid, st.st_gid) == (1234, 2345)
            assert st.st_nlink == 1  # a copy, not a link into the stored image
            assert st.st_ino != (fixture / key / f.name).stat().st_ino
            if f.name.startswith("__grp__"):
                for p in json.loads(f.read_text())["child_paths"].values():
                    assert p.startswith(f"/home/u/.triton/cache/{key}/")
    assert os.listdir(tmp_path / "tmp") == []
