"""Speed of ``tcv -c`` against plain buildah on the same cache (issue target:
at most 1.3x).

Makes a 1,000-entry cache by repeating the kernel directories of a real Triton
cache under distinct keys, then times, side by side in one run and alternating
so both see the same machine state:

- plain: ``buildah from scratch`` + ``buildah copy DIR /io.triton.cache`` +
  ``buildah commit`` (three processes, nothing else);
- tcv:   ``tcv -c -i IMAGE -d DIR`` (scan + hash every file, manifest, layer
  tar, from/add/config/commit, digest).

Prints each run, the medians and the ratio. Images are removed afterwards.

    python bench/create_bench.py [--entries 1000] [--rounds 5] [--source CACHE]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TCV = Path(sys.executable).parent / "tcv"


def make_cache(source: Path, dest: Path, entries: int) -> int:
    """``entries`` kernel directories copied from ``source`` under new keys; total bytes."""
    originals = sorted(p for p in source.iterdir() if p.is_dir())
    total = 0
    for i in range(entries):
        key = base64.b32encode(hashlib.sha256(f"bench-{i}".encode()).digest()).decode().rstrip("=")
        shutil.copytree(originals[i % len(originals)], dest / key)
        total += sum(f.stat().st_size for f in (dest / key).iterdir())
    return total


def run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def plain(cache: Path, image: str) -> float:
    start = time.perf_counter()
    c = run(["buildah", "from", "--quiet", "scratch"])
    run(["buildah", "copy", "--quiet", c, str(cache), "/io.triton.cache"])
    run(["buildah", "commit", "--quiet", "--rm", c, image])
    return time.perf_counter() - start


def tcv(cache: Path, image: str) -> float:
    start = time.perf_counter()
    run([str(TCV), "-c", "-i", image, "-d", str(cache)])
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--source", type=Path, default=REPO / "tests/data/caches/triton-3.9")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tcv-bench-"))
    images: list[str] = []
    try:
        cache = work / "cache"
        cache.mkdir()
        size = make_cache(args.source, cache, args.entries)
        print(f"cache: {args.entries} entries, {size / 1e6:.1f} MB ({cache})")
        # One untimed round each: warm the page cache and buildah's storage.
        for name, fn in (("plain", plain), ("tcv", tcv)):
            images.append(f"localhost/tcv-bench/{name}:warm")
            fn(cache, images[-1])
        times: dict[str, list[float]] = {"plain": [], "tcv": []}
        for r in range(args.rounds):
            order = (
                (("plain", plain), ("tcv", tcv)) if r % 2 == 0 else (("tcv", tcv), ("plain", plain))
            )
            for name, fn in order:
                images.append(f"localhost/tcv-bench/{name}:{r}")
                t = fn(cache, images[-1])
                times[name].append(t)
                print(f"round {r}: {name:5s} {t:.3f}s")
        p, t = statistics.median(times["plain"]), statistics.median(times["tcv"])
        print(f"median plain buildah from+copy+commit: {p:.3f}s")
        print(f"median tcv -c:                         {t:.3f}s")
        print(f"ratio tcv/plain: {t / p:.2f} (target <= 1.30)")
        return 0 if t / p <= 1.3 else 1
    finally:
        for image in images:
            subprocess.run(["buildah", "rmi", "-f", image], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
