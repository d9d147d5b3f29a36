"""Names as ``podman images`` prints them, with real buildah storage: what
``tcv -c -i NAME`` stored is found again by NAME, ``localhost/NAME:latest`` and
``containers-storage:NAME``; a short name that is nowhere says what to write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness import buildah_state

pytestmark = pytest.mark.integration

TCV = Path(sys.executable).with_name("tcv")


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    with buildah_state.private_storage(tmp_path_factory.mktemp("names-storage")):
        yield


def tcv(*args: str, tmp: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(TCV), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp), **(env or {})},
        timeout=300,
    )


def test_a_created_image_is_found_by_the_names_podman_shows(storage, caches_dir, tmp_path):
    short = f"tcv-it/names-{uuid.uuid4().hex[:8]}"
    made = tcv("-c", "-i", short, "-d", str(caches_dir / "triton-3.9"), tmp=tmp_path)
    assert made.returncode == 0, made.stderr
    shown = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert f"localhost/{short}:latest" in shown
    # A registry that is never asked: none is listening there, and none is searched.
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["127.0.0.1:1", "127.0.0.1:2"]\n')
    env = {"CONTAINERS_REGISTRIES_CONF": str(conf)}
    for name in (
        short,
        f"{short}:latest",
        f"localhost/{short}:latest",
        f"containers-storage:{short}",
    ):
        seen = tcv("inspect", name, "--json", tmp=tmp_path, env=env)
        assert seen.returncode == 0, (name, seen.stderr)
        assert json.loads(seen.stdout)["image"] == f"containers-storage:localhost/{short}:latest"
    dest = tmp_path / "dest"
    got = tcv("-e", "-i", short, "-d", str(dest), "--gpu", "cuda:90", "--json", tmp=tmp_path,
              env=env)  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["installed"]


def test_a_short_name_that_is_nowhere_says_what_to_write(storage, tmp_path):
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["quay.io", "docker.io"]\n')
    proc = tcv("inspect", "no-such/kernels:1", tmp=tmp_path,
               env={"CONTAINERS_REGISTRIES_CONF": str(conf)})  # fmt: skip
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "short name that is not in local storage" in lines[0]
    assert "quay.io, docker.io" in lines[0] and "quay.io/ORG/no-such/kernels" in lines[0]


def test_pushing_a_short_name_names_the_registry(storage, caches_dir, tmp_path):
    conf = tmp_path / "registries.conf"
    conf.write_text("unqualified-search-registries = []\n")
    proc = tcv("-c", "-i", "short-push:1", "-d", str(caches_dir / "triton-3.9"), "--push",
               tmp=tmp_path, env={"CONTAINERS_REGISTRIES_CONF": str(conf)})  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "names no registry to push to" in lines[0]
