"""The hook's store: which image a reference names, and reading stored images."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tcv.cache.kernel import FileInfo, KernelEntry
from tcv.hook import settings
from tcv.hook import store as st
from tcv.hook.state import HookError
from tcv.image.manifest import build_manifest
from tcv.tools.registry import RegistryOptions

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
INDEX = [
    {"id": "a", "digest": D1, "names": ["localhost/kernels:1", "localhost/kernels:latest"]},
    {"id": "b", "digest": D2, "digests": [D2], "names": ["quay.io/org/kernels:2"]},
    {"id": "c", "digest": "sha256:" + "3" * 64, "names": ["docker.io/library/plain:latest"]},
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("localhost/kernels", ["localhost/kernels:latest"], id="localhost-untagged"),
        pytest.param("quay.io/o/k:2", ["quay.io/o/k:2"], id="qualified"),
        pytest.param("127.0.0.1:5000/k", ["127.0.0.1:5000/k:latest"], id="port-domain"),
        pytest.param("org/k:1", ["localhost/org/k:1", "docker.io/org/k:1"], id="short-two-part"),
        pytest.param("k", ["localhost/k:latest", "docker.io/library/k:latest"], id="short"),
        pytest.param("quay.io/o/k@" + D1, ["quay.io/o/k@" + D1], id="digest"),
    ],
)
def test_name_candidates(name, expected):
    assert st.name_candidates(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("localhost/kernels:1", D1, id="tagged"),
        pytest.param("localhost/kernels", D1, id="latest"),
        pytest.param("kernels", D1, id="short-name-localhost"),
        pytest.param("plain", "sha256:" + "3" * 64, id="short-name-docker-library"),
        pytest.param("quay.io/org/kernels:2", D2, id="registry-name"),
        pytest.param("quay.io/org/kernels@" + D2, D2, id="by-digest"),
        pytest.param("quay.io/org/kernels:3", None, id="other-tag"),
        pytest.param("x@" + D1, D1, id="digest-from-digest-field"),
    ],
)
def test_find_in_index(name, expected):
    assert st.find_in_index(INDEX, name) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        pytest.param(
            "containers-storage:localhost/k", ("containers-storage:", "localhost/k"), id="storage"
        ),
        pytest.param("docker://q.io/k:1", ("docker://", "q.io/k:1"), id="docker"),
        pytest.param("oci-archive:/a.tar", ("oci-archive:", "/a.tar"), id="oci-archive"),
        pytest.param("oci:/d:t", ("oci:", "/d:t"), id="oci"),
        pytest.param("q.io/k:1", ("", "q.io/k:1"), id="bare"),
    ],
)
def test_split_transport(ref, expected):
    assert st.split_transport(ref) == expected


def test_digest_dirname():
    assert st.digest_dirname(D1) == "sha256-" + "1" * 64
    with pytest.raises(HookError, match="bad image digest"):
        st.digest_dirname("sha256:../../x")


@pytest.mark.parametrize(
    ("env", "euid", "expected"),
    [
        pytest.param({"TCV_STORE": "/s"}, 0, "/s", id="env-wins"),
        pytest.param({"XDG_DATA_HOME": "/xdg"}, 1000, "/xdg/tcv/store", id="rootless-xdg"),
        pytest.param({"HOME": "/home/u"}, 1000, "/home/u/.local/share/tcv/store", id="rootless"),
    ],
)
def test_default_root(env, euid, expected):
    assert str(settings.default_root(env, euid=euid)) == expected


def test_default_root_for_root_outside_a_user_namespace():
    if settings.in_user_namespace():  # the CI runs as real root; say so if it does not
        pytest.fail("tests must run as root outside a user namespace")
    assert str(settings.default_root({}, euid=0)) == settings.ROOT_STORE


@pytest.fixture
def storage(tmp_path):
    graph = tmp_path / "graph"
    (graph / "vfs-images").mkdir(parents=True)
    (graph / "vfs-images" / "images.json").write_text(json.dumps(INDEX))
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{graph}"\n')
    return {"CONTAINERS_STORAGE_CONF": str(conf)}


def test_local_digest_reads_the_storage_index(storage):
    assert st.local_digest("localhost/kernels:1", storage) == D1
    assert st.local_digest("localhost/absent", storage) is None


def test_local_digest_without_storage(tmp_path):
    env = {"CONTAINERS_STORAGE_CONF": str(tmp_path / "none.conf")}
    # Falls back to the default graphroot; an unknown name is simply not found.
    assert st.local_digest("localhost/tcv-no-such-image-anywhere", env) is None


def test_resolve_local_needs_no_subprocess(storage):
    got = st.resolve("localhost/kernels:1", storage, RegistryOptions(), pull=False, timeout=5)
    assert got == st.Resolved("containers-storage:localhost/kernels:1", D1, local=True)


def test_resolve_absent_and_no_pull_says_what_to_do(storage, fp):
    fp.register([fp.program("skopeo"), "inspect", "--raw", fp.any()], returncode=1,
                stderr="identifier is not an image")  # fmt: skip
    with pytest.raises(HookError) as info:
        st.resolve("q.io/o/absent:1", storage, RegistryOptions(), pull=False, timeout=5)
    assert info.value.line() == (
        "the cache image q.io/o/absent:1 is not in local storage — pull it first "
        "(podman pull q.io/o/absent:1) or install the hook with --pull missing"
    )


def test_resolve_pulls_only_when_allowed(storage, fp):
    raw = b'{"schemaVersion": 2}'
    fp.register(
        [fp.program("skopeo"), "inspect", "--raw", "containers-storage:q.io/o/k:1"], returncode=1
    )
    fp.register(
        [fp.program("skopeo"), "inspect", "--raw", "--tls-verify=false", "docker://q.io/o/k:1"],
        stdout=raw.decode(),
    )
    got = st.resolve("q.io/o/k:1", storage, RegistryOptions(tls_verify=False), pull=True, timeout=5)
    assert got == st.Resolved(
        "docker://q.io/o/k:1", "sha256:" + hashlib.sha256(raw).hexdigest(), local=False
    )


def test_resolve_storage_transport_never_pulls(storage, fp):
    fp.register([fp.program("skopeo"), "inspect", "--raw", fp.any()], returncode=1)
    with pytest.raises(HookError, match="not in local storage"):
        st.resolve("containers-storage:q.io/x", storage, RegistryOptions(), pull=True, timeout=5)
    assert fp.call_count([fp.program("skopeo"), "inspect", "--raw", fp.any()]) == 1


def _entry(key: str) -> KernelEntry:
    return KernelEntry(key=key, name="k", backend="cuda", arch="90", warp_size=32,
                       files={"k.json": FileInfo(2, "0" * 64)})  # fmt: skip


def test_store_get_reads_a_filled_image(tmp_path):
    store = st.Store(tmp_path)
    path = tmp_path / "images" / st.digest_dirname(D1)
    (path / "io.triton.cache" / "K1").mkdir(parents=True)
    record = {"image": "containers-storage:localhost/k", "cache": "io.triton.cache",
              "labels": {"a": "b"}, "manifest": build_manifest([_entry("K1")], "/src")}  # fmt: skip
    (path / "store.json").write_text(json.dumps(record))
    got = store.get(D1)
    assert got is not None
    assert got.cache_root == path / "io.triton.cache"
    assert [e.key for e in got.entries] == ["K1"]
    assert got.labels == {"a": "b"}
    assert store.get(D2) is None


def test_store_get_damaged_record(tmp_path):
    path = tmp_path / "images" / st.digest_dirname(D1)
    path.mkdir(parents=True)
    (path / "store.json").write_text("{half")
    with pytest.raises(HookError, match="damaged"):
        st.Store(tmp_path).get(D1)


@pytest.mark.parametrize(
    ("user_conf", "system_conf", "expected"),
    [
        pytest.param(None, None, "{home}/.local/share/containers/storage", id="defaults"),
        pytest.param('[storage]\ndriver = "vfs"\ngraphroot = "/u/g"\n', None, "/u/g",
                     id="user-conf"),
        pytest.param(None, '[storage]\ndriver = "vfs"\ngraphroot = "/sys/g"\n'
                     'rootless_storage_path = "/r/g"\n', "/r/g", id="system-rootless-path"),
    ],
)  # fmt: skip
def test_storage_index_rootless(tmp_path, user_conf, system_conf, expected):
    home = tmp_path / "home"
    (home / ".config" / "containers").mkdir(parents=True)
    if user_conf:
        (home / ".config" / "containers" / "storage.conf").write_text(user_conf)
    system = tmp_path / "system.conf"
    if system_conf:
        system.write_text(system_conf)
    env = {"HOME": str(home), "_CONTAINERS_USERNS_CONFIGURED": "done"}
    if system_conf:
        env["CONTAINERS_STORAGE_CONF"] = str(system)
    paths = st.storage_index_paths(env)
    assert paths[0].parent.parent == Path(expected.format(home=home))
    if user_conf or system_conf:
        assert [p.parent.name for p in paths] == ["vfs-images"]


def test_sweep_removes_only_stale_fills(tmp_path):
    store = st.Store(tmp_path)
    (tmp_path / "tmp" / "fill-old" / "x").mkdir(parents=True)
    (tmp_path / "tmp" / "fill-new").mkdir()
    os.utime(tmp_path / "tmp" / "fill-old", (1, 1))
    assert store.sweep() == ["fill-old"]
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["fill-new"]


def test_sweep_without_a_store(tmp_path):
    assert st.Store(tmp_path / "none").sweep() == []


# --- verdicts ------------------------------------------------------------------------------


def _host(*gpus, driver=None):
    from tcv.gpu.model import Gpu, HostGpus

    return HostGpus(
        gpus=tuple(Gpu(i, b, a, w) for i, (b, a, w) in enumerate(gpus)), cuda_driver=driver
    )


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(_host(("cuda", "80", 32)), id="arch"),
        pytest.param(_host(("cuda", "90", 32), ("cuda", "90", 32)), id="more-gpus"),
        pytest.param(_host(("hip", "gfx942", 64)), id="backend"),
        pytest.param(_host(("cuda", "90", 32), driver=(12, 4)), id="driver"),
    ],
)
def test_verdict_key_follows_what_the_rules_read(other):
    base = _host(("cuda", "90", 32))
    assert st.verdict_key(base) == st.verdict_key(_host(("cuda", "90", 32)))
    assert st.verdict_key(base) != st.verdict_key(other)


def test_verdict_kept_and_read_back(tmp_path):
    store = st.Store(tmp_path)
    image = tmp_path / "images" / st.digest_dirname(D1)
    (image / "cache").mkdir(parents=True)
    stored = st.StoredImage(D1, "x", image, image / "cache", (), {})
    host = _host(("cuda", "90", 32))
    assert store.verdict(D1, host) is None
    kept = store.keep_verdict(stored, host, ["A", "B"], [("C", "is hip")])
    assert store.verdict(D1, host) == kept
    assert kept.compatible == ("A", "B") and kept.incompatible == (("C", "is hip"),)
    assert kept.cache_root == image / "cache"
    assert store.verdict(D1, _host(("cuda", "80", 32))) is None
    # A damaged verdict is judged again, not an error.
    (path,) = (image / st.VERDICTS).iterdir()
    path.write_text("{")
    assert store.verdict(D1, host) is None


def test_the_store_is_writable_by_nobody_else(tmp_path):
    root = tmp_path / "store"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # made by hand, world-writable
    store = st.Store(root)
    store._ensure()
    for sub in (root, root / "images", root / "locks", root / "tmp"):
        assert os.stat(sub).st_mode & 0o022 == 0, sub


def test_a_store_that_is_a_link_or_someone_elses_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(HookError, match="not a directory"):
        st.Store(tmp_path / "link")._ensure()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(HookError, match="belongs to uid 65534"):
        st.Store(theirs)._ensure()
