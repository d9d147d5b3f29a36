"""How much ``tcv gpus`` costs, measured side by side in one run.

Targets (issue 3):

1. On a host without GPU libraries, ``tcv gpus`` adds at most 100 ms over
   ``python -c "import tcv"``.
2. Discovery with a (stand-in) libcuda loaded adds at most 50 ms more. This is
   measured under ``umockdev-run`` on both sides, so the testbed's own cost
   cancels: ``tcv gpus`` on a recorded H100 host with the stand-in libcuda on
   LD_LIBRARY_PATH (udev sees the GPU, libcuda is probed in a forked child),
   against ``tcv gpus`` on a recorded host without GPU (no library loaded).

The commands are interleaved round by round so that machine noise hits every
variant alike; medians are reported, of wall time and of CPU time (user + system
of the command and everything it waited for). On an idle machine the two agree
for these single-threaded commands; on a busy one wall time grows with the run
queue, so the exit status follows CPU time.

    python bench/gpus_bench.py [--rounds 21]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import fakecuda  # noqa: E402

UDEV = ROOT / "tests" / "data" / "udev"


def tcv_command() -> list[str]:
    script = Path(sys.executable).with_name("tcv")
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "import sys; from tcv.cli.app import main; main()"]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the command and every process it
    waited for) of one run. CPU time is what the command costs; wall time also
    counts waiting for a busy machine."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        pid = os.posix_spawnp(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, null.fileno(), 2),
            ],
        )
        _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    if shutil.which("umockdev-run") is None:
        print("umockdev-run is needed (apt-get install umockdev)", file=sys.stderr)
        return 3

    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TCV_", "FAKECUDA_")) and k != "LD_LIBRARY_PATH"
    }
    tcv = [*tcv_command(), "gpus"]
    with tempfile.TemporaryDirectory(prefix="tcv-bench-") as tmp:
        libdir = fakecuda.build(Path(tmp))
        cuda_env = {**base, "LD_LIBRARY_PATH": str(libdir), "FAKECUDA_SCENARIO": "h100"}
        variants = {
            "import tcv": ([sys.executable, "-c", "import tcv"], base),
            # The command-line framework alone (plumbum): what every tcv command pays.
            "import tcv.cli.app (CLI floor)": ([sys.executable, "-c", "import tcv.cli.app"], base),
            "tcv gpus (this host)": (tcv, base),
            "umockdev none: tcv gpus": (
                ["umockdev-run", "--device", str(UDEV / "none.umockdev"), "--", *tcv],
                base,
            ),
            "umockdev h100 + libcuda: tcv gpus": (
                ["umockdev-run", "--device", str(UDEV / "h100.umockdev"), "--", *tcv],
                cuda_env,
            ),
        }
        # The stand-in must really be found and answer: check once, out of the timing.
        out = subprocess.run(
            variants["umockdev h100 + libcuda: tcv gpus"][0],
            env=cuda_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "NVIDIA H100" not in out:
            print(f"the stand-in libcuda was not used:\n{out}", file=sys.stderr)
            return 1
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for argv, env in variants.values():  # warm-up
            timed(argv, env)
        for _ in range(args.rounds):
            for name, (argv, env) in variants.items():
                times[name].append(timed(argv, env))

    wall = {n: statistics.median(t[0] for t in ts) * 1000 for n, ts in times.items()}
    cpu = {n: statistics.median(t[1] for t in ts) * 1000 for n, ts in times.items()}
    print(f"rounds: {args.rounds}; median per command, wall time and CPU time (user+sys)")
    for name in times:
        print(f"  {name:38s} wall {wall[name]:7.1f} ms   cpu {cpu[name]:7.1f} ms")
    results = {}
    for label, med in (("wall", wall), ("cpu", cpu)):
        a, b = med["import tcv"], med["tcv gpus (this host)"]
        floor = med["import tcv.cli.app (CLI floor)"]
        c, d = med["umockdev none: tcv gpus"], med["umockdev h100 + libcuda: tcv gpus"]
        results[label] = (b - a, d - c)
        print(f"{label}:")
        print(
            f"  tcv gpus vs import tcv:       +{b - a:6.1f} ms  ratio {b / a:5.2f}  (target +100)"
        )
        print(
            f"    CLI framework +{floor - a:6.1f} ms, GPU discovery and output +{b - floor:6.1f} ms"
        )
        print(f"  libcuda discovery vs no GPU:  +{d - c:6.1f} ms  ratio {d / c:5.2f}  (target +50)")
    verdict = {k: v[0] <= 100 and v[1] <= 50 for k, v in results.items()}
    for label, ok in verdict.items():
        print(f"{label}: {'within targets' if ok else 'OVER TARGET'}")
    # CPU time decides: on a shared, busy machine wall time mostly measures the queue.
    return 0 if verdict["cpu"] else 1


if __name__ == "__main__":
    sys.exit(main())
