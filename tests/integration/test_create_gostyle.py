"""Interoperability with the earlier Go tools' images (docs/spec.md §3): an image laid
out as they make it extracts with TCV's model, and TCV's image has the layout,
labels and JSON types they read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import parse_manifest, parse_summary
from tcv.image.unpack import unpack_layers
from tests.harness import buildah_state
from tests.harness.gostyle import build_gostyle_image, fetch_image

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _own_storage(tmp_path_factory):
    """A containers storage of this module's own: leftovers checks see only its builds."""
    with buildah_state.private_storage(tmp_path_factory.mktemp("storage")):
        yield


BIN = Path(sys.executable).parent


@pytest.fixture
def gostyle_ref(registry, caches_dir, tmp_path):
    ref = registry.ref(f"tcv-it/gostyle:{uuid.uuid4().hex[:8]}")
    build_gostyle_image(caches_dir / "triton-3.9", ref, tmp_path)
    try:
        subprocess.run(
            ["buildah", "push", "--quiet", "--tls-verify=false", ref, f"docker://{ref}"],
            check=True,
            capture_output=True,
        )
        yield ref
    finally:
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)


def test_gostyle_image_reads_with_our_model(gostyle_ref, caches_dir, tmp_path):
    image = fetch_image(f"docker://{gostyle_ref}", tmp_path / "fetched")
    assert [lay["mediaType"] for lay in image.layers] == [
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ]
    source = scan_cache(caches_dir / "triton-3.9")
    targets = parse_summary(image.labels["cache.triton.image/summary"])
    assert {(t.backend, t.arch, t.warp_size) for t in targets} == {e.target for e in source.entries}
    root = tmp_path / "unpacked"
    root.mkdir()
    layers = [(image.layer_path(i), lay["mediaType"]) for i, lay in enumerate(image.layers)]
    unpack_layers(layers, root)
    manifest = json.loads((root / "io.triton.manifest" / "manifest.json").read_text())
    assert isinstance(manifest, list)  # the older bare-array form
    # No key in the Go manifest: our model derives it from the metadata hash.
    assert {e.key for e in parse_manifest(manifest)} == {e.key for e in source.entries}
    unpacked = scan_cache(root / "io.triton.cache")
    assert {(e.key, tuple(sorted(e.files.items()))) for e in unpacked.entries} == {
        (e.key, tuple(sorted(e.files.items()))) for e in source.entries
    }


def test_gostyle_image_extracts_with_tcv(gostyle_ref, caches_dir, tmp_path):
    dest = tmp_path / "dest"
    proc = subprocess.run(
        [
            str(BIN / "tcv"),
            "-e",
            "-i",
            gostyle_ref,
            "-d",
            str(dest),
            "--no-gpu-check",
            "--tls-verify=false",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp_path / "staging")},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    source = scan_cache(caches_dir / "triton-3.9")
    assert sorted(out["installed"]) == sorted(e.key for e in source.entries)
    for e in source.entries:
        for name in e.files:
            if not name.startswith("__grp__"):  # group files are relocated on install
                assert (dest / e.key / name).read_bytes() == (
                    caches_dir / "triton-3.9" / e.key / name
                ).read_bytes()


def test_our_image_has_the_go_layout(registry, caches_dir, tmp_path):
    """What the Go readers rely on: the two trees at the layer root, the
    labels as strings, the summary's arch a string and warp_size an integer."""
    ref = registry.ref(f"tcv-it/for-go:{uuid.uuid4().hex[:8]}")
    try:
        proc = subprocess.run(
            [
                str(BIN / "tcv"),
                "-c",
                "-i",
                ref,
                "-d",
                str(caches_dir / "triton-3.9"),
                "--format",
                "docker",
                "--push",
                "--tls-verify=false",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "TCV_STAGING_ROOT": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stderr
        image = fetch_image(f"docker://{ref}", tmp_path / "fetched")
        tops = {m.name.split("/", 1)[0] for m in image.layer_members()}
        assert tops == {"io.triton.cache", "io.triton.manifest"}
        assert all(isinstance(v, str) for v in image.labels.values())
        for t in json.loads(image.labels["cache.triton.image/summary"])["targets"]:
            assert isinstance(t["arch"], str) and isinstance(t["warp_size"], int)
        assert image.labels["cache.triton.image/variant"] == "multi"
    finally:
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)
