"""The top-level Containerfile builds the TCV tool image (docs/spec.md §6): Python,
buildah, podman, skopeo and tcv, for pipeline steps.

No public base image is reachable here, so the test makes its Debian 12 base
with ``debootstrap --variant=minbase bookworm`` (cached per day under
/var/tmp/tcv-test-base to keep CI time down), imports it, builds the
Containerfile with ``--build-arg BASE=...`` and runs tcv inside the result
with podman (runc and explicit ulimits, see ENVIRONMENT.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tcv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BASE_CACHE = Path("/var/tmp/tcv-test-base")
MIRROR = "http://deb.debian.org/debian"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def debian_base_tar() -> Path:
    """A minbase bookworm root filesystem as a tar, made once per day."""
    day = time.strftime("%Y%m%d", time.gmtime())
    tar = BASE_CACHE / f"bookworm-minbase-{day}.tar"
    if tar.exists():
        return tar
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    for old in BASE_CACHE.glob("bookworm-minbase-*.tar"):
        old.unlink()
    root = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=BASE_CACHE))
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        partial = tar.with_suffix(".tar.partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        os.replace(partial, tar)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tar


def pip_ca_bundle() -> Path | None:
    """The CA bundle pip uses on this host (a TLS-intercepting proxy's CA
    lives there); the build mounts it so pip inside reaches PyPI the same way."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def tool_image(tmp_path_factory) -> Iterator[str]:
    tag = uuid.uuid4().hex[:8]
    base = f"localhost/tcv-test-debian-base:{tag}"
    image = f"localhost/tcv-tool-test:{tag}"
    subprocess.run(
        ["podman", "import", "--quiet", str(debian_base_tar()), base],
        check=True,
        capture_output=True,
    )
    argv = ["buildah", "bud", "--quiet", "--layers=false", "--build-arg", f"BASE={base}"]
    ca = pip_ca_bundle()
    if ca:
        argv += ["-v", f"{ca}:/run/tcv-ca.crt:ro", "--build-arg", "PIP_CERT=/run/tcv-ca.crt"]
    try:
        built = subprocess.run(
            [*argv, "-t", image, "-f", "Containerfile", "."],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        yield image
    finally:
        subprocess.run(["buildah", "rmi", "-f", image, base], capture_output=True)


def podman_run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    conf = tmp / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return subprocess.run(
        ["podman", "run", "--rm", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
    )


def test_tool_image_runs_tcv(tool_image, tmp_path):
    proc = podman_run(tmp_path, tool_image, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"tcv {tcv.__version__}"


def test_tool_image_scans_the_bundled_example(tool_image, tmp_path):
    example = REPO / "examples" / "vector-add-cache"
    proc = podman_run(
        tmp_path,
        "-v",
        f"{example}:/cache:ro",
        tool_image,
        "scan",
        "/cache",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    scanned = json.loads(proc.stdout)
    expected = sorted(p.name for p in example.iterdir() if p.is_dir())
    assert expected
    assert sorted(e["key"] for e in scanned["entries"]) == expected


def test_tool_image_has_the_container_tools(tool_image, tmp_path):
    proc = podman_run(
        tmp_path,
        "--entrypoint",
        "sh",
        tool_image,
        "-c",
        "buildah --version && podman --version && skopeo --version && tcv-build --version",
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("buildah version", "podman version", "skopeo version", "tcv-build"):
        assert word in proc.stdout


def test_tool_image_builds_a_cache_image(tool_image, tmp_path, caches_dir):
    """The pipeline step itself: tcv-build inside the tool image (vfs storage,
    no privileges) prints the new image's digest."""
    proc = podman_run(
        tmp_path,
        "-v",
        f"{caches_dir / 'triton-3.9'}:/cache:ro",
        "--entrypoint",
        "tcv-build",
        tool_image,
        "/cache",
        "-t",
        "localhost/pipeline/kernels:1",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("sha256:") and len(proc.stdout.strip()) == 71
