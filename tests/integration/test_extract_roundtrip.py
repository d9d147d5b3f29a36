"""Round trip with the real tools: ``tcv -c`` (buildah) pushes to a registry on
127.0.0.1, ``tcv -e`` (skopeo) installs on a simulated cuda:90 host exactly the
cuda:90 kernels, skips the others with reasons, from every transport."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tests.harness.hostile import H100, run_tcv, skopeo_copy

pytestmark = pytest.mark.integration

# The fixtures were compiled by Triton 3.9 with PTX ISA 9.4: CUDA 13.4 runs them.


@pytest.fixture(scope="module")
def fixture_cache(caches_dir: Path) -> Path:
    return caches_dir / "triton-3.9"


@pytest.fixture(scope="module")
def pushed(registry, fixture_cache, tmp_path_factory):
    """The fixture cache packed by the real ``tcv -c`` in both formats and pushed."""
    staging = tmp_path_factory.mktemp("create-staging")
    refs = {}
    for fmt in ("oci", "docker"):
        ref = registry.ref(f"tcv-it/extract-{fmt}:{uuid.uuid4().hex[:8]}")
        proc = run_tcv(
            "-c",
            "-i",
            ref,
            "-d",
            str(fixture_cache),
            "--format",
            fmt,
            "--push",
            "--tls-verify=false",
            staging=staging,
        )
        assert proc.returncode == 0, proc.stderr
        refs[fmt] = ref
    yield refs
    for ref in refs.values():
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)


def cuda90_keys(cache: Path) -> list[str]:
    return sorted(e.key for e in scan_cache(cache).entries if (e.backend, e.arch) == ("cuda", "90"))


def check_installed(dest: Path, cache: Path, keys: list[str]) -> None:
    """Each kernel byte for byte, except group files, which name files in DEST."""
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == keys
    for key in keys:
        assert sorted(os.listdir(dest / key)) == sorted(os.listdir(cache / key))
        for f in (dest / key).iterdir():
            if f.name.startswith("__grp__"):
                paths = json.loads(f.read_text())["child_paths"].values()
                assert all(p.startswith(f"{dest}/{key}/") and Path(p).is_file() for p in paths)
            else:
                assert f.read_bytes() == (cache / key / f.name).read_bytes()


@pytest.mark.parametrize(
    "fmt", [pytest.param("oci", id="oci"), pytest.param("docker", id="docker")]
)
def test_extract_on_a_cuda90_host(pushed, fixture_cache, tmp_path, fmt):
    staging = tmp_path / "staging"
    dest = tmp_path / "B"
    proc = run_tcv(
        "-e",
        "-i",
        pushed[fmt],
        "--tls-verify=false",
        "-d",
        str(dest),
        *H100,
        "--json",
        staging=staging,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    keys = cuda90_keys(fixture_cache)
    assert doc["installed"] == keys
    assert doc["present"] == []
    others = {e.key for e in scan_cache(fixture_cache).entries} - set(keys)
    assert {s["key"] for s in doc["skipped"]} == others
    assert all("cuda:90" in s["reason"] for s in doc["skipped"])
    assert doc["digest"].startswith("sha256:")
    check_installed(dest, fixture_cache, keys)
    assert os.listdir(staging) == []

    again = run_tcv(
        "-e",
        "-i",
        pushed[fmt],
        "--tls-verify=false",
        "-d",
        str(dest),
        *H100,
        "--json",
        staging=staging,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["present"] == keys


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param("oci", id="oci-dir"),
        pytest.param("oci-archive", id="oci-archive"),
        pytest.param("docker-archive", id="docker-archive"),
        pytest.param("containers-storage", id="containers-storage"),
    ],
)
def test_every_transport(pushed, fixture_cache, tmp_path, transport):
    src = f"docker://{pushed['oci']}"
    if transport == "oci":
        ref = f"oci:{tmp_path / 'layout'}:t"
    elif transport in ("oci-archive", "docker-archive"):
        ref = f"{transport}:{tmp_path / 'image.tar'}"
    else:
        ref = f"containers-storage:{pushed['oci']}"  # tcv -c built it there
    if transport != "containers-storage":
        skopeo_copy(src, ref)
    dest = tmp_path / "B"
    proc = run_tcv("-e", "-i", ref, "-d", str(dest), *H100, "--json", staging=tmp_path / "st")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["installed"] == cuda90_keys(fixture_cache)
    check_installed(dest, fixture_cache, cuda90_keys(fixture_cache))


def test_check_image_uses_the_pulled_manifest(pushed, fixture_cache, tmp_path):
    """``tcv check -i`` (the engine's command) reads the image's kernels through extract."""
    proc = run_tcv(
        "check",
        "-i",
        pushed["oci"],
        "--tls-verify=false",
        *H100,
        "--json",
        staging=tmp_path / "st",
    )
    if "--tls-verify" in proc.stderr and proc.returncode == 3:
        pytest.fail(f"tcv check -i does not take --tls-verify: {proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)["compatible"]) == cuda90_keys(fixture_cache)
