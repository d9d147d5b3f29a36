"""Where root naturally clones it: a fresh clone in a new directory under /root
(mode 0700, so no other user can reach the clone or its venv) runs the README's
test command — set-up included — and its subset that runs tcv as other users (rootless podman and
buildah, ``nobody``) passes from there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_rootless_subset_passes_from_a_clone_under_root(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test clones under /root and needs root (as CI runs)")
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    installs_before = set(Path("/var/tmp").glob("tcv-user-install-*"))
    base = Path(tempfile.mkdtemp(prefix="tcv-clone-", dir="/root"))
    try:
        clone = base / "tcv"
        subprocess.run(
            ["git", "clone", "--quiet", str(REPO), str(clone)], check=True, capture_output=True
        )
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)
        assert not os.stat("/root").st_mode & 0o005  # out of other users' reach
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TCV_", "VIRTUAL_ENV"))}
        # The clone's commands are linked here, not over this checkout's in /usr/local/bin.
        env["TCV_BIN_DIR"] = str(tmp_path / "bin")
        proc = subprocess.run(
            ["bash", "scripts/bootstrap.sh", "test", "-m", "otheruser", "-q", "-p",
             "no:cacheprovider", "-o", "addopts=--strict-markers -ra"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )  # fmt: skip
        tail = (proc.stdout + proc.stderr)[-4000:]
        assert proc.returncode == 0, tail
        summary = re.search(r"(\d+) passed", proc.stdout)
        assert summary and int(summary.group(1)) >= 7, tail
        assert not re.search(r"\d+ (failed|error|skipped)", proc.stdout), tail
        assert (clone / ".venv" / "bin" / "tcv").exists()
        assert (tmp_path / "bin" / "tcv").resolve() == (clone / ".venv" / "bin" / "tcv").resolve()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    # Nothing of the clone's session remains for other users to trip over.
    assert set(Path("/var/tmp").glob("tcv-user-install-*")) == installs_before
