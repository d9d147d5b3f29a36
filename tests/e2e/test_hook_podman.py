"""The runtime hook end to end: real podman + runc run ``libexec/tcv-hook`` from the
hooks.d JSON that ``tcv hook install`` wrote, for containers of a busybox image
made here, injecting from a cache image made by ``tcv -c`` (SPEC §7)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.podman import (
    REPO,
    Podman,
    install_hook,
    podman_session,
    refill_pids,
    wait_for_refills,
)

pytestmark = pytest.mark.e2e

FIXTURE = "triton-3.9"
GPU = "cuda:90"
# The spare keeper refills at once and leaves as soon as it has nothing to do, so
# that a test can wait for it to finish (on its pidfd) instead of for its times.
QUICK_KEEPER = {"TCV_HOOK_KEEPER_IDLE": "0", "TCV_HOOK_KEEPER_DELAY": "0"}


def _index(caches_dir: Path) -> list[dict]:
    data = json.loads((caches_dir / "index.json").read_text())
    return [e for e in data["entries"] if e["fixture"] == FIXTURE]


@pytest.fixture(scope="module")
def expected(caches_dir) -> dict[str, list[str]]:
    """The oracle: the cuda:90 kernels of the fixture, and their files."""
    keys = {
        e["key"]: sorted(e["files"])
        for e in _index(caches_dir)
        if (e["backend"], e["arch"], e["warp_size"]) == ("cuda", "90", 32)
    }
    assert keys, "the fixture must hold cuda:90 kernels"
    return keys


class Setup:
    def __init__(self, pod: Podman, base: Path, busybox: str, cache_image: str) -> None:
        self.pod = pod
        self.base = base
        self.busybox = busybox
        self.cache_image = cache_image
        self.log = base / "hook.log"
        self.store = base / "store"

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def last_line(self, image: str) -> str:
        lines = [ln for ln in self.log_text().splitlines() if f"inject {image}:" in ln]
        assert lines, f"no log line for {image}"
        return lines[-1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, caches_dir) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("hook-e2e")
    tag = uuid.uuid4().hex[:8]
    with podman_session(base) as pod:
        busybox = pod.make_busybox(f"localhost/tcv-test-busybox:{tag}")
        cache_image = pod.make_cache_image(caches_dir / FIXTURE, f"localhost/tcv-test-cache:{tag}")
        pod.hooks_dir = base / "hooks.d"
        install_hook(
            pod.hooks_dir,
            "--gpu",
            GPU,
            "--store",
            str(base / "store"),
            "--log",
            str(base / "hook.log"),
            "--pull",
            "never",
            "--timeout",
            "20",
            env=QUICK_KEEPER,
        )
        yield Setup(pod, base, busybox, cache_image)
        wait_for_refills(base / "store")  # the spares some starts here asked for


def _inject(s: Setup, **extra: str) -> dict[str, str]:
    return {"cache.triton.image/inject": s.cache_image, **extra}


def _check_tree(host_dir: Path, container_dir: str, expected: dict[str, list[str]], caches_dir):
    """Exactly the expected kernels, complete, byte for byte except group files, whose
    child paths name the container-side directory."""
    names = sorted(p.name for p in host_dir.iterdir() if not p.name.startswith("."))
    assert names == sorted(expected)
    for key, files in expected.items():
        entry = host_dir / key
        assert sorted(p.name for p in entry.iterdir()) == files
        for name in files:
            if name.startswith("__grp__"):
                group = json.loads((entry / name).read_text())
                for child, path in group["child_paths"].items():
                    assert path == f"{container_dir}/{key}/{child}"
                    assert (entry / child).is_file()
            else:
                src = caches_dir / FIXTURE / key / name
                assert (entry / name).read_bytes() == src.read_bytes()


def test_named_volume_gets_exactly_the_compatible_kernels(setup, expected, caches_dir):
    vol = setup.pod.volume()
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", "ls /cache; for f in /cache/*/__grp__*.json; do cat $f; echo; done"],
        annotations=_inject(setup),
        volumes=[f"{vol}:/cache"],
        env={"TRITON_CACHE_DIR": "/cache"},
    )
    assert res.exit_code == 0, res.stderr
    listed = [ln for ln in res.stdout.splitlines() if ln and not ln.startswith("{")]
    assert sorted(listed) == sorted(expected)
    # What the container reads from its group files are its own paths.
    groups = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(groups) == len(expected)
    for group in groups:
        assert all(p.startswith("/cache/") for p in group["child_paths"].values())
    _check_tree(setup.pod.volume_path(vol), "/cache", expected, caches_dir)
    assert "injected" in setup.log_text()


def test_bind_mount_and_annotation_dir(setup, expected, caches_dir, tmp_path):
    host = tmp_path / "bind"
    host.mkdir()
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", "ls /data/triton/kernels"],
        annotations=_inject(setup, **{"cache.triton.image/inject-dir": "/data/triton/kernels"}),
        volumes=[f"{host}:/data"],
    )
    assert res.exit_code == 0, res.stderr
    assert sorted(res.stdout.split()) == sorted(expected)
    _check_tree(host / "triton" / "kernels", "/data/triton/kernels", expected, caches_dir)


def test_rootfs_home_cache_owned_by_the_user(setup, expected):
    script = (
        "cd $HOME/.triton/cache && for k in *; do stat -c '%u:%g %n' $k $k/*; done; "
        "for f in */__grp__*.json; do cat $f; echo; done"
    )
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", script],
        annotations=_inject(setup),
        env={"HOME": "/home/u"},
        user="1234:2345",
    )
    assert res.exit_code == 0, res.stderr
    owners = [ln.split()[0] for ln in res.stdout.splitlines() if ln and not ln.startswith("{")]
    assert owners and set(owners) == {"1234:2345"}
    stats = [ln.split()[1] for ln in res.stdout.splitlines() if ln and not ln.startswith("{")]
    assert sorted(k for k in stats if "/" not in k) == sorted(expected)
    for ln in res.stdout.splitlines():
        if ln.startswith("{"):
            paths = json.loads(ln)["child_paths"].values()
            assert all(p.startswith("/home/u/.triton/cache/") for p in paths)
    # An overlay rootfs is a filesystem of its own: no rename reaches it from the
    # store, so the kernels are copied and no spare is made for it.
    injected = [ln for ln in setup.log_text().splitlines() if f"from {setup.cache_image} (" in ln]
    assert "; copied; " in injected[-1]


def test_user_namespace_maps_the_owner(setup, expected):
    vol = setup.pod.volume()
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", "stat -c '%u:%g' /cache/*"],
        annotations=_inject(setup),
        volumes=[f"{vol}:/cache"],
        env={"TRITON_CACHE_DIR": "/cache"},
        extra=["--uidmap", "0:200000:65536", "--gidmap", "0:300000:65536"],
    )
    assert res.exit_code == 0, res.stderr
    # Inside, the files belong to the container's root; on the host, to its mapped ids.
    assert set(res.stdout.split()) == {"0:0"}
    for key in expected:
        st = (setup.pod.volume_path(vol) / key).stat()
        assert (st.st_uid, st.st_gid) == (200000, 300000)


def test_planted_link_out_of_the_root_writes_nothing_outside(setup, expected):
    hostile = setup.pod.derive(
        setup.busybox,
        f"localhost/tcv-test-hostile:{uuid.uuid4().hex[:8]}",
        "mkdir -p /root && ln -s /etc /root/.triton && ln -s /../../../../tmp /escape",
    )
    marker = Path("/etc/cache")
    assert not marker.exists()
    try:
        res = setup.pod.run(
            hostile,
            ["sh", "-c", "ls /etc/cache"],
            annotations=_inject(setup),
            env={"HOME": "/root"},
        )
        assert res.exit_code == 0, res.stderr
        # The container's ~/.triton/cache is its own /etc/cache: kernels there, none on the host.
        assert sorted(res.stdout.split()) == sorted(expected)
        assert not marker.exists()
        tmp_escape = Path("/tmp/cache")
        existed = tmp_escape.exists()
        res = setup.pod.run(
            hostile,
            ["sh", "-c", "ls /tmp/cache"],
            annotations=_inject(setup, **{"cache.triton.image/inject-dir": "/escape/cache"}),
        )
        assert res.exit_code == 0, res.stderr
        assert sorted(res.stdout.split()) == sorted(expected)
        assert tmp_escape.exists() is existed
    finally:
        shutil.rmtree(marker, ignore_errors=True)
        setup.pod.remove_image(hostile)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        pytest.param("localhost/tcv-test-absent:nope", "is not in local storage", id="absent"),
        # The busybox image is no cache image: its layer is refused as one.
        pytest.param(None, "the layer has a symlink", id="not-a-cache-image"),
    ],
)
def test_fail_open_starts_and_strict_fails(setup, image, reason):
    image = image or setup.busybox
    res = setup.pod.run(
        setup.busybox,
        ["echo", "started"],
        annotations={"cache.triton.image/inject": image},
    )
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == "started"
    line = setup.last_line(image)
    assert reason in line and line.endswith("(fail-open)")
    res = setup.pod.run(
        setup.busybox,
        ["echo", "started"],
        annotations={
            "cache.triton.image/inject": image,
            "cache.triton.image/inject-policy": "strict",
        },
    )
    assert res.exit_code != 0
    assert "started" not in res.stdout
    assert "tcv-hook: container" in res.stderr and reason in res.stderr
    line = setup.last_line(image)
    assert reason in line and line.endswith("failing the start (inject-policy=strict)")


def test_no_annotation_runs_no_injection(setup):
    before = setup.log_text()
    vol = setup.pod.volume()
    res = setup.pod.run(setup.busybox, ["ls", "-A", "/cache"], volumes=[f"{vol}:/cache"])
    assert res.exit_code == 0
    assert res.stdout.strip() == ""
    assert setup.log_text() == before


def test_two_containers_at_once_on_one_volume(setup, expected, caches_dir, tmp_path):
    """Cold store (a fresh one), one volume, two starts at the same time."""
    hooks = tmp_path / "hooks.d"
    install_hook(hooks, "--gpu", GPU, "--store", str(tmp_path / "store"),
                 "--log", str(setup.log), "--pull", "never", env=QUICK_KEEPER)  # fmt: skip
    pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
    vol = setup.pod.volume()
    kw = {
        "annotations": _inject(setup),
        "volumes": [f"{vol}:/cache"],
        "env": {"TRITON_CACHE_DIR": "/cache"},
    }
    first = pod.start(setup.busybox, ["ls", "/cache"], **kw)
    second = pod.start(setup.busybox, ["ls", "/cache"], **kw)
    first.wait()
    second.wait()
    assert first.exit_code == 0 and second.exit_code == 0
    for run in (first, second):
        assert sorted(str(run).split()) == sorted(expected)
    host = setup.pod.volume_path(vol)
    _check_tree(host, "/cache", expected, caches_dir)
    assert not [p for p in host.iterdir() if p.name.startswith("tmp.")]
    images = list((tmp_path / "store" / "images").iterdir())
    assert len(images) == 1
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    wait_for_refills(tmp_path / "store")


def test_time_bound_lets_the_container_start(setup, tmp_path):
    """The store fill waits on a lock held here: only the hook's own bound ends the wait."""
    from tcv.hook.store import digest_dirname, local_digest

    digest = local_digest(setup.cache_image, os.environ)
    assert digest
    store = tmp_path / "store"
    (store / "locks").mkdir(parents=True)
    hooks = tmp_path / "hooks.d"
    install_hook(hooks, "--gpu", GPU, "--store", str(store), "--log", str(setup.log),
                 "--pull", "never", "--timeout", "2", env=QUICK_KEEPER)  # fmt: skip
    pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
    lock = os.open(store / "locks" / f"{digest_dirname(digest)}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = pod.run(setup.busybox, ["echo", "started"], annotations=_inject(setup))
        assert res.exit_code == 0, res.stderr
        assert res.stdout.strip() == "started"
        line = setup.last_line(setup.cache_image)
        assert "gave up after 2s" in line and line.endswith("(fail-open)")
        res = pod.run(
            setup.busybox,
            ["echo", "started"],
            annotations=_inject(setup, **{"cache.triton.image/inject-policy": "strict"}),
        )
        assert res.exit_code != 0
    finally:
        os.close(lock)


def test_cheap_exit_imports_nothing_heavy(tmp_path):
    """A container that asked for nothing costs the hook no driver library, no
    storage access, no subprocess machinery (STYLE #5)."""
    state = json.dumps({"id": "x", "bundle": str(tmp_path), "annotations": {"a": "b"}})
    probe = (
        "import runpy, sys; sys.argv = ['tcv-hook']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'libexec' / 'tcv-hook')!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "heavy = sorted(m for m in ('cffi', 'pyudev', 'plumbum', 'tcv.gpu.discover',\n"
        "    'tcv.hook.store', 'logging') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        input=state,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert out.stdout.strip() == "0 []"


def test_kill_children_stops_what_the_hook_started():
    """At its time bound the hook kills its own children (by pid), so none lives on.
    Run in a process of its own: it must not touch pytest's children."""
    probe = (
        "import os, subprocess, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tcv.hook.main import kill_children\n"
        "child = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        "killed = kill_children()\n"
        "print(killed == [child.pid], os.path.exists(f'/proc/{child.pid}'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "False"]


def test_pull_from_the_registry_only_when_allowed(setup, expected, registry, tmp_path):
    """An image that is not in local storage comes from its registry under
    --pull missing, and not at all under --pull never."""
    remote = registry.ref(f"tcv-test/kernels:{uuid.uuid4().hex[:8]}")
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false",
         f"containers-storage:{setup.cache_image}", f"docker://{remote}"],
        check=True, capture_output=True, env={**os.environ, "CONTAINERS_CONF": str(setup.pod.conf)},
    )  # fmt: skip
    for policy in ("never", "missing"):
        hooks = tmp_path / policy
        install_hook(hooks, "--gpu", GPU, "--store", str(tmp_path / "store"), "--log",
                     str(setup.log), "--pull", policy, "--tls-verify", "false",
                     env=QUICK_KEEPER)  # fmt: skip
        pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
        res = pod.run(
            setup.busybox,
            ["sh", "-c", "ls /tc 2>/dev/null; true"],
            annotations={"cache.triton.image/inject": remote},
            env={"TRITON_CACHE_DIR": "/tc"},
        )
        assert res.exit_code == 0, res.stderr
        line = setup.last_line(remote) if policy == "never" else setup.log_text().splitlines()[-1]
        if policy == "never":
            assert res.stdout.split() == []
            assert "is not in local storage" in line and line.endswith("(fail-open)")
        else:
            assert sorted(res.stdout.split()) == sorted(expected)
            assert f"from {remote} (" in line and "store filled" in line
    assert any("/blobs/" in uri for uri in registry.blob_requests())


def _spare_setup(setup: Setup, tmp_path: Path) -> tuple[Podman, Path, Path]:
    store, log = tmp_path / "store", tmp_path / "hook.log"
    hooks = tmp_path / "hooks.d"
    install_hook(hooks, "--gpu", GPU, "--store", str(store), "--log", str(log),
                 "--pull", "never", env=QUICK_KEEPER)  # fmt: skip
    return Podman(conf=setup.pod.conf, hooks_dir=hooks), store, log


def _spare_dirs(store: Path, prefix: str) -> list[Path]:
    return sorted((store / "spares").glob(f"*/{prefix}*"))


def test_second_start_on_a_volume_is_served_from_a_spare(setup, expected, caches_dir, tmp_path):
    """First use copies and starts a refill; the next start on another volume moves
    the refill's private, pre-rendered copies in: exactly the compatible kernels,
    group files naming the container's path, files of the container's user."""
    pod, store, log = _spare_setup(setup, tmp_path)
    kw = {
        "annotations": _inject(setup),
        "env": {"TRITON_CACHE_DIR": "/cache"},
        "user": "1234:2345",
    }
    first, second = setup.pod.volume(), setup.pod.volume()
    res = pod.run(setup.busybox, ["true"], volumes=[f"{first}:/cache"], **kw)
    assert res.exit_code == 0, res.stderr
    assert "store filled; copied; " in log.read_text().splitlines()[-1]
    wait_for_refills(store)
    assert len(_spare_dirs(store, "ready-")) == 2

    res = pod.run(
        setup.busybox,
        ["sh", "-c", "stat -c '%u:%g %n' /cache/* /cache/*/*"],
        volumes=[f"{second}:/cache"],
        **kw,
    )
    assert res.exit_code == 0, res.stderr
    line = log.read_text().splitlines()[-1]
    assert f"injected {len(expected)} kernel(s)" in line and "store warm; from a spare; " in line
    host = setup.pod.volume_path(second)
    _check_tree(host, "/cache", expected, caches_dir)
    # Inside, every kernel directory and file belongs to the container's user...
    owners = {ln.split()[0] for ln in res.stdout.splitlines() if "/cache/." not in ln}
    assert owners == {"1234:2345"}
    # ...and on the host they are private copies, not the store's files.
    stored = {os.stat(p).st_ino for p in (store / "images").rglob("*") if p.is_file()}
    for p in host.rglob("*"):
        if p.name != ".tcv.lock":
            assert (p.stat().st_uid, p.stat().st_gid) == (1234, 2345)
            assert p.stat().st_ino not in stored
    wait_for_refills(store)
    assert len(_spare_dirs(store, "ready-")) == 2  # refilled behind the start
    for leftover in ("claimed-", "building-", "trash-"):
        assert _spare_dirs(store, leftover) == []


def test_refill_outlives_the_start_holding_nothing_of_the_hook(setup, expected, tmp_path):
    """The refill is detached: with its tuple's refill lock held here, it cannot
    finish, yet podman returns; the refill is then alive in a session of its own,
    with /dev/null for stdin/stdout/stderr and no pipe that runc would wait on."""
    from tcv.hook.spare import LOCK_FILE, spare_key
    from tcv.hook.store import local_digest

    pod, store, log = _spare_setup(setup, tmp_path)
    digest = local_digest(setup.cache_image, os.environ)
    assert digest
    tuple_dir = store / "spares" / spare_key(digest, expected, "/cache", (0, 0))
    tuple_dir.mkdir(parents=True)
    lock = os.open(tuple_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        vol = setup.pod.volume()
        res = pod.run(
            setup.busybox,
            ["ls", "/cache"],
            annotations=_inject(setup),
            volumes=[f"{vol}:/cache"],
            env={"TRITON_CACHE_DIR": "/cache"},
        )
        assert res.exit_code == 0, res.stderr
        assert sorted(res.stdout.split()) == sorted(expected)
        pids = refill_pids(store)
        assert len(pids) == 1, "the refill must still be waiting for the lock held here"
        pid = pids[0]
        assert os.getsid(pid) == pid != os.getsid(0)
        fds = {n: os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
        assert [fds[n] for n in ("0", "1", "2")] == ["/dev/null"] * 3
        assert not [t for t in fds.values() if t.startswith(("pipe:", "socket:"))], fds
        assert _spare_dirs(store, "ready-") == []
    finally:
        os.close(lock)
    wait_for_refills(store)
    assert len(_spare_dirs(store, "ready-")) == 2
    assert "refill failed" not in log.read_text()


def test_spares_are_private_to_their_owner_and_path(setup, expected, tmp_path):
    """A spare made for one user and path is never given to another: different
    tuples, each with its own spares."""
    pod, store, log = _spare_setup(setup, tmp_path)
    for user, path in (("0:0", "/cache"), ("1000:1000", "/cache"), ("0:0", "/c2")):
        vol = setup.pod.volume()
        res = pod.run(
            setup.busybox,
            ["true"],
            annotations=_inject(setup),
            volumes=[f"{vol}:{path}"],
            env={"TRITON_CACHE_DIR": path},
            user=user,
        )
        assert res.exit_code == 0, res.stderr
        assert "; copied; " in log.read_text().splitlines()[-1]
        wait_for_refills(store)
    tuples = sorted(p for p in (store / "spares").iterdir() if p.is_dir())
    assert len(tuples) == 3
    for t in tuples:
        spec = json.loads((t / "spare.json").read_text())
        assert spec["keys"] == sorted(expected)
        for ready in t.glob("ready-*"):
            for key in spec["keys"]:
                st = (ready / key).stat()
                assert [st.st_uid, st.st_gid] == spec["owner"]
                assert stat.S_IMODE(st.st_mode) == 0o755


def test_later_starts_ask_the_running_keeper(setup, expected, tmp_path):
    """The refill process stays a while when idle and serves later starts through
    its FIFO: they start no process, so conmon has none to wait for."""
    store, log, hooks = tmp_path / "store", tmp_path / "hook.log", tmp_path / "hooks.d"
    install_hook(hooks, "--gpu", GPU, "--store", str(store), "--log", str(log),
                 "--pull", "never", env={**QUICK_KEEPER, "TCV_HOOK_KEEPER_IDLE": "2"})  # fmt: skip
    pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
    (store / "spares").mkdir(parents=True)
    fifo = store / "spares" / "keeper.fifo"
    os.mkfifo(fifo, 0o600)  # made here so that this test can wait on it below
    kw = {"annotations": _inject(setup), "env": {"TRITON_CACHE_DIR": "/cache"}}
    res = pod.run(setup.busybox, ["true"], volumes=[f"{setup.pod.volume()}:/cache"], **kw)
    assert res.exit_code == 0, res.stderr
    started = re.search(r"spare refill by a new keeper, pid (\d+)", log.read_text())
    assert started, log.read_text()
    keeper = int(started.group(1))
    # Opening a FIFO for writing returns once a reader has it open: the keeper listens.
    opener = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_WRONLY)), daemon=True)
    opener.start()
    opener.join(60)
    assert not opener.is_alive(), "the keeper never opened its FIFO"
    res = pod.run(setup.busybox, ["ls", "/cache"], volumes=[f"{setup.pod.volume()}:/cache"], **kw)
    assert res.exit_code == 0, res.stderr
    assert sorted(res.stdout.split()) == sorted(expected)
    assert "spare refill asked of the running keeper" in log.read_text().splitlines()[-1]
    assert refill_pids(store) == [keeper]
    wait_for_refills(store)  # it leaves after 2 s without requests
    assert len(_spare_dirs(store, "ready-")) == 2
    assert not fifo.exists()
    assert "refill failed" not in log.read_text()
