"""A full disk under DEST or under staging, during ``tcv -e`` of 500 kernels:
one line and exit 1, every kernel directory in DEST complete, no temporary in
DEST, no staging left. Each filesystem is a small tmpfs mounted for the test
(root only)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.image import KERNELS, complete, key
from tests.hostile.child import run_bounded
from tests.hostile.test_hostile import H100, tree_digest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]


@contextlib.contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_dest_fills_up(big_image, tmp_path):
    ref, files = big_image
    staging = tmp_path / "staging"
    with small_fs(tmp_path / "small", "4m") as fs:
        dest = fs / "cache"
        got = run_bounded(
            ["-e", "-i", ref, "-d", str(dest), *H100], {"TCV_STAGING_ROOT": str(staging)}
        )
        assert got.returncode == 1, got.err
        lines = got.err.strip().splitlines()
        assert len(lines) == 1 and "No space left" in lines[0], got.err
        names = os.listdir(dest)
        kernels = [n for n in names if n in {key(i) for i in range(KERNELS)}]
        assert 0 < len(kernels) < KERNELS  # the disk filled midway
        assert all(complete(dest, k, files) for k in kernels)
        assert not [n for n in names if n.startswith("tmp.")]
    assert os.listdir(staging) == []


def test_staging_fills_up(big_image, tmp_path):
    ref, _ = big_image
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    before = tree_digest(dest)
    with small_fs(tmp_path / "small", "1m") as staging:
        got = run_bounded(
            ["-e", "-i", ref, "-d", str(dest), *H100], {"TCV_STAGING_ROOT": str(staging)}
        )
        assert got.returncode == 1, got.err
        lines = got.err.strip().splitlines()
        assert len(lines) == 1, got.err
        assert "space" in lines[0].lower(), got.err
        assert os.listdir(staging) == []
    assert tree_digest(dest) == before
