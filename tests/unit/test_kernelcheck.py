"""Unpacked kernels are checked before install: group files, metadata, file kinds."""

from __future__ import annotations

import json
import os

import pytest

from tcv.cache.kernelcheck import group_problem, kernel_problem
from tcv.image.jsonbound import JsonBoundError, depth, loads

NAMES = {"k.json", "k.ptx", "k.cubin", "__grp__k.json"}


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"child_paths": {"k.json": "/old/cache/KEY/k.json"}}, id="dict-3x"),
        pytest.param({"child_paths": {"k.ptx": "k.ptx"}}, id="dict-relative"),
        pytest.param({"child_paths": ["k.json", "k.ptx"]}, id="list-2x"),
    ],
)
def test_honest_groups_pass(doc):
    assert group_problem(doc, NAMES) is None


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        pytest.param({"child_paths": ["/etc/passwd"]}, "'/etc/passwd'", id="list-absolute"),
        pytest.param({"child_paths": ["../OTHER/k.ptx"]}, "not a file", id="list-dotdot"),
        pytest.param({"child_paths": ["missing.ptx"]}, "not a file", id="list-missing"),
        pytest.param({"child_paths": {"/etc/passwd": "/etc/passwd"}}, "not a file", id="dict-key"),
        pytest.param({"child_paths": {"k.ptx": "/etc/passwd"}}, "another file", id="dict-path"),
        pytest.param({"child_paths": {"k.ptx": "/c/../../k.ptx"}}, "the path", id="dict-dotdot"),
        pytest.param({"child_paths": {"k.ptx": 5}}, "the path", id="dict-not-a-string"),
        pytest.param({"child_paths": "k.ptx"}, "no child_paths", id="string"),
        pytest.param([1, 2], "not a JSON object", id="array"),
    ],
)
def test_unsafe_groups_are_named(doc, needle):
    why = group_problem(doc, NAMES)
    assert why is not None and needle in why


def _kernel(tmp_path, files: dict[str, bytes]):
    d = tmp_path / "KEY"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def test_an_honest_kernel_passes(tmp_path):
    d = _kernel(
        tmp_path,
        {
            "k.json": b'{"name": "k"}',
            "k.ptx": b"ptx",
            "__grp__k.json": json.dumps({"child_paths": {"k.json": "/x/k.json"}}).encode(),
        },
    )
    assert kernel_problem(d) is None


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        pytest.param({"k.json": b"[1,2,3]"}, "JSON list, not an object", id="metadata-array"),
        pytest.param({"k.json": b"[" * 5000 + b"]" * 5000}, "nested", id="metadata-deep"),
        pytest.param(
            {"k.json": b"{}", "__grp__k.json": b'{"child_paths":' * 200 + b"1" + b"}" * 200},
            "nested",
            id="group-deep",
        ),
        pytest.param(
            {"k.json": b"{}", "__grp__k.json": b'{"child_paths": ["/etc/passwd"]}'},
            "/etc/passwd",
            id="group-passwd",
        ),
        pytest.param({"k.json": b"{}", "__grp__k.json": b"{"}, "not valid JSON", id="group-bad"),
    ],
)
def test_unsafe_kernels_get_a_reason(tmp_path, files, needle):
    why = kernel_problem(_kernel(tmp_path, files))
    assert why is not None and needle in why


def test_a_symlink_in_a_kernel_is_a_reason(tmp_path):
    d = _kernel(tmp_path, {"k.json": b"{}"})
    os.symlink("k.json", d / "k.ptx")
    assert "symlink" in kernel_problem(d)


def test_json_bounds():
    assert depth(json.loads(b'{"a": [1, {"b": "[[[["}]}')) == 3
    with pytest.raises(JsonBoundError, match="nested"):
        loads(b"[" * 100 + b"]" * 100, "x")
    with pytest.raises(JsonBoundError, match="large"):
        loads(b"[1]", "x", max_bytes=2)
    with pytest.raises(JsonBoundError, match="nested"):
        loads(b"[" * 100_000, "x")
    assert loads(b'{"a": 1}', "x") == {"a": 1}
