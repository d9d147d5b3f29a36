"""The Kubernetes recipes in deploy/kubernetes/, played with ``podman kube play``.

podman 4.3 plays init containers and emptyDir volumes, so the init-container
recipe runs as written, with only its placeholders filled in: the TCV tool
image built from the top-level Containerfile, a cache image made by ``tcv -c``
(handed to the init container as an ``oci-archive`` on a hostPath, since the
pod cannot reach the test registry over TLS), a busybox standing in for the
workload (it lists the cache and checks every group path exists), and the
CUDA version the 3.9 fixture's PTX needs. The ImageVolume recipe needs
Kubernetes ≥ 1.31 (subPath: 1.33) or podman ≥ 5 (``image`` volumes); this
podman does not support them, so that recipe is proved by
tests/integration/test_readonly_mount.py (the same read-only mount, built by
hand) and only checked here for what it must say.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.harness.podman import REPO, Podman, podman_session
from tests.integration.test_tool_image import tool_image  # noqa: F401 - a fixture

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPES = REPO / "deploy" / "kubernetes"
FIXTURE = "triton-3.9"
# Group paths that do not exist: printed "M <path>"; keys "K <key>".
CHECK = (
    'cd /triton-cache && for k in *; do echo "K $k"; done; '
    "for p in $(cat */__grp__*.json | tr ',{}' '\\n\\n\\n' | sed -n 's/.*: *\"\\(.*\\)\"/\\1/p'); "
    'do [ -e "$p" ] || echo "M $p"; done'
)


def _played(text: str, *, tool: str, archive_dir: Path, busybox: str) -> str:
    """The recipe with its placeholders filled in for this machine."""
    text = text.replace("registry.example.com/tools/tcv:latest", tool)
    text = text.replace(
        "registry.example.com/kernels/llama-h100:1", "oci-archive:/images/kernels.tar"
    )
    text = text.replace('value: "12.4"', 'value: "13.4"')
    text = text.replace(
        "      image: registry.example.com/inference/server:latest\n",
        f"      image: {busybox}\n      command: {json.dumps(['/bin/sh', '-c', CHECK])}\n",
    )
    init_mount = "          mountPath: /triton-cache\n  containers:"
    assert init_mount in text
    text = text.replace(
        init_mount,
        "          mountPath: /triton-cache\n"
        "        - name: images\n          mountPath: /images\n          readOnly: true\n"
        "  containers:",
    )
    text = text.replace(
        "      emptyDir: {}\n",
        f"      emptyDir: {{}}\n    - name: images\n      hostPath:\n"
        f"        path: {archive_dir}\n        type: Directory\n",
    )
    return text


def _use_pause_image(pod: Podman, busybox: str, name: str, tmp: Path) -> None:
    """Pods need an infra container; podman builds its default one from
    catatonit, which these machines lack, so the pod's infra is a busybox
    loop (containers.conf ``infra_image``) that exits on SIGTERM."""
    script = tmp / "pause"
    script.write_text(
        '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do /bin/sleep 1 & wait $!; done\n'
    )
    script.chmod(0o755)
    ctr = pod.buildah("from", busybox).strip()
    try:
        pod.buildah("copy", ctr, str(script), "/pause")
        pod.buildah("config", "--entrypoint", '["/pause"]', ctr)
        pod.buildah("commit", "-q", ctr, name)
    finally:
        pod.buildah("rm", ctr)
    pod.images.append(name)
    pod.conf.write_text(pod.conf.read_text() + f'infra_image = "{name}"\n')


def test_init_container_recipe_fills_the_emptydir_for_the_workload(
    tool_image,  # noqa: F811 - the fixture
    tmp_path,
    caches_dir,
):
    index = json.loads((caches_dir / "index.json").read_text())
    want = sorted(
        e["key"]
        for e in index["entries"]
        if e["fixture"] == FIXTURE and (e["backend"], e["arch"]) == ("cuda", "90")
    )
    tag = uuid.uuid4().hex[:8]
    (tmp_path / "podman").mkdir()
    with podman_session(tmp_path / "podman") as pod:
        busybox = pod.make_busybox(f"localhost/tcv-test-busybox:{tag}")
        _use_pause_image(pod, busybox, f"localhost/tcv-test-pause:{tag}", tmp_path)
        cache = pod.make_cache_image(caches_dir / FIXTURE, f"localhost/tcv-test-k8s:{tag}")
        archive = tmp_path / "images"
        archive.mkdir()
        subprocess.run(
            ["skopeo", "copy", f"containers-storage:{cache}", f"oci-archive:{archive}/kernels.tar"],
            check=True,
            capture_output=True,
        )
        recipe = (RECIPES / "init-container.yaml").read_text()
        played = tmp_path / "pod.yaml"
        played.write_text(_played(recipe, tool=tool_image, archive_dir=archive, busybox=busybox))
        name = "triton-kernels-init"
        try:
            pod.podman("kube", "play", str(played))
            code = pod.podman("wait", f"{name}-server").strip()
            logs = pod.podman("logs", f"{name}-server")
            init_logs = pod.podman("logs", f"{name}-tcv-extract", _ok_code=[0, 125])
        finally:
            pod.podman("kube", "down", str(played), _ok_code=[0, 125])
        assert code == "0", logs
        keys = sorted(ln[2:] for ln in logs.splitlines() if ln.startswith("K "))
        assert keys == want, init_logs
        assert [ln for ln in logs.splitlines() if ln.startswith("M ")] == []


def test_image_volume_recipe_says_what_the_read_only_mount_needs():
    text = (RECIPES / "image-volume.yaml").read_text()
    assert "--mount-path /triton-cache" in text
    assert "subPath: io.triton.cache" in text and "readOnly: true" in text
    assert "tcv.triton_cache:ReadOnlyFallbackCacheManager" in text
    assert "TCV_TRITON_READONLY_DIRS" in text and "value: /triton-cache" in text
