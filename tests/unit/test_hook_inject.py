"""The injection flow over real files: a bundle, a rootfs, a pre-filled store and a
containers-storage image index, with the GPU override of the hook's environment.

The state carries no pid, so no mount namespace is joined here: the flow renders
the view and takes its copy fallback (the mount itself is tested end to end)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tcv.cache.scan import scan_cache
from tcv.hook import inject as inj
from tcv.hook.settings import HookSettings
from tcv.hook.state import HookError, State
from tcv.hook.store import digest_dirname
from tcv.image.manifest import build_manifest

DIGEST = "sha256:" + "ab" * 32
IMAGE = "localhost/kernels:1"


@pytest.fixture(scope="module")
def index(caches_dir):
    return [e for e in json.loads((caches_dir / "index.json").read_text())["entries"]
            if e["fixture"] == "triton-3.9"]  # fmt: skip


def keys_for(index, backend, arch):
    return sorted(e["key"] for e in index if (e["backend"], e["arch"]) == (backend, arch))


@pytest.fixture
def host(tmp_path, caches_dir, fp):
    """A store holding the fixture image, and a storage index naming it."""
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
    return State("c0ffee", b, None, "creating", {"cache.triton.image/inject": IMAGE, **annotations})


def test_rootfs_home_from_passwd(tmp_path, host, index):
    b = bundle(tmp_path, user=(1000, 1000), passwd="u:x:1000:1000::/home/u:/bin/sh\n")
    report = inj.inject(state(b), host, deadline=1e12)
    dest = tmp_path / "rootfs" / "home" / "u" / ".triton" / "cache"
    assert report.container_path == "/home/u/.triton/cache"
    assert sorted(report.keys) == keys_for(index, "cuda", "90")
    assert report.delivery == "copied" and report.view_rendered
    assert sorted(p.name for p in dest.iterdir() if p.name[0] != ".") == keys_for(
        index, "cuda", "90"
    )
    assert report.gpus == ("cuda:90",)
    assert report.store_warm is True
    assert len(report.skipped) == len(index) - len(report.keys)
    for key in report.keys:
        assert (dest / key).stat().st_uid == 1000
        for grp in (dest / key).glob("__grp__*.json"):
            paths = json.loads(grp.read_text())["child_paths"].values()
            assert all(p.startswith(f"/home/u/.triton/cache/{key}/") for p in paths)


def test_second_start_finds_them_present(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    first = inj.inject(state(b), host, deadline=1e12)
    again = inj.inject(state(b), host, deadline=1e12)
    assert first.view_rendered and not again.view_rendered
    assert again.present == len(first.keys)
    assert len(os.listdir(tmp_path / "store" / "views")) == 1


def test_warm_start_reads_the_kept_verdict_not_the_manifest(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    first = inj.inject(state(b), host, deadline=1e12)
    record = tmp_path / "store" / "images" / digest_dirname(DIGEST) / "store.json"
    record.write_text("{damaged")  # only a start that must judge again reads it
    shutil.rmtree(tmp_path / "rootfs" / "tc")
    again = inj.inject(state(b), host, deadline=1e12)
    assert again.keys == first.keys and again.skipped == first.skipped
    with pytest.raises(HookError, match="is damaged"):
        inj.inject(state(b), {**host, "TCV_GPUS": "cuda:80"}, deadline=1e12)


def test_volume_source_receives_the_kernels(tmp_path, host, index):
    vol = tmp_path / "vol"
    vol.mkdir()
    mount = {"destination": "/cache", "type": "bind", "source": str(vol), "options": ["rbind"]}
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/cache/t"], mounts=[mount])
    report = inj.inject(state(b), {**host, "TCV_GPUS": "hip:gfx942;cuda:80"}, deadline=1e12)
    assert report.host_path == str(vol / "t")
    assert sorted(n for n in os.listdir(vol / "t") if n[0] != ".") == sorted(report.keys)
    assert sorted(report.keys) == sorted(
        keys_for(index, "hip", "gfx942") + keys_for(index, "cuda", "80")
    )
    assert not (tmp_path / "rootfs" / "cache").exists()


def test_nothing_fits_creates_nothing(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    report = inj.inject(state(b), {**host, "TCV_GPUS": "cuda:75"}, deadline=1e12)
    assert report.keys == () and report.delivery == "none"
    assert "nothing in the image fits" in report.line()
    assert not (tmp_path / "rootfs" / "tc").exists()


def test_nvidia_visible_devices_none_removes_cuda(tmp_path, host):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc", "NVIDIA_VISIBLE_DEVICES=none"])
    report = inj.inject(state(b), host, deadline=1e12)
    assert report.gpus == ()
    assert report.keys == ()


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
    assert HookSettings.from_env(env).pull_allowed() is allowed


def test_bad_pull_policy_says_which():
    with pytest.raises(HookError) as info:
        HookSettings.from_env({"TCV_HOOK_PULL": "always"}).pull_allowed()
    assert "use one of missing, never" in info.value.line()


def test_kept_volume_holding_them_all_is_present(tmp_path, host, index):
    vol = tmp_path / "vol"
    wanted = keys_for(index, "cuda", "90")
    for key in wanted:
        (vol / key).mkdir(parents=True)
    mount = {"destination": "/cache", "type": "bind", "source": str(vol), "options": ["rbind"]}
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/cache"], mounts=[mount])
    report = inj.inject(state(b), host, deadline=1e12)
    assert report.delivery == "present" and report.present == len(wanted)
    assert not (tmp_path / "store" / "views").exists()  # nothing rendered for it


def test_container_triton_leaves_out_what_it_never_hits(tmp_path, host, index):
    b = bundle(tmp_path, env=["TRITON_CACHE_DIR=/tc"])
    dist = tmp_path / "rootfs" / "usr/lib/python3.11/site-packages/triton-3.3.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: triton\nVersion: 3.3.0\n")
    report = inj.inject(state(b), host, deadline=1e12)
    assert report.triton == "3.3.0" and report.keys == ()
    assert "never hit by Triton 3.3.0" in report.line()
    assert "the consuming Triton is 3.3.0: it will never be hit" in report.line()


@pytest.mark.parametrize(
    ("host_path", "expected"),
    [
        pytest.param("/vol/a/t", "/vol/a", id="inside"),
        pytest.param("/vol/a", "/vol/a", id="at"),
        pytest.param("/vol/ab", None, id="prefix-is-not-inside"),
        pytest.param("/vol/a/deep/x", "/vol/a/deep", id="deepest"),
        pytest.param("/rootfs/x", None, id="rootfs"),
    ],
)
def test_covering_mount(host_path, expected):
    from tcv.hook.paths import BindView
    from tcv.hook.state import Mount

    view = BindView(
        root=__import__("pathlib").Path("/rootfs"),
        binds={
            ("a",): Mount("/a", "/vol/a", "bind"),
            ("a", "d"): Mount("/a/d", "/vol/a/deep", "bind"),
        },
    )
    found = inj.covering_mount(view, host_path)
    assert (found.source if found else None) == expected
