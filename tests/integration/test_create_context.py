"""tcv-build (docs/spec.md §6): digest alone on stdout, and a --context-only build
context that buildah turns into the same image as tcv -c."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness import buildah_state
from tests.harness.gostyle import fetch_image

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _own_storage(tmp_path_factory):
    """A containers storage of this module's own: leftovers checks see only its builds."""
    with buildah_state.private_storage(tmp_path_factory.mktemp("storage")):
        yield


BIN = Path(sys.executable).parent


def inspect_local(ref: str) -> tuple[dict, dict]:
    def skopeo(*args: str) -> dict:
        out = subprocess.run(
            ["skopeo", "inspect", *args, f"containers-storage:{ref}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out)

    return skopeo("--raw"), skopeo("--config", "--raw")


@pytest.fixture
def refs():
    made: list[str] = []
    yield made
    for ref in made:
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)


def test_context_builds_the_same_image_as_create(caches_dir, tmp_path, refs):
    cache = caches_dir / "triton-3.9"
    tag = uuid.uuid4().hex[:8]
    direct, via_context = f"localhost/tcv-it/ctx:{tag}", f"localhost/tcv-it/ctx:{tag}-bud"
    refs += [direct, via_context]
    env = {**os.environ, "TCV_STAGING_ROOT": str(tmp_path)}
    built = subprocess.run(
        [str(BIN / "tcv-build"), str(cache), "-t", direct],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip().startswith("sha256:")
    assert built.stdout.count("\n") == 1  # the digest and nothing else

    out = tmp_path / "context"
    ctx = subprocess.run(
        [str(BIN / "tcv-build"), str(cache), "-t", direct, "--context-only", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ctx.returncode == 0, ctx.stderr
    assert ctx.stdout == ""
    assert (out / "Containerfile").read_text().startswith("# A Triton kernel cache image")
    subprocess.run(
        [
            "buildah",
            "build",
            "--quiet",
            "--timestamp",
            "0",
            "--identity-label=false",
            "-t",
            via_context,
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    (m1, c1), (m2, c2) = inspect_local(direct), inspect_local(via_context)
    assert c1["config"]["Labels"] == c2["config"]["Labels"]
    # The same layer, byte for byte (same diff ID): same paths, modes, owners, bytes.
    assert [lay["digest"] for lay in m1["layers"]] == [lay["digest"] for lay in m2["layers"]]
    assert c1["rootfs"]["diff_ids"] == c2["rootfs"]["diff_ids"]


def test_context_only_refuses_a_non_empty_out(caches_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    proc = subprocess.run(
        [
            str(BIN / "tcv-build"),
            str(caches_dir / "triton-3.9"),
            "-t",
            "localhost/x",
            "--context-only",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3
    assert "not an empty directory" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


def test_build_push_prints_the_registry_digest(registry, caches_dir, tmp_path, refs):
    ref = registry.ref(f"tcv-it/build-push:{uuid.uuid4().hex[:8]}")
    refs.append(ref)
    staging = tmp_path / "staging"
    staging.mkdir()
    before = buildah_state.snapshot(staging)
    proc = subprocess.run(
        [
            str(BIN / "tcv-build"),
            str(caches_dir / "triton-3.9"),
            "-t",
            ref,
            "--push",
            "--tls-verify=false",
            "--format",
            "docker",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TCV_STAGING_ROOT": str(staging)},
    )
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.strip()
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(inspected)["Digest"] == digest
    image = fetch_image(f"docker://{ref}", tmp_path / "fetched")
    assert image.manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert buildah_state.snapshot(staging).leftovers(before) == {
        "containers": [],
        "mounts": [],
        "staging": [],
    }


def test_tcv_build_takes_from_and_mount_path_as_tcv_c_does(caches_dir, tmp_path, refs):
    """--from and --mount-path make the same image through tcv-build, its
    --context-only build context and tcv -c: the same labels, the same layer."""
    cache = caches_dir / "triton-3.9"
    tag = uuid.uuid4().hex[:8]
    via_build, via_create = f"localhost/tcv-it/mnt:{tag}", f"localhost/tcv-it/mnt:{tag}-c"
    refs += [via_build, via_create]
    env = {**os.environ, "TCV_STAGING_ROOT": str(tmp_path)}
    shared = ["--from", "triton", "--mount-path", "/triton-cache"]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    run(str(BIN / "tcv-build"), str(cache), "-t", via_build, *shared)
    run(str(BIN / "tcv"), "-c", "-i", via_create, "-d", str(cache), *shared)
    out = tmp_path / "context"
    run(str(BIN / "tcv-build"), str(cache), "-t", via_build, "--context-only", str(out), *shared)
    (_, c1), (_, c2) = inspect_local(via_build), inspect_local(via_create)
    labels = c1["config"]["Labels"]
    assert labels["cache.triton.image/mount-path"] == "/triton-cache"
    assert labels == c2["config"]["Labels"]
    assert c1["rootfs"]["diff_ids"] == c2["rootfs"]["diff_ids"]
    assert '"cache.triton.image/mount-path"="/triton-cache"' in (out / "Containerfile").read_text()
    groups = [json.loads(p.read_text()) for p in out.glob("rootfs/io.triton.cache/*/__grp__*")]
    assert groups and all(
        path.startswith("/triton-cache/") for g in groups for path in g["child_paths"].values()
    )
