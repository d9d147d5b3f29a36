"""``tcv scan`` as a real process of the installed console script, including
unreadable files: the tests run as root, so the scan is run as ``nobody``
(``setpriv`` drops the privileges in the child) for permissions to bite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TCV = Path(sys.executable).parent / "tcv"
CACHES = Path(__file__).resolve().parent.parent / "data" / "caches"
FIXTURE = CACHES / "triton-3.9"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TCV), *argv], capture_output=True, text=True, timeout=120)


@pytest.fixture
def as_nobody(user_install):
    """Run the checkout's tcv as ``nobody`` (an install it can reach, wherever the
    checkout is); say why when even that cannot run."""
    probe = subprocess.run([*NOBODY, str(user_install.tcv), "--version"], capture_output=True,
                           text=True)  # fmt: skip
    assert probe.returncode == 0, (
        f"nobody cannot run {user_install.tcv}, so the permission tests cannot run: "
        f"{probe.stderr.strip()}"
    )

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [*NOBODY, str(user_install.tcv), *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture
def shared_cache() -> Iterator[Path]:
    """A copy of the fixture that an unprivileged user can reach (pytest's
    tmp_path lives under a 0700 directory)."""
    top = Path(tempfile.mkdtemp(prefix="tcv-scan-"))
    try:
        os.chmod(top, 0o755)
        root = Path(shutil.copytree(FIXTURE, top / "cache"))
        yield root
    finally:
        shutil.rmtree(top)


def test_json_from_the_console_script():
    proc = _run("scan", "--json", str(FIXTURE))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    index = json.loads((CACHES / "index.json").read_text())
    assert sorted(e["key"] for e in doc["entries"]) == sorted(
        e["key"] for e in index["entries"] if e["fixture"] == "triton-3.9"
    )
    assert doc["skipped"] == []


def test_missing_dir_exits_3_with_one_line(tmp_path):
    proc = _run("scan", str(tmp_path / "nope"))
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "does not exist" in proc.stderr


@pytest.mark.otheruser
def test_unreadable_file_is_skipped_with_the_reason(shared_cache, as_nobody):
    victim = next(shared_cache.iterdir())
    os.chmod(victim / next(p.name for p in victim.iterdir() if p.suffix == ".json"), 0)
    proc = as_nobody("scan", "--json", str(shared_cache))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert victim.name not in [e["key"] for e in doc["entries"]]
    (skip,) = doc["skipped"]
    assert skip["path"] == victim.name
    assert "Permission denied" in skip["reason"]
    assert len(doc["entries"]) == len(list(FIXTURE.iterdir())) - 1


@pytest.mark.otheruser
def test_unreadable_root_exits_3_with_one_line(shared_cache, as_nobody):
    os.chmod(shared_cache, 0o311)  # enterable, not listable
    proc = as_nobody("scan", str(shared_cache))
    assert proc.returncode == 3, proc.stdout
    assert proc.stderr.count("\n") == 1
    assert "cannot list cache directory" in proc.stderr
    assert "Traceback" not in proc.stderr
