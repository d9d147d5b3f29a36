"""The runtime hook under rootless podman: an unprivileged user (``tcvtest``, made
here when missing) builds the images, installs the hook into its own hooks
directory and runs a container; podman runs the hook as root of the user's
user namespace, with only the JSON's environment."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sh

from tests.harness.podman import CONTAINERS_CONF, REPO, wait_for_refills

pytestmark = [pytest.mark.e2e, pytest.mark.rootless]

USER = "tcvtest"


class User:
    def __init__(self, work: Path) -> None:
        if os.geteuid() != 0:
            pytest.fail("the rootless tests are driven by root (CI runs as root)")
        try:
            pwd.getpwnam(USER)
        except KeyError:
            sh.useradd("-m", USER)
        self.pw = pwd.getpwnam(USER)
        self.work = work
        self.conf = work / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        (work / "staging").mkdir()
        os.chown(work, self.pw.pw_uid, self.pw.pw_gid)
        os.chown(work / "staging", self.pw.pw_uid, self.pw.pw_gid)

    def env(self) -> list[str]:
        return [
            f"HOME={self.pw.pw_dir}",
            f"USER={USER}",
            f"PATH={os.environ['PATH']}",
            f"CONTAINERS_CONF={self.conf}",
            f"TCV_STAGING_ROOT={self.work / 'staging'}",
            f"PYTHONPATH={REPO}",
        ]

    def __call__(self, *argv: str, **kw: object) -> str:
        """Run ``argv`` as the user, in its home, with a clean environment."""
        cmd = ["-u", USER, "--", "env", "-i", *self.env(), *argv]
        return str(sh.runuser(*cmd, _cwd=self.pw.pw_dir, **kw))

    def tcv(self, *args: str) -> str:
        return self(sys.executable, "-c", "from tcv.cli.app import main; main()", *args)


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    work = Path(tempfile.mkdtemp(prefix="tcv-rootless-"))
    os.chmod(work, 0o755)
    u = User(work)
    try:
        yield u
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_rootless_container_gets_its_kernels(user, caches_dir):
    tag = uuid.uuid4().hex[:8]
    busybox = f"localhost/tcv-test-rootless-busybox:{tag}"
    cache_image = f"localhost/tcv-test-rootless-cache:{tag}"
    vol = f"tcv-test-rootless-{tag}"
    vol2 = f"tcv-test-rootless-2-{tag}"
    hooks = user.work / "hooks.d"
    store = user.work / "store"
    script = (
        "c=$(buildah from scratch) && m=$(buildah mount $c) && mkdir -p $m/bin && "
        "cp /bin/busybox $m/bin/ && buildah umount $c && "
        "buildah run --network none $c /bin/busybox --install -s /bin && "
        f"buildah commit -q $c {busybox} && buildah rm $c"
    )
    try:
        user("buildah", "unshare", "sh", "-c", script)
        user.tcv("-c", "-i", cache_image, "-d", str(caches_dir / "triton-3.9"))
        user.tcv("hook", "install", "--hooks-dir", str(hooks), "--gpu", "cuda:90",
                 "--store", str(store), "--pull", "never")  # fmt: skip
        cfg = json.loads((hooks / "tcv.json").read_text())
        assert "_CONTAINERS_ROOTLESS_UID=" + str(user.pw.pw_uid) in cfg["hook"]["env"]
        # The spare keeper leaves when done, so that the test can wait for it.
        cfg["hook"]["env"] += ["TCV_HOOK_KEEPER_IDLE=0", "TCV_HOOK_KEEPER_DELAY=0"]
        (hooks / "tcv.json").write_text(json.dumps(cfg))
        user("podman", "volume", "create", vol)
        out = user(
            "podman", "--hooks-dir", str(hooks), "run", "--rm", "--network", "none",
            "--annotation", f"cache.triton.image/inject={cache_image}",
            "-v", f"{vol}:/cache", "-e", "TRITON_CACHE_DIR=/cache",
            busybox, "sh", "-c", "ls /cache; for f in /cache/*/__grp__*; do cat $f; echo; done",
        )  # fmt: skip
        index = json.loads((caches_dir / "index.json").read_text())["entries"]
        expected = sorted(
            e["key"]
            for e in index
            if e["fixture"] == "triton-3.9" and (e["backend"], e["arch"]) == ("cuda", "90")
        )
        lines = out.splitlines()
        assert sorted(ln for ln in lines if ln and not ln.startswith("{")) == expected
        for ln in lines:
            if ln.startswith("{"):
                assert all(p.startswith("/cache/") for p in json.loads(ln)["child_paths"].values())
        # The container's root is the user on the host: the kernels belong to the user.
        mount = user("podman", "volume", "inspect", "--format", "{{.Mountpoint}}", vol).strip()
        for key in expected:
            st = (Path(mount) / key).stat()
            assert (st.st_uid, st.st_gid) == (user.pw.pw_uid, user.pw.pw_gid)
        log = (store / "hook.log").read_text()
        assert f"injected {len(expected)} kernel(s) from {cache_image}" in log

        # The refill ran in the user's namespace too: the next start on another
        # volume moves the user's spare in.
        wait_for_refills(store)
        user("podman", "volume", "create", vol2)
        user(
            "podman", "--hooks-dir", str(hooks), "run", "--rm", "--network", "none",
            "--annotation", f"cache.triton.image/inject={cache_image}",
            "-v", f"{vol2}:/cache", "-e", "TRITON_CACHE_DIR=/cache", busybox, "true",
        )  # fmt: skip
        line = (store / "hook.log").read_text().splitlines()[-1]
        assert f"injected {len(expected)} kernel(s)" in line and "from a spare" in line
        mount = user("podman", "volume", "inspect", "--format", "{{.Mountpoint}}", vol2).strip()
        for key in expected:
            for p in [Path(mount) / key, *(Path(mount) / key).iterdir()]:
                st = p.stat()
                assert (st.st_uid, st.st_gid) == (user.pw.pw_uid, user.pw.pw_gid)
        wait_for_refills(store)
    finally:
        wait_for_refills(store)
        user("podman", "volume", "rm", "-f", vol, vol2, _ok_code=[0, 1, 2])
        user("podman", "rmi", "-f", busybox, cache_image, _ok_code=[0, 1, 2])
