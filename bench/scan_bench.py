"""Scan speed and memory against the raw floor, measured side by side.

Builds a cache of N entries (default 10,000) by copying the real fixture
entries (tests/data/caches, made by the official Triton wheels) under new keys,
then times, alternately and with a warm page cache:

- the floor: reading and hashing every file of the tree with coreutils
  (``find ROOT -type f -print0 | xargs -0 sha256sum``);
- the scan: ``tcv.cache.scan.scan_cache(ROOT)`` in a fresh Python process (process
  start and imports included, as for the floor).

It prints the median of each and their ratio (target: at most 1.5) three ways
(of the medians, best against best, median of the per-round ratios: the
machine may be shared), and the peak
RSS of the scanning process for N/10 and N entries and for one entry holding a
512 MiB file: growth with the entry count (the result list) but not with the
bytes read means memory is flat.

    python bench/scan_bench.py [--entries 10000] [--rounds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "data" / "caches"

# Peak RSS from VmHWM: getrusage's ru_maxrss survives fork+exec on Linux and
# would report the parent's peak.
CHILD = """
import json, re, sys, time
t0 = time.perf_counter()
from tcv.cache.scan import scan_cache
r = scan_cache(sys.argv[1])
t1 = time.perf_counter()
hwm = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"entries": len(r.entries), "skipped": len(r.skipped),
                  "bytes": r.total_bytes, "scan_s": t1 - t0, "maxrss_kib": hwm}))
"""


def real_entries(fixtures: Path) -> list[Path]:
    return sorted(p for fx in fixtures.iterdir() if fx.is_dir() for p in fx.iterdir() if p.is_dir())


def build(root: Path, count: int, sources: list[Path]) -> int:
    """``count`` entry directories copied from the fixtures under fresh
    base32 keys (Triton 3.3+ encoding). Returns the number of bytes."""
    total = 0
    root.mkdir(parents=True)
    for i in range(count):
        src = sources[i % len(sources)]
        digest = hashlib.sha256(f"bench-{i}".encode()).digest()
        key = base64.b32encode(digest).decode().rstrip("=")
        dst = root / key
        dst.mkdir()
        for f in src.iterdir():
            shutil.copyfile(f, dst / f.name)
            total += f.stat().st_size
    return total


def time_floor(root: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        f"find {root} -type f -print0 | xargs -0 sha256sum > /dev/null",
        shell=True,
        check=True,
    )
    return time.perf_counter() - t


def time_scan(root: Path) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return time.perf_counter() - t, json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build the cache here and keep it")
    args = ap.parse_args()

    top = args.keep or Path(tempfile.mkdtemp(prefix="tcv-scan-bench-"))
    try:
        big, small, src = top / "big", top / "small", top / "src"
        if not src.exists():
            shutil.copytree(FIXTURES, src)  # a snapshot: fixtures may be regenerated
        sources = real_entries(src)
        if not big.exists():
            nbytes = build(big, args.entries, sources)
            build(small, max(1, args.entries // 10), sources)
        else:
            nbytes = sum(f.stat().st_size for f in big.rglob("*") if f.is_file())
        nfiles = sum(1 for _ in big.rglob("*") if _.is_file())
        print(
            f"cache: {args.entries} entries, {nfiles} files, {nbytes / 2**20:.1f} MiB "
            f"(copies of {len(sources)} real fixture entries)"
        )
        time_floor(big)  # warm the page cache for both
        floors, scans, inner = [], [], []
        info: dict[str, float] = {}
        for _ in range(args.rounds):
            floors.append(time_floor(big))
            wall, info = time_scan(big)
            scans.append(wall)
            inner.append(info["scan_s"])
        assert info["entries"] == args.entries and info["skipped"] == 0, info
        _, small_info = time_scan(small)
        # One entry whose cubin is 512 MiB (sparse): peak RSS must not follow.
        huge = top / "huge"
        if not huge.exists():
            build(huge, 1, sources[:1])
            blob = next(huge.iterdir()) / "blob.cubin"
            with open(blob, "wb") as f:
                f.truncate(512 << 20)
        _, huge_info = time_scan(huge)
        floor, scan = statistics.median(floors), statistics.median(scans)
        print(f"floor  find|xargs sha256sum : {floor:.3f} s (rounds: {_fmt(floors)})")
        print(f"scan   scan_cache, process  : {scan:.3f} s (rounds: {_fmt(scans)})")
        print(f"       of which scan_cache  : {statistics.median(inner):.3f} s")
        paired = statistics.median(s / f for s, f in zip(scans, floors, strict=True))
        print(f"ratio  scan / floor         : {scan / floor:.2f} of medians, ", end="")
        print(f"{min(scans) / min(floors):.2f} best vs best, {paired:.2f} median of rounds")
        print("                              (target <= 1.5)")
        print(
            f"memory peak RSS             : {small_info['maxrss_kib'] / 1024:.1f} MiB for "
            f"{small_info['entries']:.0f} entries, {info['maxrss_kib'] / 1024:.1f} MiB for "
            f"{info['entries']:.0f} entries ({nbytes / 2**20:.0f} MiB read)"
        )
        per_entry = (
            (info["maxrss_kib"] - small_info["maxrss_kib"])
            * 1024
            / max(1, info["entries"] - small_info["entries"])
        )
        print(f"       growth per entry     : {per_entry:.0f} bytes (the result list)")
        print(
            f"       one 512 MiB file     : {huge_info['maxrss_kib'] / 1024:.1f} MiB peak "
            f"({huge_info['bytes'] / 2**20:.0f} MiB hashed)"
        )
    finally:
        if not args.keep:
            shutil.rmtree(top)


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in xs)


if __name__ == "__main__":
    main()
