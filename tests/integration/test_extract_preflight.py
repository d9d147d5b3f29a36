"""Preflight against a real registry: an image whose summary fits nothing stops
with exit 4 before any layer blob is requested — the registry's own log says so —
and costs at most three requests beyond authentication: the raw manifest (a fleet
index or an artifact is judged from it alone), then an image's manifest and config.
(``tcv inspect``, which reads the same, is in test_inspect.py.)"""

from __future__ import annotations

import uuid

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import build_labels, build_manifest
from tests.harness import hostile as h

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def big_image(registry, caches_dir, tmp_path_factory):
    """The fixture cache plus 8 MiB of padding, so a layer fetch could not hide."""
    cache = caches_dir / "triton-3.9"
    entries = scan_cache(cache).entries
    members = h.cache_members(cache, None, build_manifest(entries, str(cache)))
    padding = h.Layer([h.reg("io.triton.manifest/padding", b"\0" * (8 << 20))], h.OCI_TAR)
    work = tmp_path_factory.mktemp("preflight")
    image = h.write_image(work / "img", [h.Layer(members), padding], build_labels(entries, "big"))
    ref = registry.ref(f"tcv-it/preflight:{uuid.uuid4().hex[:8]}")
    h.push(image, ref)
    return ref, image


def requests_for(registry, before: int, repo: str) -> list[dict]:
    return [r for r in registry.requests()[before:] if repo in str(r["uri"]) or r["uri"] == "/v2/"]


def test_nothing_fits_exit_4_without_a_layer_request(registry, big_image, tmp_path):
    ref, image = big_image
    repo = ref.split("/", 1)[1].split(":")[0]
    before = len(registry.requests())
    dest = tmp_path / "dest"
    proc = h.run_tcv(
        "-e",
        "-i",
        ref,
        "--tls-verify=false",
        "-d",
        str(dest),
        "--gpu",
        "cuda:75",
        staging=tmp_path / "st",
    )
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nothing in" in lines[0] and "cuda:90" in lines[0]
    seen = requests_for(registry, before, repo)
    blobs = [r["uri"] for r in seen if "/blobs/" in str(r["uri"])]
    assert not [u for u in blobs if any(d in u for d in image.layer_digests)], blobs
    beyond_auth = [r for r in seen if r["uri"] != "/v2/"]
    assert len(beyond_auth) <= 3, beyond_auth
    assert not dest.exists()


def test_unreachable_registry_is_exit_5(tmp_path):
    from tests.harness.registry import free_port

    proc = h.run_tcv(
        "-e",
        "-i",
        f"127.0.0.1:{free_port()}/x/y:1",
        "--tls-verify=false",
        "--gpu",
        "cuda:90",
        "-d",
        str(tmp_path / "d"),
        staging=tmp_path / "st",
    )
    assert proc.returncode == 5
    assert "connection refused" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("no_gpu_check", [False, True], ids=["gpu-check", "no-gpu-check"])
def test_an_application_image_is_refused_before_any_layer(registry, tmp_path, no_gpu_check):
    """An ordinary image (a command, an environment, no cache.triton.image labels)
    named by mistake: one line, exit 5, no layer requested, DEST not created."""
    app = h.Layer([h.reg("usr/bin/app", b"\x7fELF" + b"\0" * (1 << 20))])
    image = h.write_image(
        tmp_path / "img",
        [app],
        {"maintainer": "someone"},
        runnable={"Cmd": ["/usr/bin/app"], "Env": ["PATH=/usr/bin"]},
    )
    ref = registry.ref(f"tcv-it/application:{uuid.uuid4().hex[:8]}")
    h.push(image, ref)
    repo = ref.split("/", 1)[1].split(":")[0]
    before = len(registry.requests())
    dest = tmp_path / "dest"
    gpu = ["--no-gpu-check"] if no_gpu_check else ["--gpu", "cuda:90"]
    proc = h.run_tcv(
        "-e", "-i", ref, "--tls-verify=false", "-d", str(dest), *gpu, staging=tmp_path / "st"
    )
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "is not a Triton cache image" in lines[0] and "Cmd, Env" in lines[0]
    blobs = [r["uri"] for r in requests_for(registry, before, repo) if "/blobs/" in str(r["uri"])]
    assert not [u for u in blobs if any(d in u for d in image.layer_digests)], blobs
    assert not dest.exists()
