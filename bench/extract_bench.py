#!/usr/bin/env python3
"""Extraction speed against the raw floor, measured side by side in one run.

For a compatible image of N kernels (copies of the cuda:90 fixture kernels
under fresh keys) in a real registry on 127.0.0.1:

- floor: ``skopeo copy docker://… oci:DIR:t`` + ``tar -xzf`` of its layer;
- tcv:   ``tcv -e -i … --gpu cuda:90`` (preflight, pull, unpack with checks and
  hashing, verify, filter, relocate, install);

and the preflight of an incompatible image (requests seen by the registry,
layer bytes fetched). Prints the ratio tcv / floor and tcv's peak memory.

    .venv/bin/python bench/extract_bench.py [--sizes 1000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tcv.cache.scan import scan_cache  # noqa: E402
from tcv.image.manifest import build_labels, build_manifest  # noqa: E402
from tests.harness import hostile  # noqa: E402
from tests.harness.registry import start_registry  # noqa: E402

FIXTURE = REPO / "tests" / "data" / "caches" / "triton-3.9"
TCV = Path(sys.executable).with_name("tcv")


def synth_cache(root: Path, n: int, backend_arch: tuple[str, str]) -> None:
    """``n`` kernel dirs: the fixture's kernels for ``backend_arch``, copied under new keys."""
    sources = [e for e in scan_cache(FIXTURE).entries if (e.backend, e.arch) == backend_arch]
    root.mkdir(parents=True)
    for i in range(n):
        src = FIXTURE / sources[i % len(sources)].key
        key = base64.b32encode(hashlib.sha256(f"bench-{i}".encode()).digest()).decode()
        shutil.copytree(src, root / key.rstrip("="))


def build_image(workdir: Path, cache: Path, name: str) -> hostile.CraftedImage:
    entries = scan_cache(cache).entries
    manifest = build_manifest(entries, str(cache))
    layer = hostile.Layer(hostile.cache_members(cache, manifest=manifest), hostile.OCI_GZIP)
    return hostile.write_image(workdir / name, [layer], build_labels(entries, name))


def timed(argv: list[str], **kw: object) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0,):
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return elapsed, usage.ru_maxrss


def floor_once(ref: str, work: Path) -> float:
    oci = work / "floor-oci"
    out = work / "floor-out"
    shutil.rmtree(oci, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    t1, _ = timed(
        ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{oci}:t"]
    )
    index = json.loads((oci / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((oci / "blobs" / "sha256" / mdigest).read_text())
    layer = oci / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":", 1)[1]
    t2, _ = timed(["tar", "-xzf", str(layer), "-C", str(out)])
    return t1 + t2


def tcv_once(ref: str, work: Path) -> tuple[float, int]:
    dest = work / "dest"
    shutil.rmtree(dest, ignore_errors=True)
    return timed(
        [str(TCV), "-e", "-i", ref, "--tls-verify=false", "-d", str(dest), "--gpu", "cuda:90"]
    )


def preflight_requests(reg, ref: str, layer_digests: list[str]) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    before = len(reg.requests())
    proc = subprocess.run(
        [str(TCV), "-e", "-i", ref, "--tls-verify=false", "-d", "/nonexistent", "--gpu", "cuda:75"],
        capture_output=True,
    )
    seen = reg.requests()[before:]
    beyond_auth = [r for r in seen if r["uri"] != "/v2/"]
    layer_hits = [r for r in seen if any(d in str(r["uri"]) for d in layer_digests)]
    return proc.returncode, len(beyond_auth), len(layer_hits)


def make_image(n: int, ref: str, work: Path) -> None:
    """Child-process half: synthesize, build and push one image; print its layer
    digests. Run apart so the measuring process stays small (a forked child's peak
    memory starts from its parent's)."""
    cache = work / f"cache-{n}"
    synth_cache(cache, n, ("cuda", "90"))
    image = build_image(work, cache, f"bench-{n}")
    hostile.push(image, ref)
    shutil.rmtree(cache)
    shutil.rmtree(image.path)
    print(json.dumps(image.layer_digests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--make-image", nargs=3, metavar=("N", "REF", "WORK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.make_image:
        n, ref, workdir = args.make_image
        make_image(int(n), ref, Path(workdir))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tcv-extract-bench-"))
    reg = start_registry(work / "registry")
    # SIGTERM runs the cleanup below too (the registry is our child).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        print(f"{'kernels':>8} {'floor s':>8} {'tcv s':>8} {'ratio':>6} {'tcv peak MB':>12}")
        for n in sizes:
            ref = reg.ref(f"bench/extract-{n}:1")
            made = subprocess.run(
                [sys.executable, __file__, "--make-image", str(n), ref, str(work)],
                check=True,
                capture_output=True,
                text=True,
            )
            layer_digests = json.loads(made.stdout)
            floors, tcvs, peaks = [], [], []
            for _ in range(args.repeat):  # interleaved: same conditions for both
                floors.append(floor_once(ref, work))
                t, rss = tcv_once(ref, work)
                tcvs.append(t)
                peaks.append(rss)
            f, t = statistics.median(floors), statistics.median(tcvs)
            print(f"{n:>8} {f:>8.2f} {t:>8.2f} {t / f:>6.2f} {max(peaks) / 1024:>12.1f}")
            code, requests, layer_hits = preflight_requests(reg, ref, layer_digests)
            print(
                f"{'':>8} preflight on an incompatible host: exit {code}, "
                f"{requests} registry requests beyond /v2/, {layer_hits} layer blob requests"
            )
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
