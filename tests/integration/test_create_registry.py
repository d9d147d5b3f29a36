"""tcv -c with real buildah, pushed to a real registry on 127.0.0.1 (docs/spec.md §2, §3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import parse_manifest, parse_summary
from tests.harness import buildah_state
from tests.harness.gostyle import fetch_image

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _own_storage(tmp_path_factory):
    """A containers storage of this module's own: leftovers checks see only its builds."""
    with buildah_state.private_storage(tmp_path_factory.mktemp("storage")):
        yield


BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    root = tmp_path / "staging"
    root.mkdir()
    return root


def run_tcv(*args: str, staging: Path, prog: str = "tcv", **env: str):
    return subprocess.run(
        [str(BIN / prog), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(staging), **env},
        timeout=300,
    )


@pytest.fixture
def images():
    """Names of images the test makes in local storage; removed afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["buildah", "rmi", "-f", name], capture_output=True)


def expected_paths(cache: Path) -> set[str]:
    scan = scan_cache(cache)
    paths = {"io.triton.cache", "io.triton.manifest", "io.triton.manifest/manifest.json"}
    for e in scan.entries:
        paths.add(f"io.triton.cache/{e.key}")
        paths.update(f"io.triton.cache/{e.key}/{name}" for name in e.files)
    return paths


@pytest.mark.parametrize(
    ("fmt", "layer_type"),
    [pytest.param("oci", OCI_LAYER, id="oci"), pytest.param("docker", DOCKER_LAYER, id="docker")],
)
def test_create_push_labels_paths_and_media_types(
    registry, caches_dir, tmp_path, staging, images, fmt, layer_type
):
    cache = caches_dir / "triton-3.9"
    ref = registry.ref(f"tcv-it/create-{fmt}:{uuid.uuid4().hex[:8]}")
    images.append(ref)
    before = buildah_state.snapshot(staging)
    proc = run_tcv(
        "-c",
        "-i",
        ref,
        "-d",
        str(cache),
        "--format",
        fmt,
        "--push",
        "--tls-verify=false",
        "--json",
        staging=staging,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    scan = scan_cache(cache)
    assert out["image"] == ref
    assert out["pushed"] is True
    assert out["entries"] == len(scan.entries)
    assert out["bytes"] == scan.total_bytes
    assert buildah_state.snapshot(staging).leftovers(before) == {
        "containers": [],
        "mounts": [],
        "staging": [],
    }

    # skopeo inspect --config fetches only the config: the docs/spec.md §3 labels.
    raw = subprocess.run(
        ["skopeo", "inspect", "--config", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    labels = json.loads(raw)["config"]["Labels"]
    assert labels["cache.triton.image/entry-count"] == str(len(scan.entries))
    assert labels["cache.triton.image/cache-size-bytes"] == str(scan.total_bytes)
    assert labels["cache.triton.image/variant"] == "multi"
    assert labels["cache.triton.image/format-version"] == "1"
    assert labels["org.opencontainers.image.title"] == ref.rsplit("/", 1)[1].split(":")[0]
    summary = json.loads(labels["cache.triton.image/summary"])
    for t in summary["targets"]:  # the JSON types the Go readers decode
        assert isinstance(t["arch"], str)
        assert isinstance(t["warp_size"], int)
        assert t["ptx_version"] is None or isinstance(t["ptx_version"], int)
    assert sum(t.entries for t in parse_summary(labels["cache.triton.image/summary"])) == len(
        scan.entries
    )

    image = fetch_image(f"docker://{ref}", tmp_path / "fetched")
    assert out["digest"].startswith("sha256:")
    assert [layer["mediaType"] for layer in image.layers] == [layer_type]
    members = image.layer_members()
    assert {m.name.rstrip("/") for m in members} == expected_paths(cache)
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members)
    assert all(m.mode & 0o777 == (0o755 if m.isdir() else 0o644) for m in members)
    with image.open_layer() as tar:
        fh = tar.extractfile("io.triton.manifest/manifest.json")
        assert fh is not None
        manifest = json.loads(fh.read())
    assert manifest["source_root"] == str(cache.resolve())
    assert {e.key for e in parse_manifest(manifest)} == {e.key for e in scan.entries}
    # No host path inside the tar: only the layer's own names.
    assert not any(str(cache) in m.name or m.name.startswith("/") for m in members)


@pytest.mark.parametrize(
    "fmt", [pytest.param("oci", id="oci"), pytest.param("docker", id="docker")]
)
def test_layer_digest_is_identical_across_builds(
    registry, caches_dir, tmp_path, staging, images, fmt
):
    """Two builds of the same cache give the same layer digest, before and
    after push, even when its files got new mtimes and other modes in between
    (docs/spec.md §3). The cache stays at one path: the manifest records it
    (``source_root``). With OCI the whole image is identical; a Docker config
    also names buildah's working container, so there only the layer is."""
    cache = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    tag = uuid.uuid4().hex[:8]
    layers, configs = [], []
    for n in range(2):
        if n == 1:
            for p in sorted(cache.rglob("*")):
                os.chmod(p, 0o775 if p.is_dir() else 0o664)
                os.utime(p, (1_700_000_000, 1_700_000_000))
        ref = registry.ref(f"tcv-it/repro:{tag}-{n}")
        images.append(ref)
        proc = run_tcv(
            "-c",
            "-i",
            ref,
            "-d",
            str(cache),
            "--format",
            fmt,
            "--push",
            "--tls-verify=false",
            staging=staging,
        )
        assert proc.returncode == 0, proc.stderr
        local = json.loads(
            subprocess.run(
                ["skopeo", "inspect", "--raw", f"containers-storage:{ref}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        pushed = fetch_image(f"docker://{ref}", tmp_path / f"fetched-{n}")
        layers.append((local["layers"][0]["digest"], pushed.layers[0]["digest"]))
        configs.append(pushed.manifest["config"]["digest"])
    assert layers[0] == layers[1]
    assert layers[0][0] != layers[0][1]  # uncompressed diff ID and gzip blob: both compared
    if fmt == "oci":
        assert configs[0] == configs[1]


@pytest.mark.parametrize(
    "cache",
    [
        pytest.param("tests/data/caches/triton-3.9", id="fixture"),
        pytest.param("examples/vector-add-cache", id="bundled-example"),
    ],
)
def test_human_output_names_image_and_digest(staging, images, cache):
    ref = f"localhost/tcv-it/human:{uuid.uuid4().hex[:8]}"
    images.append(ref)
    proc = run_tcv("-c", "-i", ref, "-d", str(REPO / cache), staging=staging)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"image:   {ref}"
    assert lines[1].startswith("digest:  sha256:")
    digest = lines[1].split()[-1]
    listed = subprocess.run(
        ["buildah", "images", "--digests", "--no-trunc", "--format", "{{.Digest}}", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert digest in listed
