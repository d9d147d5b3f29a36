"""Every crafted image of tests/hostile/cases.py against ``tcv -e``.

For each case, whatever its outcome: no traceback; nothing written outside
DEST and staging (a decoy Triton cache and the rest of the case directory are
hashed before and after); DEST byte-identical on a refusal, and on an install
only the expected kernel directories added, each holding regular files only;
no staging directory left; ``tcv`` bounded in memory (RLIMIT_AS 1 GiB) and
time. ``TCV_HOSTILE_RESULTS=FILE`` writes the outcomes as JSON (the table of
docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.hostile import craft
from tests.hostile.cases import CASES, Case, Ctx, Install, Refuse
from tests.hostile.child import MEMORY_LIMIT, TIME_LIMIT, run_bounded

pytestmark = pytest.mark.integration

H100 = ("--gpu", "cuda:90", "--cuda-driver", "13.4")
LOCK = ".tcv.lock"


def tree_digest(root: Path) -> dict[str, str]:
    """Every path under ``root`` (not followed) with a digest of what it is."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            rel = os.fsencode(p.relative_to(root)).hex()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = f"dir:{stat.S_IMODE(st.st_mode):o}"
            else:
                out[rel] = (
                    f"file:{stat.S_IMODE(st.st_mode):o}:"
                    + hashlib.sha256(p.read_bytes()).hexdigest()
                )
    return out


def prefill(dest: Path, decoy: Path) -> None:
    """A DEST that already holds a kernel, a user's file and a symlink to the decoy."""
    shutil.copytree(craft.FIXTURE / craft.ALREADY, dest / craft.ALREADY)
    (dest / "notes.txt").write_text("mine")
    os.symlink(decoy, dest / "decoy-link")


@pytest.mark.parametrize("case", [pytest.param(k, id=k.id) for k in CASES])
def test_hostile_image(case: Case, tmp_path: Path, results: list) -> None:
    work = tmp_path / "work"
    work.mkdir()
    decoy = tmp_path / "decoy"
    shutil.copytree(craft.FIXTURE / craft.ALREADY, decoy / "cache" / craft.GOOD[0])
    (decoy / "secret").write_text("do not touch")
    ref = case.build(Ctx(work, decoy))
    dest = tmp_path / "dest"
    prefill(dest, decoy)
    staging = tmp_path / "staging"
    before_dest, before_all = tree_digest(dest), tree_digest(tmp_path)
    expect = case.expect
    as_json = isinstance(expect, Install) and expect.json
    args = ["-e", "-i", ref, "-d", str(dest), *H100, *(["--json"] if as_json else [])]
    got = run_bounded(args, {"TCV_STAGING_ROOT": str(staging), "LC_ALL": "C.UTF-8"})
    results.append(
        {
            "case": case.id,
            "why": case.why,
            "expected": "refuse" if isinstance(expect, Refuse) else "install",
            "exit": got.returncode,
            "seconds": round(got.seconds, 2),
            "peak_rss_mib": round(got.peak_rss_kib / 1024, 1),
            "stderr": got.err.strip()[-300:],
        }
    )

    # Bounded, and no traceback, whatever happened.
    assert not got.timed_out, f"killed after {TIME_LIMIT}s"
    assert b"Traceback" not in got.stderr, got.err
    assert got.peak_rss_kib * 1024 < MEMORY_LIMIT // 2, got.peak_rss_kib
    # Nothing outside DEST and staging changed: the decoy and the case's image.
    after_all = tree_digest(tmp_path)
    outside = {k: v for k, v in after_all.items() if not _under(k, ("dest", "staging"))}
    assert outside == {k: v for k, v in before_all.items() if not _under(k, ("dest", "staging"))}
    assert not staging.exists() or os.listdir(staging) == [], os.listdir(staging)

    after_dest = tree_digest(dest)
    if isinstance(expect, Refuse):
        assert got.returncode == expect.code, got.err
        lines = got.err.strip().splitlines()
        assert len(lines) == 1 and expect.needle in lines[0], got.err
        assert after_dest == before_dest
        return

    assert got.returncode == 0, got.err
    for k, v in before_dest.items():
        assert after_dest.get(k) == v  # nothing that was there changed
    added = {bytes.fromhex(k).decode() for k in after_dest if k not in before_dest}
    top = {p for p in added if "/" not in p}
    assert top - {LOCK} == set(expect.installed)
    for key in expect.installed:
        for f in (dest / key).iterdir():
            st = f.lstat()
            assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1, f
    if as_json:
        report = json.loads(got.stdout)
        assert set(report["installed"]) == set(expect.installed)
        reasons = {s["key"]: s["reason"] for s in report["skipped"]}
    else:
        text = got.stdout.decode("utf-8")  # decodable whatever the names were
        assert "\x1b" not in text and "\x07" not in text
        reasons = {k: text for k in expect.skipped}
    for key, needle in expect.skipped.items():
        assert key in reasons and needle in reasons[key], reasons


def _under(hexrel: str, tops: tuple[str, ...]) -> bool:
    rel = bytes.fromhex(hexrel).decode("utf-8", "surrogateescape")
    return rel.split("/", 1)[0] in tops


def test_the_suite_has_enough_cases() -> None:
    assert len(CASES) >= 40
    assert len({k.id for k in CASES}) == len(CASES)
