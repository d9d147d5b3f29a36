"""The --context-only Containerfile (render by value) and its writer."""

from __future__ import annotations

import os
import shutil

import pytest

from tcv.cache.scan import scan_cache
from tcv.errors import CreateError, UsageError
from tcv.image.containerfile import quote, render_containerfile, write_context
from tcv.image.layer import plan_layer

MANIFEST = b'{"triton": []}\n'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("multi", '"multi"', id="plain"),
        pytest.param('{"arch":"90"}', '"{\\"arch\\":\\"90\\"}"', id="json"),
        pytest.param("a$HOME", '"a\\$HOME"', id="no-variable-expansion"),
        pytest.param("back\\slash", '"back\\\\slash"', id="backslash"),
    ],
)
def test_quote(value, expected):
    assert quote(value) == expected


def test_quote_refuses_line_breaks():
    with pytest.raises(CreateError, match="line break"):
        quote("a\nb")


def test_render_containerfile():
    text = render_containerfile({"z": "1", "a": '{"k":"v"}'}, image="quay.io/x/y:1")
    assert text == (
        "# A Triton kernel cache image (TCV docs/spec.md §3), from tcv-build --context-only.\n"
        "# Build it with: buildah build --timestamp 0 -t quay.io/x/y:1 .\n"
        "FROM scratch\n"
        "# One COPY gives one layer with every builder.\n"
        "COPY rootfs/ /\n"
        'LABEL "a"="{\\"k\\":\\"v\\"}" \\\n'
        '      "z"="1"\n'
    )


@pytest.fixture
def plan(caches_dir):
    root = caches_dir / "triton-3.9"
    return plan_layer(root, scan_cache(root).entries, MANIFEST)


def test_write_context_lays_out_the_layer(tmp_path, plan):
    out = write_context(tmp_path / "ctx", plan, {"k": "v"}, mtime=42)
    assert (out / "Containerfile").read_text() == render_containerfile({"k": "v"})
    written = sorted(str(p.relative_to(out / "rootfs")) for p in (out / "rootfs").rglob("*"))
    assert written == sorted(m.path for m in plan)
    for m in plan:
        st = os.stat(out / "rootfs" / m.path)
        assert st.st_mode & 0o777 == (0o755 if m.is_dir else 0o644)
        assert st.st_mtime == 42
        if m.source is not None:
            assert (out / "rootfs" / m.path).read_bytes() == m.source.read_bytes()
    assert (out / "rootfs" / "io.triton.manifest/manifest.json").read_bytes() == MANIFEST
    assert [p.name for p in tmp_path.iterdir()] == ["ctx"]  # no temp dir left


def test_write_context_into_an_empty_directory(tmp_path, plan):
    (tmp_path / "ctx").mkdir()
    assert (write_context(tmp_path / "ctx", plan, {}) / "Containerfile").is_file()


@pytest.mark.parametrize(
    "existing",
    [pytest.param("file", id="a-file"), pytest.param("dir", id="non-empty-dir")],
)
def test_write_context_never_touches_existing_content(tmp_path, plan, existing):
    out = tmp_path / "ctx"
    if existing == "file":
        out.write_text("keep")
    else:
        out.mkdir()
        (out / "keep").write_text("keep")
    with pytest.raises(UsageError, match="not an empty directory"):
        write_context(out, plan, {})
    if existing == "file":
        assert out.read_text() == "keep"
    else:
        assert [p.name for p in out.iterdir()] == ["keep"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctx"]


def test_write_context_cleans_up_when_a_source_vanishes(tmp_path, caches_dir):
    root = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", root)
    plan = plan_layer(root, scan_cache(root).entries, MANIFEST)
    next(m for m in plan if m.source is not None).source.unlink()
    with pytest.raises(CreateError):
        write_context(tmp_path / "ctx", plan, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_write_context_needs_an_existing_parent(tmp_path, plan):
    with pytest.raises(UsageError, match="does not exist"):
        write_context(tmp_path / "no" / "ctx", plan, {})
    assert not (tmp_path / "no").exists()
