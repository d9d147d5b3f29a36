"""Images laid out like the Go tools' extract: Docker media types, the bare-array
manifest, a summary without the new fields — or, like thunderbolt's, no manifest
and no summary at all."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tcv.cache.scan import scan_cache
from tests.harness import hostile as h
from tests.harness.gostyle import build_gostyle_image

pytestmark = pytest.mark.integration


def cuda90(cache) -> list[str]:
    return sorted(e.key for e in scan_cache(cache).entries if (e.backend, e.arch) == ("cuda", "90"))


def test_go_tool_image_built_by_buildah(registry, caches_dir, tmp_path):
    cache = caches_dir / "triton-3.9"
    ref = registry.ref(f"tcv-it/gostyle:{uuid.uuid4().hex[:8]}")
    build_gostyle_image(cache, ref, tmp_path)
    try:
        subprocess.run(
            ["buildah", "push", "--quiet", "--tls-verify=false", ref, f"docker://{ref}"],
            check=True,
            capture_output=True,
        )
    finally:
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
    ).stdout
    assert json.loads(raw)["layers"][0]["mediaType"].startswith("application/vnd.docker.")
    doc = h.extract_json(ref, tmp_path / "dest", tmp_path / "st")
    assert doc["installed"] == cuda90(cache)
    assert {s["key"] for s in doc["skipped"]} == {e.key for e in scan_cache(cache).entries} - set(
        cuda90(cache)
    )


def test_thunderbolt_image_without_manifest_or_summary(registry, caches_dir, tmp_path):
    """Only ``io.triton.cache/`` and a title label: kernels are judged from their
    own metadata after the pull (no preflight is possible)."""
    cache = caches_dir / "triton-3.9"
    layer = h.Layer(h.cache_members(cache), h.DOCKER_GZIP)
    image = h.write_image(
        tmp_path / "img", [layer], {"org.opencontainers.image.title": "tb"}, docker=True
    )
    ref = h.push(image, registry.ref("tcv-it/thunderbolt:1"))
    assert h.extract_json(ref, tmp_path / "dest", tmp_path / "st")["installed"] == cuda90(cache)
    # The group files were rewritten for DEST although the image carried none of our data.
    for key in cuda90(cache):
        (grp,) = (tmp_path / "dest" / key).glob("__grp__*.json")
        paths = json.loads(grp.read_text())["child_paths"].values()
        assert all(p.startswith(str(tmp_path / "dest" / key)) for p in paths)
