"""A ``--mount-path`` image mounted read-only is hit by the real Triton as it is.

Compile a kernel into root A (Triton 3.9 on the CPU), pack A with ``tcv -c
--mount-path M``, delete A, mount the image with ``podman image mount`` and
bind its ``io.triton.cache`` read-only at M in a private mount namespace
(``unshare -m``), the way Kubernetes ImageVolume or ``podman run --mount
type=image`` present it. There, each step a fresh Triton process
(``triton_cache_hit_driver.py``):

* the packed kernel is a cache hit straight from the read-only mount;
* with ``TRITON_CACHE_MANAGER=tcv.triton_cache:ReadOnlyFallbackCacheManager``
  a new kernel compiles without an error, written to the writable directory;
* without it, that new kernel fails with Triton's ``Read-only file system`` —
  the crash the fallback exists for (so this test fails if it stops working).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tcv.cache.scan import scan_cache
from tests.harness.hostile import run_tcv, snapshot
from tests.integration.test_triton_cache_hit import DRIVER, _compile

pytestmark = [pytest.mark.integration, pytest.mark.triton]

MANAGER = "tcv.triton_cache:ReadOnlyFallbackCacheManager"
# Private mount namespace: the read-only bind is gone when the process ends.
NAMESPACE = (
    'set -e; mount --make-rprivate /; mount --bind "$1" "$2"; '
    'mount -o remount,bind,ro "$2"; shift 2; exec "$@"'
)


def _in_readonly_mount(
    tree: Path, at: Path, home: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TRITON_HOME": str(home), "TRITON_DEFAULT_FP_FUSION": "1", **env}
    full.pop("TRITON_ALWAYS_COMPILE", None)
    for name in ("TRITON_CACHE_MANAGER", "TCV_TRITON_READONLY_DIRS"):
        if name not in env:
            full.pop(name, None)
    return subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            NAMESPACE,
            "sh",
            str(tree),
            str(at),
            sys.executable,
            str(DRIVER),
        ],
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(os.geteuid() != 0, reason="podman image mount and unshare -m need root")
def test_mount_path_image_is_hit_read_only_and_a_miss_falls_back(tmp_path):
    a, home, mnt, writable = (tmp_path / n for n in ("A", "home", "mnt", "W"))
    first = _compile(a, home)
    assert first["cache_hit"] is False
    (entry,) = scan_cache(a).entries

    image = f"localhost/tcv-it/ro-mount:{uuid.uuid4().hex[:8]}"
    made = run_tcv(
        "-c", "-i", image, "-d", str(a), "--mount-path", str(mnt), staging=tmp_path / "st"
    )
    assert made.returncode == 0, made.stderr
    shutil.rmtree(a)
    mnt.mkdir()
    try:
        label = subprocess.run(
            ["skopeo", "inspect", f"containers-storage:{image}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(label.stdout)["Labels"]["cache.triton.image/mount-path"] == str(mnt)
        root = subprocess.run(
            ["podman", "image", "mount", image], capture_output=True, text=True, check=True
        ).stdout.strip()
        tree = Path(root) / "io.triton.cache"
        before = snapshot(tree)

        hit = _result(_in_readonly_mount(tree, mnt, home, {"TRITON_CACHE_DIR": str(mnt)}))
        assert hit["cache_hit"] is True
        assert hit["hash"] == first["hash"]
        assert all(Path(p).parent == mnt / entry.key for p in hit["paths"].values())

        fallback = {
            "TRITON_CACHE_MANAGER": MANAGER,
            "TCV_TRITON_READONLY_DIRS": str(mnt),
            "TRITON_CACHE_DIR": str(writable),
        }
        again = _result(_in_readonly_mount(tree, mnt, home, fallback))
        assert again["cache_hit"] is True
        assert not writable.exists()  # a hit writes nothing, not even a directory

        new = _result(_in_readonly_mount(tree, mnt, home, {**fallback, "TCV_PROBE_BLOCK": "512"}))
        assert new["cache_hit"] is False
        assert new["hash"] != first["hash"]
        assert all(Path(p).parent.parent == writable for p in new["paths"].values())
        assert [e.hash for e in scan_cache(writable).entries] == [new["hash"]]

        crash = _in_readonly_mount(
            tree, mnt, home, {"TRITON_CACHE_DIR": str(mnt), "TCV_PROBE_BLOCK": "1024"}
        )
        assert crash.returncode != 0
        assert "Read-only file system" in crash.stderr
        assert snapshot(tree) == before  # the image's tree was never written
    finally:
        subprocess.run(["podman", "image", "unmount", image], capture_output=True)
        subprocess.run(["buildah", "rmi", "-f", image], capture_output=True)
    assert list(mnt.iterdir()) == []  # nothing leaked out of the namespace
