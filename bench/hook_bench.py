"""How much the runtime hook adds to a container start.

For each cache size (``--kernels``, default 500 and 5000; every kernel fits the
container's GPU, cuda:90: the worst case) and each case

- ``rootfs``: the cache in the container's own rootfs (``$HOME/.triton/cache``);
- ``user``: the same as ``--user 1234:2345``;
- ``volume``: a fresh named volume at the cache path (made before, removed after);
- ``rootless``: rootless podman as the user ``tcvtest``, cache in the rootfs,

it times ``podman run --rm IMAGE true`` without and with ``--annotation
cache.triton.image/inject=CACHE``, alternated in one run, warm store (each case
is started once, untimed, so its view is rendered), and prints the medians, the
added time, and the 5000/500 ratio of the added time. Then 20 concurrent starts
(rootfs case, warm store): the p95 of their wall time over the p95 of 20
concurrent plain starts. The first use of each image (cold store: fill +
render + mount) is reported beside it.

Run as root on a machine set up as ENVIRONMENT.md says:

    .venv/bin/python bench/hook_bench.py [--rounds 9] [--kernels 500 5000] [--no-rootless]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sh  # noqa: E402

from tests.harness.podman import (  # noqa: E402
    CONTAINERS_CONF,
    install_hook,
    make_big_cache,
    podman_session,
)

FIXTURE = REPO / "tests" / "data" / "caches" / "triton-3.9"
GPU = "cuda:90"
USER = "tcvtest"


def fixture_index() -> list[dict[str, object]]:
    index = json.loads((FIXTURE.parent / "index.json").read_text())
    return [e for e in index["entries"] if e["fixture"] == FIXTURE.name]


def make_cache(dest: Path, kernels: int) -> int:
    """A cache of ``kernels`` cuda:90 kernels (plus the fixture's own); how many fit."""
    return len(make_big_cache(FIXTURE, dest, kernels, fixture_index()))


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p95_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000


class Rootless:
    """podman as the unprivileged user, with its own hooks.d and store."""

    def __init__(self, work: Path) -> None:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            sh.useradd("-m", USER)
        self.pw = pwd.getpwnam(USER)
        self.work = work
        work.mkdir()
        (work / "containers.conf").write_text(CONTAINERS_CONF)
        (work / "staging").mkdir()
        for p in (work, work / "staging"):
            os.chown(p, self.pw.pw_uid, self.pw.pw_gid)

    def __call__(self, *argv: str) -> str:
        env = [f"HOME={self.pw.pw_dir}", f"USER={USER}", f"PATH={os.environ['PATH']}",
               f"CONTAINERS_CONF={self.work / 'containers.conf'}",
               f"TCV_STAGING_ROOT={self.work / 'staging'}", f"PYTHONPATH={REPO}"]  # fmt: skip
        return str(sh.runuser("-u", USER, "--", "env", "-i", *env, *argv, _cwd=self.pw.pw_dir))

    def tcv(self, *args: str) -> str:
        return self(sys.executable, "-c", "from tcv.cli.app import main; main()", *args)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--kernels", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--no-rootless", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tcv-hook-bench-"))
    os.chmod(work, 0o755)
    tag = uuid.uuid4().hex[:8]
    added: dict[tuple[str, int], float] = {}
    rows: list[str] = []
    cold: dict[int, float] = {}
    concurrent: dict[int, tuple[float, float]] = {}
    rootless = None if args.no_rootless else Rootless(work / "rootless")
    rl_images: list[str] = []
    try:
        with podman_session(work) as pod:
            busybox = pod.make_busybox(f"localhost/tcv-bench-busybox:{tag}")
            rl_busybox = f"localhost/tcv-bench-rl-busybox:{tag}"
            if rootless is not None:
                script = (
                    "c=$(buildah from scratch) && m=$(buildah mount $c) && mkdir -p $m/bin && "
                    "cp /bin/busybox $m/bin/ && buildah umount $c && "
                    "buildah run --network none $c /bin/busybox --install -s /bin && "
                    f"buildah commit -q $c {rl_busybox} && buildah rm $c"
                )
                rootless("buildah", "unshare", "sh", "-c", script)
                rl_images.append(rl_busybox)
                rootless.tcv("hook", "install", "--hooks-dir", str(rootless.work / "hooks.d"),
                             "--gpu", GPU, "--store", str(rootless.work / "store"),
                             "--pull", "never", "--timeout", "60")  # fmt: skip
            pod.hooks_dir = work / "hooks.d"
            install_hook(pod.hooks_dir, "--gpu", GPU, "--store", str(work / "store"),
                         "--log", str(work / "hook.log"), "--pull", "never",
                         "--timeout", "60")  # fmt: skip
            for n in args.kernels:
                cache = work / f"cache-{n}"
                fits = make_cache(cache, n)
                os.chmod(cache.parent, 0o755)
                image = pod.make_cache_image(cache, f"localhost/tcv-bench-cache-{n}:{tag}")
                rl_image = f"localhost/tcv-bench-rl-cache-{n}:{tag}"
                if rootless is not None:
                    rootless.tcv("-c", "-i", rl_image, "-d", str(cache))
                    rl_images.append(rl_image)
                inject = {"cache.triton.image/inject": image}
                home = {"HOME": "/root"}

                def rootful(case: str, annotated: bool, _inject=inject) -> float:
                    kw: dict[str, object] = {"env": {"HOME": "/root"}}
                    if annotated:
                        kw["annotations"] = _inject
                    if case == "user":
                        kw["user"] = "1234:2345"
                        kw["env"] = {"HOME": "/home/u"}
                    vol = None
                    if case == "volume":
                        vol = pod.volume()
                        kw["volumes"] = [f"{vol}:/cache"]
                        kw["env"] = {"TRITON_CACHE_DIR": "/cache"}
                    start = time.perf_counter()
                    res = pod.run(busybox, ["true"], **kw)  # type: ignore[arg-type]
                    took = time.perf_counter() - start
                    if vol is not None:
                        pod.podman("volume", "rm", "-f", vol)
                        pod.volumes.remove(vol)
                    if res.exit_code != 0:
                        raise SystemExit(f"podman run failed: {res.stderr}")
                    return took

                def rl(case: str, annotated: bool, _image=rl_image) -> float:
                    assert rootless is not None
                    argv = ["podman", "--hooks-dir", str(rootless.work / "hooks.d"), "run",
                            "--rm", "--network", "none", "-e", "HOME=/root"]  # fmt: skip
                    if annotated:
                        argv += ["--annotation", f"cache.triton.image/inject={_image}"]
                    start = time.perf_counter()
                    rootless(*argv, rl_busybox, "true")
                    return time.perf_counter() - start

                # The first use of the image: cold store (fill + render + mount).
                start = time.perf_counter()
                res = pod.run(busybox, ["sh", "-c", "ls /root/.triton/cache | wc -l"],
                              annotations=inject, env=home)  # fmt: skip
                cold[n] = time.perf_counter() - start
                if res.stdout.strip() != str(fits):
                    raise SystemExit(f"expected {fits} kernels, the container saw {res.stdout}")
                cases = {"rootfs": rootful, "user": rootful, "volume": rootful}
                if rootless is not None:
                    cases["rootless"] = rl
                for case, fn in cases.items():
                    fn(case, False)
                    fn(case, True)  # renders this case's view: not timed
                    plain, annotated = [], []
                    for i in range(args.rounds):
                        for ann in (i % 2 == 0, i % 2 == 1):  # alternated
                            (annotated if ann else plain).append(fn(case, ann))
                    add = median_ms(annotated) - median_ms(plain)
                    added[(case, n)] = add
                    rows.append(
                        f"| {case} | {n} | {median_ms(plain):.0f} ms | "
                        f"{median_ms(annotated):.0f} ms | **{add:+.0f} ms** |"
                    )

                def burst(annotated: bool, _inject=inject) -> list[float]:
                    times: list[float] = []
                    lock = threading.Lock()

                    def one() -> None:
                        kw = {"annotations": _inject} if annotated else {}
                        start = time.perf_counter()
                        res = pod.run(busybox, ["true"], env={"HOME": "/root"}, **kw)
                        took = time.perf_counter() - start
                        if res.exit_code != 0:
                            raise SystemExit(f"a concurrent start failed: {res.stderr}")
                        with lock:
                            times.append(took)

                    threads = [threading.Thread(target=one) for _ in range(20)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    return times

                base = burst(False)
                log = work / "hook.log"
                before = log.read_text().count(f"delivery mounted, {fits} kernel(s)")
                concurrent[n] = (p95_ms(base), p95_ms(burst(True)))
                after = log.read_text().count(f"delivery mounted, {fits} kernel(s)")
                if after - before != 20 or "gave up" in log.read_text():
                    raise SystemExit(f"only {after - before} of 20 concurrent starts mounted")
    finally:
        if rootless is not None:
            for img in rl_images:
                with contextlib.suppress(sh.ErrorReturnCode):
                    rootless("podman", "rmi", "-f", img)
        shutil.rmtree(work, ignore_errors=True)

    print("| case | kernels | without | with | added |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    if len(args.kernels) == 2:
        small, big = sorted(args.kernels)
        print()
        for case in ("rootfs", "user", "volume", "rootless"):
            if (case, small) in added:
                a, b = added[(case, small)], added[(case, big)]
                ratio = b / a if a > 0 else float("nan")
                text = f"added {a:.0f} ms ({small}) vs {b:.0f} ms ({big})"
                print(f"{case}: {text}: ratio {ratio:.2f}")
    print()
    for n, (plain, ann) in concurrent.items():
        print(f"20 concurrent starts, {n} kernels: p95 {plain:.0f} ms without, {ann:.0f} ms with "
              f"(added {ann - plain:+.0f} ms)")  # fmt: skip
    for n, seconds in cold.items():
        print(f"first use (cold store: fill + render + mount), {n} kernels: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
