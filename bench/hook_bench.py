"""How much the runtime hook adds to a container start.

Measures, side by side in one run and in alternating order:

- ``podman run --rm IMAGE true`` without the annotation (the baseline),
- the same with ``--annotation cache.triton.image/inject=CACHE`` and a warm
  store: the hook copies the fitting kernel directories into the container's
  rootfs (a fresh one on every ``run --rm``),

and reports the medians, their difference (target: at most 150 ms) and their
ratio. The first start with a cold store (copy out of local storage, validate,
unpack) is reported too.

The cache image has ``--kernels`` kernel directories (default 1000), made
from the real Triton fixture cache by copying its kernels under new keys;
``--fit`` chooses how many of them are for the container's GPU (cuda:90):
``all`` (the worst case: every kernel is copied) or ``fixture`` (the fixture's
mix of CUDA and HIP targets).

Run as root on a machine set up as ENVIRONMENT.md says:

    .venv/bin/python bench/hook_bench.py [--rounds 15] [--kernels 1000] [--fit all|fixture]
                                         [--target volume|rootfs]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.podman import install_hook, podman_session  # noqa: E402

FIXTURE = REPO / "tests" / "data" / "caches" / "triton-3.9"
GPU = "cuda:90"


def fixture_entries() -> list[dict[str, object]]:
    index = json.loads((FIXTURE.parent / "index.json").read_text())
    return [e for e in index["entries"] if e["fixture"] == FIXTURE.name]


def make_cache(dest: Path, kernels: int, fit: str) -> int:
    """A cache of ``kernels`` directories copied from the fixture under fresh keys
    (base32 of a sha256, as Triton 3.3+ names them); returns how many fit GPU."""
    entries = fixture_entries()
    fitting = [e for e in entries if (e["backend"], e["arch"]) == ("cuda", "90")]
    pool = fitting if fit == "all" else entries
    dest.mkdir(parents=True)
    fits = 0
    for i in range(kernels):
        src = pool[i % len(pool)]
        digest = hashlib.sha256(f"bench-{i}".encode()).digest()
        key = base64.b32encode(digest).decode().rstrip("=")
        shutil.copytree(FIXTURE / str(src["key"]), dest / key)
        fits += src in fitting
    return fits


def hook_seconds(log: str) -> dict[str, list[float]]:
    """The injection time each hook run reports ("store warm; 0.123s")."""
    out: dict[str, list[float]] = {"warm": [], "filled": []}
    for m in re.finditer(r"store (warm|filled); ([0-9.]+)s", log):
        out[m.group(1)].append(float(m.group(2)))
    return out


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--kernels", type=int, default=1000)
    ap.add_argument("--fit", choices=("all", "fixture"), default="all")
    ap.add_argument(
        "--target",
        choices=("volume", "rootfs"),
        default="volume",
        help="where the container's Triton cache is: a fresh named volume per run (both "
        "sides get one), or the container's own rootfs",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tcv-hook-bench-"))
    tag = uuid.uuid4().hex[:8]
    try:
        with podman_session(work) as pod:
            fits = make_cache(work / "cache", args.kernels, args.fit)
            busybox = pod.make_busybox(f"localhost/tcv-bench-busybox:{tag}")
            cache_image = pod.make_cache_image(work / "cache", f"localhost/tcv-bench-cache:{tag}")
            pod.hooks_dir = work / "hooks.d"
            install_hook(pod.hooks_dir, "--gpu", GPU, "--store", str(work / "store"),
                         "--log", str(work / "hook.log"), "--pull", "never")  # fmt: skip

            env = {"TRITON_CACHE_DIR": "/triton-cache"}
            inject = {"cache.triton.image/inject": cache_image}
            # Volumes are made before and removed after the timed runs, for both sides.
            spare = (
                [pod.volume() for _ in range(2 * args.rounds + 3)]
                if args.target == "volume"
                else []
            )

            def kw(annotated: bool) -> dict[str, object]:
                out: dict[str, object] = {"env": env}
                if annotated:
                    out["annotations"] = inject
                if spare:
                    out["volumes"] = [f"{spare.pop()}:/triton-cache"]
                return out

            def run(args_: dict[str, object], command: list[str] | None = None) -> str:
                res = pod.run(busybox, command or ["true"], **args_)  # type: ignore[arg-type]
                if res.exit_code != 0:
                    raise SystemExit(f"podman run failed: {res.stderr}")
                return res.stdout

            run(kw(False))  # warm podman's own caches before anything is timed
            cold_kw = kw(True)
            cold = timed(lambda: run(cold_kw))
            got = run(kw(True), ["sh", "-c", "ls /triton-cache | wc -l"]).strip()
            if got != str(fits):
                raise SystemExit(f"expected {fits} kernels in the container, saw {got}")

            plain: list[float] = []
            injected: list[float] = []
            for i in range(args.rounds):
                # Alternate which goes first, so drift affects both alike.
                order = [(plain, False), (injected, True)]
                for samples, annotated in order if i % 2 == 0 else reversed(order):
                    one = kw(annotated)
                    samples.append(timed(lambda one=one: run(one)))

            base = statistics.median(plain)
            with_hook = statistics.median(injected)
            print(
                f"kernels in image: {args.kernels}; fitting {GPU}: {fits}; "
                f"cache on: {args.target}; rounds: {args.rounds}"
            )
            print(f"podman run --rm IMAGE true, no annotation:   median {base * 1000:7.1f} ms")
            print(f"same with injection, warm store:            median {with_hook * 1000:7.1f} ms")
            print(f"added by the hook (median difference):      {1000 * (with_hook - base):7.1f} ms"
                  "  (target <= 150 ms)")  # fmt: skip
            print(f"ratio injected / plain:                     {with_hook / base:7.2f}")
            print(f"first use, cold store (fill + inject):      {cold * 1000:7.1f} ms")
            own = hook_seconds((work / "hook.log").read_text())
            print(
                f"the hook's own time (its log), warm store:   median "
                f"{statistics.median(own['warm']) * 1000:7.1f} ms; cold: "
                f"{own['filled'][0] * 1000:.1f} ms"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
