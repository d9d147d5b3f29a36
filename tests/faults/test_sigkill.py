"""SIGKILL at random points of ``tcv -e`` (tcv and skopeo together, as an OOM
kill of the cgroup or a lost machine would): DEST only ever holds complete
kernel directories, the next run finishes, and after it nothing is left — no
staging directory, no ``tmp.pid_*`` in DEST — though the killed run could not
clean up. Half the runs put DEST on another filesystem (/dev/shm), where
kernels are copied through temporaries instead of renamed. The first half of
the kills fall anywhere in a run, the second half once the install began.

``TCV_FAULTS_RESULTS=FILE`` writes the counts (docs/security.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.faults.image import KERNELS, complete, key
from tests.hostile.child import run_bounded
from tests.hostile.test_hostile import H100

pytestmark = pytest.mark.integration

RUNS = 20
OTHER_FS = Path("/dev/shm")


def _group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that have not finished exiting (zombies aside)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            out.append(int(entry))
    return out


def _wait_gone(pgid: int) -> None:
    """Until every process of the killed group has died: SIGKILL is sent at
    once, but a large process takes a moment to finish exiting, and until then
    it still holds its staging lock, rightly."""
    pacing = threading.Event()
    deadline = time.monotonic() + 30
    while _group_members(pgid):
        assert time.monotonic() < deadline, f"group {pgid} still alive"
        pacing.wait(0.005)


def _leftovers(dest: Path, staging: Path) -> tuple[int, int]:
    stage = len(os.listdir(staging)) if staging.exists() else 0
    temps = len([n for n in os.listdir(dest) if n.startswith("tmp.")]) if dest.exists() else 0
    return stage, temps


def test_sigkill_at_random_points_loses_nothing_and_leaves_nothing(big_image, tmp_path):
    ref, files = big_image
    keys = {key(i) for i in range(KERNELS)}
    staging = tmp_path / "staging"
    env = {"TCV_STAGING_ROOT": str(staging)}

    # How long a whole run takes here: the kills fall inside it.
    probe = tmp_path / "probe"
    full = run_bounded(["-e", "-i", ref, "-d", str(probe), *H100], env, timeout=120)
    assert full.returncode == 0, full.err
    span = full.seconds

    rng = random.Random(11)
    counts = {"runs": RUNS, "kernels": KERNELS, "full_run_seconds": round(span, 2)}
    counts.update(killed=0, killed_in_install=0, finished_anyway=0)
    counts.update(left_staging=0, left_temporaries=0)
    counts.update(partial_kernels_seen=0, incomplete_kernels=0, reruns_ok=0, left_after_rerun=0)
    shm = tempfile.mkdtemp(prefix="tcv-faults-", dir=OTHER_FS) if OTHER_FS.is_dir() else None
    try:
        for run in range(RUNS):
            base = Path(shm) if shm and run % 2 else tmp_path
            dest = base / f"dest-{run}"
            delay = rng.uniform(0.05, span)
            pacing = threading.Event()

            in_install = run >= RUNS // 2
            if in_install:
                delay = rng.uniform(0.0, 0.4)

            got_pgid: list[int] = []

            def kill_later(
                proc, delay=delay, pacing=pacing, dest=dest, wait=in_install, pgid=got_pgid
            ) -> None:
                pgid.append(proc.pid)

                def fire() -> None:
                    # The second half aims at the install: DEST appears when it starts.
                    while wait and not dest.exists():
                        if pacing.wait(0.002):
                            return
                    if not pacing.wait(delay):  # the fault's random moment, not a sync
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)

                threading.Thread(target=fire, daemon=True).start()

            got = run_bounded(["-e", "-i", ref, "-d", str(dest), *H100], env, on_start=kill_later)
            pacing.set()
            if got.returncode == -signal.SIGKILL:
                _wait_gone(got_pgid[0])
                counts["killed"] += 1
                counts["killed_in_install"] += in_install
            else:
                assert got.returncode == 0, got.err
                counts["finished_anyway"] += 1
            stage, temps = _leftovers(dest, staging)
            counts["left_staging"] += bool(stage)
            counts["left_temporaries"] += bool(temps)
            present = [n for n in os.listdir(dest) if n in keys] if dest.exists() else []
            counts["partial_kernels_seen"] += 0 < len(present) < KERNELS
            bad = [k for k in present if not complete(dest, k, files)]
            counts["incomplete_kernels"] += len(bad)
            assert bad == [], f"run {run}: incomplete kernels after the kill: {bad[:3]}"

            again = run_bounded(["-e", "-i", ref, "-d", str(dest), *H100], env, timeout=120)
            assert again.returncode == 0, again.err
            counts["reruns_ok"] += 1
            assert keys <= set(os.listdir(dest))
            assert all(complete(dest, k, files) for k in keys)
            stage, temps = _leftovers(dest, staging)
            counts["left_after_rerun"] += stage + temps
            assert (stage, temps) == (0, 0), (os.listdir(staging), os.listdir(dest)[:5])
    finally:
        if shm:
            shutil.rmtree(shm, ignore_errors=True)
    out = os.environ.get("TCV_FAULTS_RESULTS")
    if out:
        Path(out).write_text(json.dumps(counts, indent=2) + "\n")
    assert counts["killed"] >= RUNS // 2  # most kills landed mid-run
