"""How much the runtime hook adds to a container start.

Measures, side by side in one run and in rotating order, ``podman run --rm
IMAGE true``:

- without the annotation (the baseline);
- with ``--annotation cache.triton.image/inject=CACHE``, warm store, a spare
  ready and the store's spare keeper running (it stays between starts): the
  hook moves the pre-rendered kernel directories in with one rename each and
  hands the refill to the keeper. The target: at most 150 ms over the baseline;
- the same, but the keeper leaves as soon as it is done (a store of its own
  with ``TCV_HOOK_KEEPER_IDLE=0``), so each start launches one: the container
  exits while that refill runs, and conmon waits for it (docs/hook.md);
- with spares turned off (``tcv hook install --spares 0``): the copy, which
  is also what a start gets when no spare is ready,

and reports the medians, their differences and ratios. The first start with a
cold store (copy out of local storage, validate, unpack, copy) is reported
too, and the hook's own time from its log. Before every timed start the bench
waits until the spares are refilled and no refill runs, so each annotated
start finds a spare and none competes with a refill.

The cache image has ``--kernels`` kernel directories (default 1000), made
from the real Triton fixture cache by copying its kernels under new keys;
``--fit`` chooses how many of them are for the container's GPU (cuda:90):
``all`` (the worst case: every kernel is installed) or ``fixture`` (the
fixture's mix of CUDA and HIP targets). Each start gets a fresh named volume
(made before, removed after the timed runs), on the store's filesystem.
``--target rootfs`` puts the cache in the container's overlay rootfs instead,
where no rename reaches: every start copies.

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

from tests.harness.podman import install_hook, podman_session, wait_for_refills  # noqa: E402

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
    """The injection time each hook run reports ("store warm; from a spare; 0.123s")."""
    out: dict[str, list[float]] = {"spare": [], "copied": [], "filled": []}
    for m in re.finditer(r"store (warm|filled); (from a spare|copied)[^;]*; ([0-9.]+)s", log):
        kind = "filled" if m.group(1) == "filled" else m.group(2).split()[-1]
        out[kind].append(float(m.group(3)))
    return out


def spares_ready(store: Path, wanted: int = 2, timeout: float = 120.0) -> None:
    """Wait until every spare tuple of ``store`` has ``wanted`` ready spares and no
    refill is building one (the keeper stays, so its exit is no signal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tuples = [t for t in (store / "spares").glob("*") if t.is_dir()]
        if all(
            len(list(t.glob("ready-*"))) >= wanted and not list(t.glob("building-*"))
            for t in tuples
        ):
            return
        time.sleep(0.02)
    raise SystemExit(f"the spares of {store} were not refilled within {timeout:g}s")


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
    # kind: (hooks.d, store, log). "spare" and "copy" share a store whose keeper stays
    # between starts (10 s); "new-keeper" has its own, whose keeper leaves as soon as
    # it is done, so that each of its starts launches one.
    kinds = {
        "spare": ("hooks.d", "store", "hook.log"),
        "new-keeper": ("hooks-new.d", "store-new", "hook-new.log"),
        "copy": ("hooks-copy.d", "store", "hook.log"),
    }
    try:
        with podman_session(work) as pod:
            fits = make_cache(work / "cache", args.kernels, args.fit)
            busybox = pod.make_busybox(f"localhost/tcv-bench-busybox:{tag}")
            cache_image = pod.make_cache_image(work / "cache", f"localhost/tcv-bench-cache:{tag}")
            for kind, (hooks, store, log) in kinds.items():
                install_hook(
                    work / hooks, "--gpu", GPU, "--store", str(work / store),
                    "--log", str(work / log), "--pull", "never", "--timeout", "60",
                    *(["--spares", "0"] if kind == "copy" else []),
                    env={"TCV_HOOK_KEEPER_IDLE": "0" if kind == "new-keeper" else "10"},
                )  # fmt: skip

            env = {"TRITON_CACHE_DIR": "/triton-cache"}
            inject = {"cache.triton.image/inject": cache_image}
            # Volumes are made before and removed after the timed runs, for every side.
            volumes = (
                [pod.volume() for _ in range(4 * args.rounds + 6)]
                if args.target == "volume"
                else []
            )

            def run(kind: str, command: list[str] | None = None) -> float:
                kw: dict[str, object] = {"env": env}
                if kind != "plain":
                    kw["annotations"] = inject
                    pod.hooks_dir = work / kinds[kind][0]
                if volumes:
                    kw["volumes"] = [f"{volumes.pop()}:/triton-cache"]
                # A spare is ready and no refill competes; no refill of the
                # "new-keeper" store runs, so its start launches one.
                spares_ready(work / "store")
                wait_for_refills(work / "store-new")
                start = time.perf_counter()
                res = pod.run(busybox, command or ["true"], **kw)  # type: ignore[arg-type]
                took = time.perf_counter() - start
                if res.exit_code != 0:
                    raise SystemExit(f"podman run failed: {res.stderr}")
                if command:
                    got = res.stdout.strip()
                    if got != str(fits):
                        raise SystemExit(f"expected {fits} kernels in the container, saw {got}")
                return took

            run("plain")  # warm podman's own caches before anything is timed
            cold = run("spare")
            run("new-keeper")  # its store's first use: not timed
            count = ["sh", "-c", "ls /triton-cache | wc -l"]
            for kind in kinds:
                run(kind, count)
            logs = {name: (work / name).read_text() for name in ("hook.log", "hook-new.log")}

            samples: dict[str, list[float]] = {"plain": [], **{k: [] for k in kinds}}
            order = list(samples)
            for i in range(args.rounds):
                # Rotate which goes first, so drift affects all alike.
                for kind in order[i % len(order) :] + order[: i % len(order)]:
                    samples[kind].append(run(kind))
            spares_ready(work / "store")

            med = {k: statistics.median(v) for k, v in samples.items()}
            base = med["plain"]
            own = hook_seconds((work / "hook.log").read_text()[len(logs["hook.log"]) :])
            own_new = hook_seconds((work / "hook-new.log").read_text()[len(logs["hook-new.log"]) :])
            print(
                f"kernels in image: {args.kernels}; fitting {GPU}: {fits}; "
                f"cache on: {args.target}; rounds: {args.rounds}"
            )
            print(f"podman run --rm IMAGE true, no annotation:      median {base * 1000:7.1f} ms")
            for kind, what in (
                ("spare", "warm, spare, keeper running"),
                ("new-keeper", "warm, spare, keeper started"),
                ("copy", "warm, copy (no spare)"),
            ):
                print(
                    f"with injection, {what + ':':<29}  median {med[kind] * 1000:7.1f} ms;"
                    f" added {1000 * (med[kind] - base):7.1f} ms; ratio {med[kind] / base:5.2f}"
                )
            print("  (target: a warm store adds at most 150 ms)")
            if args.target == "rootfs":
                print("  (no spare reaches an overlay rootfs: every annotated start copies)")
            print(f"first use, cold store (fill + copy):           {cold * 1000:7.1f} ms")
            for what, values in (
                ("spare, keeper running", own["spare"]),
                ("spare, keeper started", own_new["spare"]),
                ("copy", own["copied"]),
                ("cold", hook_seconds(logs["hook.log"])["filled"]),
            ):
                if values:
                    print(
                        f"the hook's own time (its log), {what + ':':<22} median "
                        f"{statistics.median(values) * 1000:7.1f} ms over {len(values)}"
                    )
            spares = sorted((work / "store" / "spares").glob("*/ready-*"))
            size = sum(f.stat().st_size for d in spares for f in d.rglob("*") if f.is_file())
            print(f"spares kept: {len(spares)}, {size / 1e6:.1f} MB of file data")
    finally:
        for store in ("store", "store-new"):
            wait_for_refills(work / store)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
