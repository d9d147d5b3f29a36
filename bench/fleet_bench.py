#!/usr/bin/env python3
"""What a fleet image saves a single-target host, measured in one run.

Four "CI runner" caches (cuda:80, cuda:90, hip:gfx942, hip:gfx1100), each
``--per-target`` copies of that target's 3.9 fixture kernels under fresh keys,
are packed twice with real buildah and pushed to a registry on 127.0.0.1:

- fleet:  ``tcv -c --split-by-target -d … -d … -d … -d …`` (one image per target
  under one OCI image index);
- single: ``tcv -c -d … -d … -d … -d …`` (one image holding every target).

A cuda:90 host then runs ``tcv -e --gpu cuda:90`` on each, alternated
``--repeat`` times. From the registry's access log (bytes written per blob
request): the layer bytes the host downloaded from the fleet image against
the layer bytes of the whole fleet image (target ≤ 30%), and the extract time
from the fleet image against the same host's extract from the single image
(target ≤ 40%).

    .venv/bin/python bench/fleet_bench.py [--per-target 250] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
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
from tests.harness.registry import Registry, start_registry  # noqa: E402

FIXTURE = REPO / "tests" / "data" / "caches" / "triton-3.9"
TCV = Path(sys.executable).with_name("tcv")
TARGETS = {
    "cuda80": ("cuda", "80"),
    "cuda90": ("cuda", "90"),
    "gfx942": ("hip", "gfx942"),
    "gfx1100": ("hip", "gfx1100"),
}
HOST = ("--gpu", "cuda:90", "--cuda-driver", "13.4")


def synth_cache(root: Path, n: int, backend_arch: tuple[str, str], salt: str) -> None:
    """``n`` kernel dirs: the fixture's kernels for ``backend_arch`` under new keys."""
    sources = [e for e in scan_cache(FIXTURE).entries if (e.backend, e.arch) == backend_arch]
    root.mkdir(parents=True)
    for i in range(n):
        src = FIXTURE / sources[i % len(sources)].key
        key = base64.b32encode(hashlib.sha256(f"{salt}-{i}".encode()).digest()).decode()
        shutil.copytree(src, root / key.rstrip("="))


def tcv(*args: str, staging: Path) -> subprocess.CompletedProcess[str]:
    import os

    proc = subprocess.run(
        [str(TCV), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(staging)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"tcv {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr}")
    return proc


def raw(ref: str) -> dict:
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
    ).stdout
    return json.loads(out)


def blob_bytes(reg: Registry, start: int) -> dict[str, int]:
    """digest → bytes the registry wrote for blob GETs logged after line ``start``."""
    out: dict[str, int] = {}
    lines = reg.log_path.read_text(errors="replace").splitlines()[start:]
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        uri = str(rec.get("http.request.uri", ""))
        if (
            rec.get("msg", "").startswith("response completed")
            and rec.get("http.request.method") == "GET"
            and "/blobs/" in uri
        ):
            digest = uri.rsplit("/", 1)[-1]
            out[digest] = out.get(digest, 0) + int(rec.get("http.response.written") or 0)
    return out


def log_lines(reg: Registry) -> int:
    return len(reg.log_path.read_text(errors="replace").splitlines())


def extract_once(ref: str, work: Path) -> float:
    dest = work / "dest"
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    tcv("-e", "-i", ref, "--tls-verify=false", "-d", str(dest), *HOST, staging=work / "st")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-target", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tcv-fleet-bench-"))
    (work / "st").mkdir()
    reg = start_registry(work / "registry")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fleet_ref = reg.ref("bench/fleet:1")
    single_ref = reg.ref("bench/single:1")
    try:
        dirs = []
        for name, target in TARGETS.items():
            synth_cache(work / name, args.per_target, target, name)
            dirs += ["-d", str(work / name)]
        t0 = time.perf_counter()
        tcv("-c", "--split-by-target", "-i", fleet_ref, *dirs, "--push", "--tls-verify=false",
            staging=work / "st")  # fmt: skip
        t_fleet = time.perf_counter() - t0
        t0 = time.perf_counter()
        tcv("-c", "-i", single_ref, *dirs, "--push", "--tls-verify=false", staging=work / "st")
        t_single = time.perf_counter() - t0

        index = raw(fleet_ref)
        layers: dict[str, int] = {}  # every layer of the fleet image, by digest
        own: set[str] = set()  # the cuda:90 image's layers
        repo = fleet_ref.rsplit(":", 1)[0]
        for m in index["manifests"]:
            child = raw(f"{repo}@{m['digest']}")
            for layer in child["layers"]:
                layers[layer["digest"]] = int(layer["size"])
                if m["annotations"]["cache.triton.image/target"].startswith("cuda:90:"):
                    own.add(layer["digest"])
        single_layers = sum(int(x["size"]) for x in raw(single_ref)["layers"])

        start = log_lines(reg)
        fleet_times, single_times = [extract_once(fleet_ref, work)], []
        served = blob_bytes(reg, start)
        fetched_layers = {d: b for d, b in served.items() if d in layers}
        for _ in range(args.repeat):  # alternated: the same conditions for both
            single_times.append(extract_once(single_ref, work))
            fleet_times.append(extract_once(fleet_ref, work))
        fleet_s = statistics.median(fleet_times)
        single_s = statistics.median(single_times)

        whole = sum(layers.values())
        got = sum(fetched_layers.values())
        kernels = args.per_target * len(TARGETS)
        print(f"fleet image: {len(index['manifests'])} images, {kernels} kernels")
        print(f"build + push: fleet {t_fleet:.1f} s, single {t_single:.1f} s")
        print(f"layer bytes of the whole fleet image: {whole}")
        print(f"layer bytes of the single image:      {single_layers}")
        print(
            f"layer bytes a cuda:90 host downloaded: {got} "
            f"({100 * got / whole:.1f}% of the fleet image; only its own layer: "
            f"{set(fetched_layers) == own})"
        )
        print(
            f"extract on a cuda:90 host (median of {len(fleet_times)}/{len(single_times)}): "
            f"fleet {fleet_s:.2f} s, single {single_s:.2f} s "
            f"({100 * fleet_s / single_s:.1f}% of the single image)"
        )
    finally:
        reg.stop()
        for ref in (fleet_ref, single_ref):
            subprocess.run(["buildah", "manifest", "rm", ref], capture_output=True)
            subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)
        names = subprocess.run(
            ["buildah", "images", "--format", "{{.Name}}:{{.Tag}}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        for name in names:
            if name.startswith(f"{fleet_ref}-"):
                subprocess.run(["buildah", "rmi", "-f", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
