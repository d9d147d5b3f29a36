"""The runtime hook end to end: real podman + runc run ``libexec/tcv-hook`` from the
hooks.d JSON that ``tcv hook install`` wrote, for containers of a busybox image
made here, mounting kernels from cache images made by ``tcv -c`` (docs/spec.md §7): the
fixture cache, and a cache of 500+ kernels made from it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.podman import (
    REPO,
    Podman,
    hook_pids,
    install_hook,
    make_big_cache,
    podman_session,
    tree_digest,
)

pytestmark = pytest.mark.e2e

FIXTURE = "triton-3.9"
GPU = "cuda:90"
BIG = 500
# Lists the cache: "K <key>" per kernel, "O <uid:gid> <path>" per entry, each group
# file's JSON, and "M <path>" per group child path that does not exist.
LIST = (
    'cd "$1" && for k in *; do echo "K $k"; done; stat -c "O %u:%g %n" * */*; '
    'for f in */__grp__*.json; do cat "$f"; echo; done; '
    "for p in $(cat */__grp__*.json | tr ',{}' '\\n\\n\\n' | sed -n 's/.*: *\"\\(.*\\)\"/\\1/p'); "
    'do [ -e "$p" ] || echo "M $p"; done'
)


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
        self.big_image = ""
        self.big_keys: list[str] = []
        self.log = base / "hook.log"
        self.store = base / "store"

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def last_line(self, image: str) -> str:
        lines = [ln for ln in self.log_text().splitlines() if f"inject {image}:" in ln]
        assert lines, f"no log line for {image}"
        return lines[-1]

    def start_lines(self, image: str) -> list[str]:
        return [ln for ln in self.log_text().splitlines() if f": {image} (sha256:" in ln]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, caches_dir) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("hook-e2e")
    tag = uuid.uuid4().hex[:8]
    with podman_session(base) as pod:
        busybox = pod.make_busybox(f"localhost/tcv-test-busybox:{tag}")
        cache_image = pod.make_cache_image(caches_dir / FIXTURE, f"localhost/tcv-test-cache:{tag}")
        s = Setup(pod, base, busybox, cache_image)
        s.big_keys = make_big_cache(caches_dir / FIXTURE, base / "big", BIG, _index(caches_dir))
        s.big_image = pod.make_cache_image(base / "big", f"localhost/tcv-test-big:{tag}")
        pod.hooks_dir = base / "hooks.d"
        install_hook(
            pod.hooks_dir,
            "--gpu",
            GPU,
            "--store",
            str(s.store),
            "--log",
            str(s.log),
            "--pull",
            "never",
            "--timeout",
            "20",
        )
        yield s


def _inject(s: Setup, image: str | None = None, **extra: str) -> dict[str, str]:
    return {"cache.triton.image/inject": image or s.cache_image, **extra}


def _listing(out: str) -> tuple[list[str], set[str], list[dict], list[str]]:
    keys = sorted(ln[2:] for ln in out.splitlines() if ln.startswith("K "))
    owners = {ln.split()[1] for ln in out.splitlines() if ln.startswith("O ")}
    groups = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    missing = [ln[2:] for ln in out.splitlines() if ln.startswith("M ")]
    return keys, owners, groups, missing


def _views(s: Setup) -> list[Path]:
    d = s.store / "views"
    return sorted(d.iterdir()) if d.exists() else []


def _view_for(s: Setup, path: str, owner: tuple[int, int] = (0, 0)) -> Path:
    found = [
        v
        for v in _views(s)
        if (doc := json.loads((v / "view.json").read_text()))["container_path"] == path
        and tuple(doc["owner"]) == owner
        and doc["kernels"] == len(s.big_keys)
    ]
    assert len(found) == 1, found
    return found[0] / "tree"


def _containers(s: Setup) -> list[str]:
    d = s.store / "containers"
    return sorted(os.listdir(d)) if d.exists() else []


def _check(out: str, keys: list[str], owner: str, path: str) -> None:
    got, owners, groups, missing = _listing(out)
    assert got == keys
    assert owners == {owner}
    assert groups and all(
        p.startswith(f"{path}/") for g in groups for p in g["child_paths"].values()
    )
    assert missing == []


def test_rootfs_default_mounts_exactly_the_fitting_kernels(setup):
    """The cache in the container's own rootfs, the most common case: the big image's
    fitting kernels, owned by root, group paths at the container path; a kernel the
    container writes is its own (gone after --rm) and the view is unchanged."""
    res = setup.pod.run(
        setup.busybox,
        [
            "sh",
            "-c",
            LIST + "; mkdir $1/NEWKERNEL && echo x > $1/NEWKERNEL/k.cubin",
            "-",
            "/root/.triton/cache",
        ],
        annotations=_inject(setup, setup.big_image),
        env={"HOME": "/root"},
    )
    assert res.exit_code == 0, res.stderr
    _check(res.stdout, setup.big_keys, "0:0", "/root/.triton/cache")
    line = setup.start_lines(setup.big_image)[-1]
    assert "delivery mounted" in line and f"{len(setup.big_keys)} kernel(s)" in line
    tree = _view_for(setup, "/root/.triton/cache")
    before = tree_digest(tree)
    again = setup.pod.run(
        setup.busybox,
        ["sh", "-c", "ls /root/.triton/cache"],
        annotations=_inject(setup, setup.big_image),
        env={"HOME": "/root"},
    )
    assert "NEWKERNEL" not in again.stdout.split()
    assert sorted(again.stdout.split()) == setup.big_keys
    assert tree_digest(tree) == before
    assert not (tree / "NEWKERNEL").exists()
    assert "view reused" in setup.start_lines(setup.big_image)[-1]
    assert _containers(setup) == []


def test_root_container_changes_only_its_own_copy(setup):
    key = setup.big_keys[0]
    tree = _view_for(setup, "/root/.triton/cache")
    before = tree_digest(tree)
    script = (
        f"cd /root/.triton/cache/{key} && for f in *; do echo tampered > $f; done; "
        "chmod 777 . && rm -rf ../* && ls .. | wc -l"
    )
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", script],
        annotations=_inject(setup, setup.big_image),
        env={"HOME": "/root"},
    )
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split() == ["0"]  # its own view of the cache is empty now
    assert tree_digest(tree) == before
    after = setup.pod.run(
        setup.busybox,
        ["sh", "-c", f"grep -c tampered /root/.triton/cache/{key}/* | grep -v ':0$'; true"],
        annotations=_inject(setup, setup.big_image),
        env={"HOME": "/root"},
    )
    assert after.exit_code == 0 and after.stdout.split() == []


def test_user_read_only_and_image_cache_dir(setup):
    """--user, --read-only, and the image's TRITON_CACHE_DIR: owned by the user, and
    the cache stays writable."""
    img = setup.pod.derive(
        setup.busybox,
        f"localhost/tcv-test-envdir:{uuid.uuid4().hex[:8]}",
        "mkdir -p /opt/tc && echo image-own > /opt/tc/README",
    )
    try:
        res = setup.pod.run(
            img,
            [
                "sh",
                "-c",
                LIST + "; cat $1/../tc/README; mkdir $1/NEW && echo writable",
                "-",
                "/opt/tc",
            ],
            annotations=_inject(setup, setup.big_image),
            env={"TRITON_CACHE_DIR": "/opt/tc"},
            user="1234:2345",
            extra=["--read-only"],
        )
        assert res.exit_code == 0, res.stderr
        got, _, groups, missing = _listing(res.stdout)
        # The image's own file in the cache directory stays visible under the kernels.
        assert got == sorted([*setup.big_keys, "README"])
        owners = {
            ln.split()[1]
            for ln in res.stdout.splitlines()
            if ln.startswith("O ") and not ln.endswith("README")
        }
        assert owners == {"1234:2345"} and missing == [] and groups
        assert "image-own" in res.stdout and "writable" in res.stdout
    finally:
        setup.pod.remove_image(img)


def test_fresh_volume_gets_the_kernels_and_keeps_what_triton_writes(setup):
    vol = setup.pod.volume()
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", LIST + "; mkdir $1/NEWKERNEL && echo x > $1/NEWKERNEL/k.cubin", "-", "/cache"],
        annotations=_inject(setup, setup.big_image),
        volumes=[f"{vol}:/cache"],
        env={"TRITON_CACHE_DIR": "/cache"},
    )
    assert res.exit_code == 0, res.stderr
    _check(res.stdout, setup.big_keys, "0:0", "/cache")
    host = setup.pod.volume_path(vol)
    # What the container wrote is in the volume; the injected kernels are not copied.
    assert sorted(os.listdir(host)) == ["NEWKERNEL"]
    assert (host / "NEWKERNEL" / "k.cubin").read_text() == "x\n"
    again = setup.pod.run(
        setup.busybox,
        ["ls", "/cache"],
        annotations=_inject(setup, setup.big_image),
        volumes=[f"{vol}:/cache"],
        env={"TRITON_CACHE_DIR": "/cache"},
    )
    assert sorted(again.stdout.split()) == sorted([*setup.big_keys, "NEWKERNEL"])
    assert _containers(setup) == []


def test_kept_volume_that_holds_the_kernels_is_left_alone(setup, expected, caches_dir):
    vol = setup.pod.volume()
    host = setup.pod.volume_path(vol)
    for key in expected:
        shutil.copytree(caches_dir / FIXTURE / key, host / key)
    res = setup.pod.run(
        setup.busybox,
        ["ls", "/cache"],
        annotations=_inject(setup),
        volumes=[f"{vol}:/cache"],
        env={"TRITON_CACHE_DIR": "/cache"},
    )
    assert res.exit_code == 0, res.stderr
    assert sorted(res.stdout.split()) == sorted(expected)
    assert "delivery present" in setup.start_lines(setup.cache_image)[-1]


def test_bind_mount_and_annotation_dir(setup, expected, tmp_path):
    host = tmp_path / "bind"
    host.mkdir()
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", "ls /data/triton/kernels; mkdir /data/triton/kernels/NEW"],
        annotations=_inject(setup, **{"cache.triton.image/inject-dir": "/data/triton/kernels"}),
        volumes=[f"{host}:/data"],
    )
    assert res.exit_code == 0, res.stderr
    assert sorted(res.stdout.split()) == sorted(expected)
    assert sorted(os.listdir(host / "triton" / "kernels")) == ["NEW"]


@pytest.mark.parametrize(
    ("env", "path"),
    [
        pytest.param({"TORCHINDUCTOR_CACHE_DIR": "/ind"}, "/ind/triton/0", id="inductor-dir"),
        pytest.param({"USER": "app"}, "/tmp/torchinductor_app/triton/0", id="default-dir"),
    ],
)
def test_inject_for_inductor_serves_inductors_device_0_directory(setup, expected, env, path):
    """TRITON_CACHE_DIR unset: Inductor reads cache_dir()/triton/<device>; the
    annotation makes the hook serve device 0's directory there."""
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", LIST, "-", path],
        annotations=_inject(setup, **{"cache.triton.image/inject-for": "inductor"}),
        env={"HOME": "/root", **env},
    )
    assert res.exit_code == 0, res.stderr
    _check(res.stdout, sorted(expected), "0:0", path)
    assert f") at {path} " in setup.log_text()


def test_user_namespace_maps_the_owner(setup, expected):
    res = setup.pod.run(
        setup.busybox,
        ["sh", "-c", "stat -c '%u:%g' /cache/*"],
        annotations=_inject(setup),
        env={"TRITON_CACHE_DIR": "/cache"},
        extra=["--uidmap", "0:200000:65536", "--gidmap", "0:300000:65536"],
    )
    assert res.exit_code == 0, res.stderr
    assert res.stdout.split() == ["0:0"] * len(expected)


def test_twenty_concurrent_starts_render_once(setup, tmp_path):
    hooks = tmp_path / "hooks.d"
    store = tmp_path / "store"
    install_hook(
        hooks,
        "--gpu",
        GPU,
        "--store",
        str(store),
        "--log",
        str(setup.log),
        "--pull",
        "never",
        "--timeout",
        "20",
    )
    pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
    runs = [
        pod.start(
            setup.busybox,
            ["sh", "-c", "ls /c | wc -l"],
            annotations=_inject(setup, setup.big_image, **{"cache.triton.image/inject-dir": "/c"}),
        )
        for _ in range(20)
    ]
    for r in runs:
        r.wait()
    assert [str(r).split() for r in runs] == [[str(len(setup.big_keys))]] * 20
    assert len(os.listdir(store / "views")) == 1
    assert len(os.listdir(store / "images")) == 1
    log = setup.log_text()
    assert "gave up" not in log
    lines = [ln for ln in log.splitlines() if f": {setup.big_image} (" in ln and " at /c " in ln]
    rendered = [ln for ln in lines if "view rendered" in ln]
    assert len(rendered) == 1 and sum("delivery mounted" in ln for ln in lines) >= 20
    assert os.listdir(store / "containers") == []
    assert os.listdir(store / "tmp") == []


def test_thirty_starts_leave_one_view_and_no_process(setup, tmp_path):
    hooks = tmp_path / "hooks.d"
    store = tmp_path / "store"
    install_hook(
        hooks, "--gpu", GPU, "--store", str(store), "--log", str(setup.log), "--pull", "never"
    )
    pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
    for i in range(30):
        res = pod.run(
            setup.busybox,
            ["sh", "-c", f"mkdir /c/new{i} && ls /c | wc -l"],
            annotations=_inject(setup, **{"cache.triton.image/inject-dir": "/c"}),
        )
        assert res.exit_code == 0, res.stderr
    assert len(os.listdir(store / "views")) == 1
    assert os.listdir(store / "containers") == []
    assert hook_pids(store) == []


def test_planted_triton_3_3_gets_no_3_9_kernels(setup, expected):
    site = "/usr/lib/python3.11/site-packages"
    tag = uuid.uuid4().hex[:8]
    images = {}
    for version in ("3.3.0", "3.9.0"):
        images[version] = setup.pod.derive(
            setup.busybox,
            f"localhost/tcv-test-triton{version[2]}:{tag}",
            f"mkdir -p {site}/triton-{version}.dist-info && printf "
            f"'Metadata-Version: 2.1\\nName: triton\\nVersion: {version}\\n\\nbody' "
            f"> {site}/triton-{version}.dist-info/METADATA",
        )
    try:
        old = setup.pod.run(
            images["3.3.0"],
            ["sh", "-c", "ls /c 2>/dev/null; true"],
            annotations=_inject(setup, **{"cache.triton.image/inject-dir": "/c"}),
        )
        assert old.exit_code == 0, old.stderr
        assert old.stdout.split() == []
        line = setup.start_lines(setup.cache_image)[-1]
        assert f"{len(expected)} never hit by Triton 3.3.0" in line
        assert "the consuming Triton is 3.3.0: it will never be hit" in line
        new = setup.pod.run(
            images["3.9.0"],
            ["ls", "/c"],
            annotations=_inject(setup, **{"cache.triton.image/inject-dir": "/c"}),
        )
        assert sorted(new.stdout.split()) == sorted(expected)
        assert "0 never hit by Triton 3.9.0" in setup.start_lines(setup.cache_image)[-1]
    finally:
        for img in images.values():
            setup.pod.remove_image(img)


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
                 "--log", str(setup.log), "--pull", "never")  # fmt: skip
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
    assert os.listdir(host) == []  # mounted, not copied
    images = list((tmp_path / "store" / "images").iterdir())
    assert len(images) == 1
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    assert list((tmp_path / "store" / "views").iterdir())


def test_time_bound_lets_the_container_start(setup, tmp_path):
    """The store fill waits on a lock held here: only the hook's own bound ends the wait."""
    from tcv.hook.store import digest_dirname, local_digest

    digest = local_digest(setup.cache_image, os.environ)
    assert digest
    store = tmp_path / "store"
    (store / "locks").mkdir(parents=True)
    hooks = tmp_path / "hooks.d"
    install_hook(hooks, "--gpu", GPU, "--store", str(store), "--log", str(setup.log),
                 "--pull", "never", "--timeout", "2")  # fmt: skip
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
        "from tcv.hook.timebound import kill_children\n"
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
                     str(setup.log), "--pull", policy, "--tls-verify", "false")  # fmt: skip
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
            assert f"{remote} (" in line and "store filled" in line
    assert any("/blobs/" in uri for uri in registry.blob_requests())


def test_store_cap_keeps_the_view_in_use_and_drops_the_rest(setup, expected, tmp_path):
    """A 1-byte cap: each start keeps only the view its own container mounts."""
    hooks = tmp_path / "hooks.d"
    store = tmp_path / "store"
    install_hook(hooks, "--gpu", GPU, "--store", str(store), "--log", str(setup.log),
                 "--pull", "never", "--store-max-size", "1")  # fmt: skip
    pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
    for path in ("/c1", "/c2"):
        res = pod.run(
            setup.busybox, ["ls", path],
            annotations=_inject(setup, **{"cache.triton.image/inject-dir": path}),
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        assert sorted(res.stdout.split()) == sorted(expected)
        views = [json.loads((v / "view.json").read_text()) for v in (store / "views").iterdir()]
        # The view of this start was in use when the cap was enforced: kept; the other gone.
        assert [v["container_path"] for v in views] == [path]
    assert "store over 1: removed" in setup.log_text()


def test_a_reject_policy_fails_a_strict_start_in_one_line(setup, tmp_path):
    """The hook honours the signature policy for containers-storage: sources too:
    a scope that rejects the cache image fails a strict start with one line, and
    a default start goes on without kernels."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"containers-storage": {"": [{"type": "reject"}]}},
    }))  # fmt: skip
    hooks = tmp_path / "hooks.d"
    install_hook(hooks, "--gpu", GPU, "--store", str(tmp_path / "store"), "--log",
                 str(setup.log), "--pull", "never", "--signature-policy", str(policy))  # fmt: skip
    pod = Podman(conf=setup.pod.conf, hooks_dir=hooks)
    strict = {**_inject(setup), "cache.triton.image/inject-policy": "strict"}
    res = pod.run(setup.busybox, ["echo", "started"], annotations=strict)
    assert res.exit_code != 0 and "started" not in res.stdout
    hook_lines = [ln for ln in res.stderr.splitlines() if "tcv-hook:" in ln]
    assert len(hook_lines) == 1 and "rejects" in hook_lines[0], res.stderr
    res = pod.run(setup.busybox, ["sh", "-c", "ls /tc 2>/dev/null; echo started"],
                  annotations=_inject(setup), env={"TRITON_CACHE_DIR": "/tc"})  # fmt: skip
    assert res.exit_code == 0 and res.stdout.split() == ["started"], res.stderr
    assert setup.last_line(setup.cache_image).endswith("(fail-open)")
