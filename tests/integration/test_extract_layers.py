"""Layer media types and layer order through a real registry and skopeo:
gzip, zstd and uncompressed, Docker and OCI, several layers applied in order."""

from __future__ import annotations

import json
import uuid

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import build_labels, build_manifest
from tests.harness import hostile as h

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cache(caches_dir):
    return caches_dir / "triton-3.9"


@pytest.fixture(scope="module")
def entries(cache):
    return scan_cache(cache).entries


def cuda90(entries) -> list[str]:
    return sorted(e.key for e in entries if (e.backend, e.arch) == ("cuda", "90"))


@pytest.mark.parametrize(
    ("media", "docker", "transport"),
    [
        pytest.param(h.OCI_GZIP, False, "docker", id="oci-gzip"),
        pytest.param(h.OCI_ZSTD, False, "docker", id="oci-zstd"),
        pytest.param(h.OCI_TAR, False, "oci", id="oci-uncompressed"),
        pytest.param(h.DOCKER_GZIP, True, "docker", id="docker-gzip"),
    ],
)
def test_media_types(registry, cache, entries, tmp_path, media, docker, transport):
    members = h.cache_members(cache, None, build_manifest(entries, str(cache)))
    image = h.write_image(
        tmp_path / "img", [h.Layer(members, media)], build_labels(entries, "m"), docker=docker
    )
    if transport == "docker":
        ref = h.push(image, registry.ref(f"tcv-it/media-{uuid.uuid4().hex[:8]}:1"))
        pushed = json.loads(
            h.subprocess.run(
                ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                check=True,
                capture_output=True,
            ).stdout
        )
        assert pushed["layers"][0]["mediaType"] == media  # the registry kept it as made
    else:
        # skopeo would compress it on any copy; an OCI layout written here keeps it.
        ref = h.to_oci_layout(image, tmp_path / "layout")
        manifest = json.loads((image.path / "manifest.json").read_text())
        assert manifest["layers"][0]["mediaType"] == media
    assert h.extract_json(ref, tmp_path / "dest", tmp_path / "st")["installed"] == cuda90(entries)


def test_several_layers_apply_in_order(registry, cache, entries, tmp_path):
    keys = cuda90(entries)
    manifest = build_manifest(entries, str(cache))
    # Layer 1: every kernel but a stale copy of the first's ptx; layer 2: the real
    # ptx, a whiteout of a stray directory, and the manifest.
    first = h.cache_members(cache, None, None)
    ptx = next(
        m
        for m in first
        if m.name.startswith(f"{h.CACHE_DIR}/{keys[0]}/") and m.name.endswith(".ptx")
    )
    real = ptx.data
    ptx.data = b"stale"
    first.append(h.directory(f"{h.CACHE_DIR}/STRAY"))
    second = [
        h.directory(h.CACHE_DIR),
        h.reg(ptx.name, real),
        h.reg(f"{h.CACHE_DIR}/.wh.STRAY"),
        h.directory("io.triton.manifest"),
        h.reg(h.MANIFEST_PATH, json.dumps(manifest).encode()),
    ]
    image = h.write_image(
        tmp_path / "img",
        [h.Layer(first, h.OCI_GZIP), h.Layer(second, h.OCI_ZSTD)],
        build_labels(entries, "layers"),
    )
    ref = h.push(image, registry.ref("tcv-it/layers:1"))
    doc = h.extract_json(ref, tmp_path / "dest", tmp_path / "st")
    assert doc["installed"] == keys
    assert "STRAY" not in {s["key"] for s in doc["skipped"]}
    installed = tmp_path / "dest" / keys[0] / ptx.name.rsplit("/", 1)[1]
    assert installed.read_bytes() == real
