"""Ctrl-C and SIGTERM while ``tcv -e`` unpacks a large layer: it ends
promptly with exit 130 and one line, leaves no staging, and DEST unchanged."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.hostile import craft as c
from tests.hostile.child import run_bounded
from tests.hostile.test_hostile import H100, tree_digest

pytestmark = pytest.mark.integration

PROMPT = 5.0  # seconds from the signal to the exit


@pytest.fixture(scope="module")
def slow_image(tmp_path_factory) -> str:
    """Honest kernels after 2,000 files of a junk kernel and 200,000 entries
    outside the trees: several seconds of unpacking."""
    k = c.Kernels.honest(bad_from=None)
    junk = c.many_headers(f"{c.C}/JUNK/f", 2_000) + c.many_headers("junk/f", 200_000)
    body = c.tar_of([*k.members(), *k.manifest_members()])
    blob = c.gzip_stream([junk, body, c.end()])
    labels = {**k.labels()}
    return c.oci_image(tmp_path_factory.mktemp("slow") / "oci", [c.Blob(blob)], labels)


def _unpacking(staging: Path) -> bool:
    return any((d / "root").is_dir() for d in staging.glob("extract-*"))


@pytest.mark.parametrize(
    "how",
    [pytest.param("ctrl-c", id="ctrl-c-to-the-group"), pytest.param("sigterm", id="sigterm")],
)
def test_a_signal_during_unpack_ends_promptly(slow_image, tmp_path, how):
    dest = tmp_path / "dest"
    shutil.copytree(c.FIXTURE / c.ALREADY, dest / c.ALREADY)
    before = tree_digest(dest)
    staging = tmp_path / "staging"
    sent: list[float] = []
    pacing = threading.Event()

    def interrupt(proc) -> None:
        deadline = time.monotonic() + 60
        while not _unpacking(staging):  # wait for the unpack phase (a condition, paced)
            assert time.monotonic() < deadline, "tcv never started unpacking"
            pacing.wait(0.005)
        sent.append(time.monotonic())
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)

    got = run_bounded(
        ["-e", "-i", slow_image, "-d", str(dest), *H100],
        {"TCV_STAGING_ROOT": str(staging)},
        on_start=interrupt,
    )
    ended = time.monotonic()
    assert got.returncode == 130, got.err
    lines = got.err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], got.err
    assert ended - sent[0] < PROMPT
    assert os.listdir(staging) == []
    assert tree_digest(dest) == before


def test_the_slow_image_installs_when_left_alone(slow_image, tmp_path):
    """The same image, uninterrupted: the junk kernel is skipped, the rest installs."""
    dest = tmp_path / "dest"
    got = run_bounded(
        ["-e", "-i", slow_image, "-d", str(dest), *H100],
        {"TCV_STAGING_ROOT": str(tmp_path / "staging")},
    )
    assert got.returncode == 0, got.err
    assert set(c.GOOD) <= set(os.listdir(dest))
