"""Rootless create (docs/spec.md §6): an unprivileged user with subuid/subgid ranges
runs both `buildah unshare tcv -c ...` and plain `tcv -c ...`.

The test (run as root, as CI does) makes the user ``tcvtest`` with ``useradd
-m`` when it is missing (which assigns the subordinate ranges), and runs the
commands as that user with ``runuser``. The venv must be traversable by that
user; the test checks that first, with a message saying what to do.
"""

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

from tcv import staging
from tests.harness import buildah_state

pytestmark = [pytest.mark.integration, pytest.mark.rootless, pytest.mark.otheruser]

USER = "tcvtest"
CLEAN = {"containers": [], "mounts": [], "staging": []}


def _ensure_user() -> pwd.struct_passwd:
    assert os.geteuid() == 0, "the rootless test creates its user and needs root (as in CI)"
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", USER], check=True, capture_output=True)
        return pwd.getpwnam(USER)


def _has_subids(name: str) -> bool:
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as fh:
            if not any(line.split(":", 1)[0] == name for line in fh):
                return False
    return True


@pytest.fixture(scope="module")
def tcv_path(user_install) -> Path:
    return user_install.tcv


@pytest.fixture(scope="module")
def user(tcv_path: Path) -> pwd.struct_passwd:
    pw = _ensure_user()
    assert _has_subids(USER), f"{USER} has no /etc/subuid and /etc/subgid ranges"
    probe = subprocess.run(
        ["runuser", "-u", USER, "--", str(tcv_path), "--version"], capture_output=True, text=True
    )
    assert probe.returncode == 0, (
        f"{USER} cannot run {tcv_path}, so the rootless tests cannot run: {probe.stderr.strip()}"
    )
    return pw


@pytest.fixture
def workdir(user: pwd.struct_passwd, caches_dir: Path) -> Iterator[Path]:
    """A directory the user can read (the cache) and write (staging)."""
    base = Path(tempfile.mkdtemp(prefix="tcv-rootless-", dir="/var/tmp"))
    try:
        os.chmod(base, 0o755)
        shutil.copytree(caches_dir / "triton-3.9", base / "cache")
        for p in [base / "cache", *(base / "cache").rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        (base / "staging").mkdir()
        os.chown(base / "staging", user.pw_uid, user.pw_gid)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_user(user: pwd.struct_passwd, *argv: str, env: dict[str, str]):
    return subprocess.run(
        [
            "runuser",
            "-u",
            USER,
            "--",
            "env",
            f"HOME={user.pw_dir}",
            *(f"{k}={v}" for k, v in env.items()),
            *argv,
        ],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=300,
    )


@pytest.mark.parametrize(
    "wrap",
    [pytest.param(["buildah", "unshare"], id="buildah-unshare"), pytest.param([], id="plain")],
)
def test_rootless_create(user, workdir, wrap, tcv_path):
    ref = f"localhost/tcv-rootless/{'unshare' if wrap else 'plain'}:{uuid.uuid4().hex[:8]}"
    env = {"TCV_STAGING_ROOT": str(workdir / "staging")}
    ident = {"HOME": user.pw_dir}
    before = buildah_state.snapshot(workdir / "staging", env=ident, user=USER)
    try:
        proc = as_user(
            user,
            *wrap,
            str(tcv_path),
            "-c",
            "-i",
            ref,
            "-d",
            str(workdir / "cache"),
            "--json",
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["image"] == ref and out["entries"] == 7
        listed = as_user(user, "buildah", "images", "--format", "{{.Name}}:{{.Tag}}", env={})
        assert ref in listed.stdout.split()
        inspected = as_user(user, "buildah", "inspect", "--type=image", ref, env={})
        assert inspected.returncode == 0, inspected.stderr
        labels = json.loads(inspected.stdout)["OCIv1"]["config"]["Labels"]
        assert labels["cache.triton.image/entry-count"] == "7"
        assert labels["org.opencontainers.image.title"] == ref.rsplit("/", 1)[1].split(":")[0]
        assert "cache.triton.image/summary" in labels
        after = buildah_state.snapshot(workdir / "staging", env=ident, user=USER)
        assert after.leftovers(before) == CLEAN
    finally:
        as_user(user, "buildah", "rmi", "-f", ref, env={})


def test_rootless_unreadable_file_is_one_line(user, workdir, tcv_path):
    """A kernel file the user cannot read: exit 2, one line, nothing left."""
    entry = next(p for p in sorted((workdir / "cache").iterdir()) if p.is_dir())
    secret = next(p for p in sorted(entry.iterdir()) if p.suffix == ".ptx" or p.suffix == ".hsaco")
    os.chmod(secret, 0o600)  # owned by root: unreadable for the user
    ref = f"localhost/tcv-rootless/unreadable:{uuid.uuid4().hex[:8]}"
    ident = {"HOME": user.pw_dir}
    before = buildah_state.snapshot(workdir / "staging", env=ident, user=USER)
    try:
        proc = as_user(
            user,
            str(tcv_path),
            "-c",
            "-i",
            ref,
            "-d",
            str(workdir / "cache"),
            env={"TCV_STAGING_ROOT": str(workdir / "staging")},
        )
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and "Permission denied" in lines[0] and entry.name in lines[0]
        assert "Traceback" not in proc.stderr
        after = buildah_state.snapshot(workdir / "staging", env=ident, user=USER)
        assert after.leftovers(before) == CLEAN
    finally:
        as_user(user, "buildah", "rmi", "-f", ref, env={})


def test_rootless_create_after_root_used_the_shared_staging_root(user, workdir, tcv_path):
    """The default /tmp/.tcv, made by root first, serves an unprivileged user too."""
    with staging.staging_dir():  # root makes (or repairs) the shared root
        pass
    shared = Path(staging.DEFAULT_STAGING_ROOT)
    mine = {p.name for p in shared.iterdir() if p.stat().st_uid == user.pw_uid}
    ref = f"localhost/tcv-rootless/shared-staging:{uuid.uuid4().hex[:8]}"
    try:
        proc = as_user(user, str(tcv_path), "-c", "-i", ref, "-d", str(workdir / "cache"), env={})
        assert proc.returncode == 0, proc.stderr
        # Its private run directory was made there and removed again.
        assert {p.name for p in shared.iterdir() if p.stat().st_uid == user.pw_uid} == mine
    finally:
        as_user(user, "buildah", "rmi", "-f", ref, env={})
