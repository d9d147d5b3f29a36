"""The injection flow over real files: a bundle, a rootfs, a pre-filled store and a
containers-storage image index, with the GPU override of the hook's environment."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tcv.cache import scan_cache
from tcv.hook import inject as inj
from tcv.hook import spare as sp
from tcv.hook.state import HookError, State
from tcv.hook.store import digest_dirname
from tcv.manifest import build_manifest

DIGEST = "sha256:" + "ab" * 32
IMAGE = "localhost/kernels:1"


@pytest.fixture(scope="module")
def index(caches_dir):
    return [e for e in json.loads((caches_dir / "index.json").read_text())["entries"]
            if e["fixture"] == "triton-3.9"]  # fmt: skip


def keys_for(index, backend, arch):
    return sorted(e["key"] for e in index if (e["backend"], e["arch"]) == (backend, arch))


REFILL = [sys.executable, "-c", sp.REFILL_CODE]


@pytest.fixture
def host(tmp_path, caches_dir, fp):
    """A store holding the fixture image, and a storage index naming it. The
    detached refill a start on the store's filesystem launches is recorded, not run."""
    fp.register([*REFILL, fp.any()], occurrences=10)
    fixture = caches_dir / "triton-3.9"
    image_dir = tmp_path / "store" / "images" / digest_dirname(DIGEST)
    shutil.copytree(fixture, image_dir / "cache")
    entries = scan_cache(fixture).entries
    (image_dir / "store.json").write_text(json.dumps({
        "image": f"containers-storage:{IMAGE}", "cache": "cache", "labels": {},
        "manifest": build_manifest(entries, str(fixture)),
    }))  # fmt: skip
    graph = tmp_path / "graph" / "vfs-images"
    graph.mkdir(parents=True)
    (graph / "images.json").write_text(json.dumps([{"digest": DIGEST, "names": [IMAGE]}]))
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path / "graph"}"\n')
    return {"TCV_STORE": str(tmp_path / "store"), "CONTAINERS_STORAGE_CONF": str(conf),
            "TCV_GPUS": "cuda:90"}  # fmt: skip


def bundle(tmp_path, *, env=(), mounts=(), user=(0, 0), passwd=None):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    if passwd is not None:
        (root / "etc" / "passwd").write_text(passwd)
    b = tmp_path / "bundle"
    b.mkdir(exist_ok=True)
    (b / "config.json").write_text(json.dumps({
        "root": {"path": str(root)},
        "process": {"user": {"uid": user[0], "gid": user[1]}, "env": list(env)},
        "mounts": list(mounts),
    }))  # fmt: skip
    return str(b)


def state(b, **annotations):
    return State("c0ffee", b, 1, "creating", {"cache.triton.image/inject": IMAGE, **annotations})


def test_rootfs_home_from_passwd(tmp_path, host, index):
    b = bundle(tmp_path, user=(1000, 1000), passwd="u:x:1000:1000::/home/u:/bin/sh\n")
    report = inj.inject(state(b), host, deadline=1e12)
    dest = tmp_path / "rootfs" / "home" / "u" / ".triton" / "cache"
    assert report.container_path == "/home/u/.triton/cache"
    assert sorted(report.installed) == keys_for(index, "cuda", "90")
    assert sorted(p.name for p in dest.iterdir() if p.name[0] != ".") == keys_for(
        index, "cuda", "90"
    )
    assert report.gpus == ("cuda:90",)
    assert report.store_warm is True
    assert len(report.skipped) == len(index) - len(report.installed)
    for key in report.installed:
        assert (dest / key).stat().st_uid == 1000
        for grp in (dest / key).glob("__grp__*.json"):
            paths = json.loads(grp.read_text())["child_paths"].values()
            assert all(p.startswith(f"/home/u/.triton/cache/{key}/") for p in paths)


def test_second_start_finds_them_present(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    first = inj.inject(state(b), host, deadline=1e12)
    again = inj.inject(state(b), host, deadline=1e12)
    assert again.installed == ()
    assert sorted(again.present) == sorted(first.installed)


def test_warm_start_reads_the_kept_verdict_not_the_manifest(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    first = inj.inject(state(b), {**host, sp.SPARES_ENV: "0"}, deadline=1e12)
    record = tmp_path / "store" / "images" / digest_dirname(DIGEST) / "store.json"
    record.write_text("{damaged")  # only a start that must judge again reads it
    shutil.rmtree(tmp_path / "rootfs" / "tc")
    again = inj.inject(state(b), {**host, sp.SPARES_ENV: "0"}, deadline=1e12)
    assert again.installed == first.installed and again.skipped == first.skipped
    with pytest.raises(HookError, match="is damaged"):
        inj.inject(state(b), {**host, "TCV_GPUS": "cuda:80"}, deadline=1e12)


def test_volume_source_receives_the_kernels(tmp_path, host, index):
    vol = tmp_path / "vol"
    vol.mkdir()
    mount = {"destination": "/cache", "type": "bind", "source": str(vol), "options": ["rbind"]}
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/cache/t"], mounts=[mount])
    report = inj.inject(state(b), {**host, "TCV_GPUS": "hip:gfx942;cuda:80"}, deadline=1e12)
    assert report.host_path == str(vol / "t")
    assert sorted(report.installed) == sorted(
        keys_for(index, "hip", "gfx942") + keys_for(index, "cuda", "80")
    )
    assert not (tmp_path / "rootfs" / "cache").exists()


def test_nothing_fits_creates_nothing(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    report = inj.inject(state(b), {**host, "TCV_GPUS": "cuda:75"}, deadline=1e12)
    assert report.installed == ()
    assert "nothing in the image fits" in report.line()
    assert not (tmp_path / "rootfs" / "tc").exists()


def test_nvidia_visible_devices_none_removes_cuda(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc", "NVIDIA_VISIBLE_DEVICES=none"])
    report = inj.inject(state(b), host, deadline=1e12)
    assert report.gpus == ()
    assert report.installed == ()


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        pytest.param(None, True, id="default-missing"),
        pytest.param("never", False, id="never"),
        pytest.param("MISSING", True, id="case"),
    ],
)
def test_pull_policy(value, allowed):
    env = {} if value is None else {"TCV_HOOK_PULL": value}
    assert inj.pull_allowed(env) is allowed


def test_bad_pull_policy_says_which():
    with pytest.raises(HookError) as info:
        inj.pull_allowed({"TCV_HOOK_PULL": "always"})
    assert "use one of missing, never" in info.value.line()


def test_spare_moved_in_on_the_second_start(tmp_path, host, index, fp):
    vol1, vol2 = tmp_path / "vol1", tmp_path / "vol2"
    vol1.mkdir(), vol2.mkdir()

    def start(vol):
        mount = {"destination": "/cache", "type": "bind", "source": str(vol), "options": []}
        b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/cache"], mounts=[mount], user=(7, 8))
        return inj.inject(state(b), host, deadline=1e12)

    first = start(vol1)
    assert first.from_spare == 0 and "store warm; copied; " in first.line()
    assert fp.call_count([*REFILL, fp.any()]) == 1  # no spare yet: copied, refill started
    key = sp.spare_key(DIGEST, keys_for(index, "cuda", "90"), "/cache", (7, 8))
    spares = sp.Spares(tmp_path / "store" / "spares")
    assert len(sp.refill(tmp_path / "store", key, wanted=2)) == 2  # what the refill does

    second = start(vol2)
    assert second.from_spare == len(second.installed) == len(keys_for(index, "cuda", "90"))
    assert "store warm; from a spare; " in second.line()
    assert fp.call_count([*REFILL, fp.any()]) == 2
    assert len(spares.ready(key)) == 1
    # Nothing of the claimed spare is left: it was moved in whole.
    left = [n for n in os.listdir(spares.tuple_dir(key)) if not n.startswith("ready-")]
    assert sorted(left) == [sp.LOCK_FILE, sp.SPEC_FILE]
    for k in second.installed:
        assert (vol2 / k).stat().st_uid == 7 and (vol2 / k).stat().st_gid == 8
        for grp in (vol2 / k).glob("__grp__*.json"):
            paths = json.loads(grp.read_text())["child_paths"].values()
            assert all(p.startswith(f"/cache/{k}/") for p in paths)
        for f in (vol2 / k).iterdir():
            assert f.read_bytes() == (vol1 / k / f.name).read_bytes()


def test_spare_never_replaces_what_the_volume_holds(tmp_path, host, index):
    vol = tmp_path / "vol"
    mount = {"destination": "/cache", "type": "bind", "source": str(vol), "options": []}
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/cache"], mounts=[mount])
    wanted = keys_for(index, "cuda", "90")
    key = sp.spare_key(DIGEST, wanted, "/cache", (0, 0))
    sp.Spares(tmp_path / "store" / "spares").prepare(
        sp.SpareSpec.of(DIGEST, wanted, "/cache", (0, 0))
    )
    sp.refill(tmp_path / "store", key, wanted=1)
    (vol / wanted[0]).mkdir(parents=True)
    (vol / wanted[0] / "mine").write_text("kept")
    report = inj.inject(state(b), host, deadline=1e12)
    assert report.installed == tuple(wanted[1:]) and report.from_spare == len(wanted) - 1
    assert report.present == (wanted[0],)
    assert os.listdir(vol / wanted[0]) == ["mine"]
    # The claimed spare's copy of the present kernel is set aside, swept by the next refill.
    tuple_dir = tmp_path / "store" / "spares" / key
    trash = [n for n in os.listdir(tuple_dir) if n.startswith("trash-")]
    assert len(trash) == 1 and os.listdir(tuple_dir / trash[0]) == [wanted[0]]


def test_spares_turned_off_copy_and_start_nothing(tmp_path, host, fp):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    report = inj.inject(state(b), {**host, sp.SPARES_ENV: "0"}, deadline=1e12)
    assert report.installed and report.from_spare == 0
    assert fp.call_count([*REFILL, fp.any()]) == 0
    assert not (tmp_path / "store" / "spares").exists()


def test_report_line_names_what_happened():
    report = inj.InjectReport(
        image="img", digest="sha256:x", container_path="/c", host_path="/h/c",
        gpus=("cuda:90",), installed=("K1",), present=("K2",),
        skipped=(("K3", "built for hip"),), store_warm=False, seconds=0.25,
    )  # fmt: skip
    assert report.line() == (
        "injected 1 kernel(s) from img (sha256:x) into /c (host /h/c) for cuda:90; "
        "1 already present, 1 not for these GPUs; store filled; copied; 0.250s; installed K1; "
        "skipped because built for hip"
    )
