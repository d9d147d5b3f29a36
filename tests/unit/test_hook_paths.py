"""The container's cache path, and reaching it without leaving the container's root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcv.hook.paths import (
    BindView,
    container_cache_dir,
    container_user,
    open_in_container,
    passwd_home,
)
from tcv.hook.state import ContainerConfig, HookError, Mount


@pytest.mark.parametrize(
    ("annotations", "env", "home", "expected"),
    [
        pytest.param(
            {"cache.triton.image/inject-dir": "/x/y/"},
            {"TRITON_CACHE_DIR": "/c"},
            "/root",
            "/x/y",
            id="annotation-wins",
        ),
        pytest.param({}, {"TRITON_CACHE_DIR": "/c//d"}, "/root", "/c/d", id="triton-cache-dir"),
        pytest.param(
            {}, {"TRITON_HOME": "/th", "HOME": "/h"}, "/h", "/th/.triton/cache", id="triton-home"
        ),
        pytest.param({}, {}, "/home/u", "/home/u/.triton/cache", id="home"),
        pytest.param({}, {}, None, "/.triton/cache", id="no-home"),
        pytest.param({}, {"TRITON_CACHE_DIR": "rel"}, "/h", "/h/.triton/cache", id="relative-env"),
    ],
)
def test_container_cache_dir(annotations, env, home, expected):
    assert container_cache_dir(annotations, env, home) == expected


def test_relative_annotation_is_refused():
    with pytest.raises(HookError, match="not an absolute path"):
        container_cache_dir({"cache.triton.image/inject-dir": "cache"}, {}, "/")


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        pytest.param(0, "/root", id="root"),
        pytest.param(1000, "/home/u", id="user"),
        pytest.param(4242, None, id="unlisted"),
    ],
)
def test_passwd_home(uid, expected):
    text = "root:x:0:0:root:/root:/bin/sh\nbroken\nu:x:1000:1000::/home/u:/bin/sh\n"
    assert passwd_home(text, uid) == expected


def _config(root: Path, mounts=()) -> ContainerConfig:
    return ContainerConfig(root=root, env={}, uid=0, gid=0, mounts=tuple(mounts))


@pytest.fixture
def world(tmp_path):
    """A rootfs with hostile links, a volume and a bind mount, and host dirs beside them."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "root").mkdir()
    (root / "home" / "u").mkdir(parents=True)
    (root / "file").write_text("x")
    host_secret = tmp_path / "host-etc"
    host_secret.mkdir()
    vol = tmp_path / "volume" / "_data"
    vol.mkdir(parents=True)
    bind = tmp_path / "bind"
    bind.mkdir()
    return {"root": root, "tmp": tmp_path, "vol": vol, "bind": bind, "secret": host_secret}


def _open(view, path, **kw):
    with open_in_container(view, path, create=True, **kw) as d:
        real = Path(os.readlink(d.path))
        return d.container_path, real, Path(d.host_path)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@pytest.mark.parametrize(
    ("links", "path", "expected_container", "expected_host"),
    [
        pytest.param(
            {}, "/root/.triton/cache", "/root/.triton/cache", "root/.triton/cache", id="plain"
        ),
        pytest.param(
            {"root/.triton": "/etc"},
            "/root/.triton/cache",
            "/etc/cache",
            "etc/cache",
            id="absolute-link-re-rooted",
        ),
        pytest.param(
            {"root/.triton": "../../../../../.."},
            "/root/.triton/cache",
            "/cache",
            "cache",
            id="dotdot-clamped-at-root",
        ),
        pytest.param(
            {"root/.triton": "/../../host-etc"},
            "/root/.triton/cache",
            "/host-etc/cache",
            "host-etc/cache",
            id="absolute-dotdot",
        ),
        pytest.param({}, "/../../../x", "/x", "x", id="dotdot-in-request"),
        pytest.param(
            {"home/u/c": "../../root"}, "/home/u/c/t", "/root/t", "root/t", id="relative-link"
        ),
    ],
)
def test_rootfs_resolution_stays_inside(world, links, path, expected_container, expected_host):
    root = world["root"]
    for name, target in links.items():
        (root / name).symlink_to(target)
    container, real, host = _open(BindView.of(_config(root)), path)
    assert container == expected_container
    assert real == root / expected_host
    assert host == root / expected_host
    assert _inside(real, root)
    assert not (world["secret"] / "cache").exists()


def test_link_into_a_mount_continues_in_its_source(world):
    root = world["root"]
    (root / "root" / ".triton").symlink_to("/cache")
    view = BindView.of(_config(root, [Mount("/cache", str(world["vol"]), "bind", ("rbind",))]))
    container, real, _ = _open(view, "/root/.triton/cache")
    assert container == "/cache/cache"
    assert real == world["vol"] / "cache"


def test_nested_mount_wins_over_its_parent(world):
    view = BindView.of(
        _config(
            world["root"],
            [
                Mount("/data", str(world["bind"]), "bind", ("rbind",)),
                Mount("/data/triton", str(world["vol"]), "bind", ("rbind",)),
            ],
        )
    )
    container, real, host = _open(view, "/data/triton/cache")
    assert container == "/data/triton/cache"
    assert real == world["vol"] / "cache"
    assert host == world["vol"] / "cache"


def test_link_inside_a_mount_cannot_leave_the_container(world):
    (world["vol"] / "escape").symlink_to("/../../..")
    view = BindView.of(_config(world["root"], [Mount("/cache", str(world["vol"]), "bind")]))
    _, real, _ = _open(view, "/cache/escape/x")
    assert real == world["root"] / "x"


def test_non_bind_mount_is_refused(world):
    view = BindView.of(_config(world["root"], [Mount("/dev", "tmpfs", "tmpfs")]))
    with pytest.raises(HookError, match="non-bind mount"):
        open_in_container(view, "/dev/shm/cache", create=True)


def test_file_in_the_way_is_refused(world):
    with pytest.raises(HookError, match=r"[Nn]ot a directory"):
        open_in_container(BindView.of(_config(world["root"])), "/file/cache", create=True)


def test_link_loop_is_refused(world):
    (world["root"] / "a").symlink_to("b")
    (world["root"] / "b").symlink_to("a")
    with pytest.raises(HookError, match="too many levels"):
        open_in_container(BindView.of(_config(world["root"])), "/a/cache", create=True)


def test_missing_without_create(world):
    with pytest.raises(HookError, match="does not exist"):
        open_in_container(BindView.of(_config(world["root"])), "/nope")


def test_created_dirs_belong_to_the_owner(world):
    view = BindView.of(_config(world["root"]))
    _open(view, "/home/u/.triton/cache", owner=(1234, 5678))
    for rel in ("home/u/.triton", "home/u/.triton/cache"):
        st = (world["root"] / rel).stat()
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert (world["root"] / "home" / "u").stat().st_uid == 0  # existing dirs untouched


def test_rename_works_inside_the_opened_directory(world):
    with open_in_container(BindView.of(_config(world["root"])), "/c", create=True) as d:
        (d.path / "tmp.x").mkdir()
        (d.path / "tmp.x" / "f").write_text("k")
        os.rename(d.path / "tmp.x", d.path / "KEY")
    assert (world["root"] / "c" / "KEY" / "f").read_text() == "k"


def test_later_mount_hides_earlier_at_same_destination(world):
    view = BindView.of(
        _config(
            world["root"],
            [Mount("/cache", str(world["vol"]), "bind"), Mount("/cache", "tmpfs", "tmpfs")],
        )
    )
    with pytest.raises(HookError, match="non-bind mount"):
        open_in_container(view, "/cache/x", create=True)


FOR_INDUCTOR = {"cache.triton.image/inject-for": "inductor"}


@pytest.mark.parametrize(
    ("env", "user", "expected"),
    [
        pytest.param({}, "app", "/tmp/torchinductor_app/triton/0", id="default"),
        pytest.param(
            {"TMPDIR": "/scratch"}, "a:b", "/scratch/torchinductor_a_b/triton/0", id="tmp"
        ),
        pytest.param(
            {"TORCHINDUCTOR_CACHE_DIR": "/ind"}, "app", "/ind/triton/0", id="inductor-cache-dir"
        ),
        pytest.param({"TRITON_CACHE_DIR": "/t"}, "app", "/t", id="triton-cache-dir-wins"),
        pytest.param({}, None, "/tmp/torchinductor_root/triton/0", id="no-user"),
    ],
)
def test_inject_for_inductor_picks_device_0_of_the_inductor_cache(env, user, expected):
    assert container_cache_dir(FOR_INDUCTOR, env, "/home/app", user) == expected


def test_inject_for_an_unknown_workload_is_refused():
    with pytest.raises(HookError, match="not a workload the hook serves"):
        container_cache_dir({"cache.triton.image/inject-for": "vllm"}, {}, "/", "u")


def test_container_user_is_found_as_getpass_finds_it():
    passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    assert container_user({"USER": "svc"}, passwd, 1000) == "svc"
    assert container_user({}, passwd, 1000) == "app"
    assert container_user({}, passwd, 5) is None
    assert container_user({}, None, 0) is None
