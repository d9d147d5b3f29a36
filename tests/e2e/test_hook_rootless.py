"""The runtime hook under rootless podman: an unprivileged user (``tcvtest``, made
here when missing) builds the images, installs the hook into its own hooks
directory and runs a container; podman runs the hook as root of the user's
user namespace, with only the JSON's environment."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sh

from tests.harness.podman import CONTAINERS_CONF, hook_pids, tree_digest
from tests.harness.userinstall import UserInstall

pytestmark = [pytest.mark.e2e, pytest.mark.rootless, pytest.mark.otheruser]

USER = "tcvtest"


class User:
    def __init__(self, work: Path, install: UserInstall) -> None:
        self.install = install
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
        ]

    def __call__(self, *argv: str, **kw: object) -> str:
        """Run ``argv`` as the user, in its home, with a clean environment."""
        cmd = ["-u", USER, "--", "env", "-i", *self.env(), *argv]
        return str(sh.runuser(*cmd, _cwd=self.pw.pw_dir, **kw))

    def tcv(self, *args: str) -> str:
        return self(str(self.install.tcv), *args)


@pytest.fixture(scope="module")
def user(user_install) -> Iterator[User]:
    work = Path(tempfile.mkdtemp(prefix="tcv-rootless-"))
    os.chmod(work, 0o755)
    u = User(work, user_install)
    probe = subprocess.run(
        ["runuser", "-u", USER, "--", str(user_install.tcv), "--version"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, (
        f"{USER} cannot run {user_install.tcv}, so the rootless tests cannot run: "
        f"{probe.stderr.strip()}"
    )
    try:
        yield u
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_rootless_container_gets_its_kernels(user, caches_dir):
    """Rootless podman runs the hook as root of the user's user namespace: it mounts
    an overlay there too (kernel >= 5.11), on a volume and in the rootfs."""
    tag = uuid.uuid4().hex[:8]
    busybox = f"localhost/tcv-test-rootless-busybox:{tag}"
    cache_image = f"localhost/tcv-test-rootless-cache:{tag}"
    vol = f"tcv-test-rootless-{tag}"
    hooks = user.work / "hooks.d"
    store = user.work / "store"
    script = (
        "c=$(buildah from scratch) && m=$(buildah mount $c) && mkdir -p $m/bin && "
        "cp /bin/busybox $m/bin/ && buildah umount $c && "
        "buildah run --network none $c /bin/busybox --install -s /bin && "
        f"buildah commit -q $c {busybox} && buildah rm $c"
    )
    run = ["podman", "--hooks-dir", str(hooks), "run", "--rm", "--network", "none",
           "--annotation", f"cache.triton.image/inject={cache_image}"]  # fmt: skip
    try:
        user("buildah", "unshare", "sh", "-c", script)
        # A copy the user can read, wherever this checkout is (e.g. under /root).
        cache = user.work / "cache"
        shutil.copytree(caches_dir / "triton-3.9", cache)
        for p in [cache, *cache.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        user.tcv("-c", "-i", cache_image, "-d", str(cache))
        user.tcv("hook", "install", "--hooks-dir", str(hooks), "--gpu", "cuda:90",
                 "--store", str(store), "--pull", "never")  # fmt: skip
        cfg = json.loads((hooks / "tcv.json").read_text())
        assert "_CONTAINERS_ROOTLESS_UID=" + str(user.pw.pw_uid) in cfg["hook"]["env"]
        assert cfg["stages"] == ["prestart", "poststop"]
        user("podman", "volume", "create", vol)
        out = user(
            *run, "-v", f"{vol}:/cache", "-e", "TRITON_CACHE_DIR=/cache", busybox, "sh", "-c",
            "ls /cache; for f in /cache/*/__grp__*; do cat $f; echo; done; "
            "stat -c 'O %u:%g' /cache/*/*; mkdir /cache/NEWKERNEL",
        )  # fmt: skip
        index = json.loads((caches_dir / "index.json").read_text())["entries"]
        expected = sorted(
            e["key"]
            for e in index
            if e["fixture"] == "triton-3.9" and (e["backend"], e["arch"]) == ("cuda", "90")
        )
        lines = out.splitlines()
        listed = [ln for ln in lines if ln and not ln.startswith(("{", "O "))]
        assert sorted(listed) == expected
        assert {ln for ln in lines if ln.startswith("O ")} == {"O 0:0"}
        for ln in lines:
            if ln.startswith("{"):
                assert all(p.startswith("/cache/") for p in json.loads(ln)["child_paths"].values())
        log = (store / "hook.log").read_text()
        assert "delivery mounted" in log.splitlines()[-1]
        # What the container wrote is in the volume, owned by the user on the host.
        mount = user("podman", "volume", "inspect", "--format", "{{.Mountpoint}}", vol).strip()
        assert os.listdir(mount) == ["NEWKERNEL"]
        assert os.stat(Path(mount) / "NEWKERNEL").st_uid == user.pw.pw_uid

        # The rootfs case, as another container user: the files are that user's.
        listing = "stat -c '%u:%g' /home/u/.triton/cache/*/*; touch /home/u/.triton/cache/x"
        out = user(*run, "--user", "1234:2345", "-e", "HOME=/home/u", busybox, "sh", "-c", listing)
        assert set(out.split()) == {"1234:2345"}
        views = sorted((store / "views").iterdir())
        assert len(views) == 2
        before = {v.name: tree_digest(v / "tree") for v in views}
        user(*run, "--user", "1234:2345", "-e", "HOME=/home/u", busybox, "true")
        assert {v.name: tree_digest(v / "tree") for v in views} == before
        assert os.listdir(store / "containers") == []
        assert hook_pids(store) == []
    finally:
        user("podman", "volume", "rm", "-f", vol, _ok_code=[0, 1, 2])
        user("podman", "rmi", "-f", busybox, cache_image, _ok_code=[0, 1, 2])
