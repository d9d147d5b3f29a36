"""OCI state and config.json into the hook's small dataclasses."""

from __future__ import annotations

import json

import pytest

from tcv.hook.state import HookError, IdMapping, Mount, load_config, parse_config, parse_state

STATE = {
    "ociVersion": "1.0.2-dev",
    "id": "b9c611a15746a2b1",
    "status": "creating",
    "pid": 10292,
    "bundle": "/run/bundle",
    "annotations": {
        "cache.triton.image/inject": "localhost/kernels:1",
        "cache.triton.image/inject-policy": "strict",
        "io.container.manager": "libpod",
    },
}

CONFIG = {
    "root": {"path": "rootfs"},
    "process": {
        "user": {"uid": 1000, "gid": 100, "umask": 18},
        "env": ["PATH=/bin", "TRITON_CACHE_DIR=/cache", "A=1", "A=2", "NOEQUALS"],
    },
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/cache",
            "type": "bind",
            "source": "/var/lib/containers/storage/volumes/v/_data",
            "options": ["rw", "rbind"],
        },
        {"destination": "/data", "source": "/srv/data", "options": ["bind", "ro"]},
    ],
    "linux": {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
        "devices": [{"path": "/dev/nvidia0", "type": "c"}, {"path": "/dev/dri/renderD128"}],
    },
    "annotations": {"k": "v"},
}


def test_state_carries_the_request():
    state = parse_state(json.dumps(STATE))
    assert state.image == "localhost/kernels:1"
    assert state.strict is True
    assert state.bundle == "/run/bundle"
    assert state.pid == 10292


@pytest.mark.parametrize(
    ("annotations", "image", "strict"),
    [
        pytest.param({}, None, False, id="no-annotations"),
        pytest.param({"cache.triton.image/inject": "  "}, None, False, id="blank-image"),
        pytest.param(
            {"cache.triton.image/inject": "x", "cache.triton.image/inject-policy": "STRICT"},
            "x",
            True,
            id="strict-any-case",
        ),
        pytest.param(
            {"cache.triton.image/inject": "x", "cache.triton.image/inject-policy": "lenient"},
            "x",
            False,
            id="other-policy-is-fail-open",
        ),
        pytest.param({"xcache.triton.image/injectx": "x"}, None, False, id="lookalike-name"),
    ],
)
def test_request_fields(annotations, image, strict):
    state = parse_state(json.dumps({**STATE, "annotations": annotations}))
    assert state.image == image
    assert state.strict is strict


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("{not json", id="garbage"),
        pytest.param("[]", id="array"),
        pytest.param('{"id": "x"}', id="no-bundle"),
    ],
)
def test_bad_state_is_a_hook_error(text):
    with pytest.raises(HookError, match="OCI state"):
        parse_state(text)


def test_config_fields():
    cfg = parse_config(CONFIG, "/run/bundle")
    assert str(cfg.root) == "/run/bundle/rootfs"
    assert cfg.env["TRITON_CACHE_DIR"] == "/cache"
    assert cfg.env["A"] == "2"
    assert "NOEQUALS" not in cfg.env
    assert (cfg.uid, cfg.gid) == (1000, 100)
    assert cfg.uid_mappings == (IdMapping(0, 100000, 65536),)
    assert cfg.gid_mappings == (IdMapping(0, 200000, 65536),)
    assert cfg.devices == ("/dev/nvidia0", "/dev/dri/renderD128")
    assert [m.is_bind for m in cfg.mounts] == [False, True, True]
    assert cfg.annotations == {"k": "v"}


def test_absolute_root_is_kept():
    cfg = parse_config({**CONFIG, "root": {"path": "/abs/merged"}}, "/run/bundle")
    assert str(cfg.root) == "/abs/merged"


def test_bare_config_defaults_to_root_user():
    cfg = parse_config({"root": {"path": "r"}}, "/b")
    assert (cfg.uid, cfg.gid, cfg.mounts, cfg.uid_mappings) == (0, 0, (), ())


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="no-root"),
        pytest.param({"root": {"path": "r"}, "process": {"user": {"uid": "x"}}}, id="bad-uid"),
        pytest.param({"root": {"path": "r"}, "mounts": [{"type": "bind"}]}, id="mount-no-dest"),
    ],
)
def test_bad_config_is_a_hook_error(data):
    with pytest.raises(HookError, match=r"config\.json"):
        parse_config(data, "/b")


def test_load_config_reads_the_bundle(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    cfg = load_config(str(tmp_path))
    assert cfg.root == tmp_path / "rootfs"


def test_load_config_missing_file(tmp_path):
    with pytest.raises(HookError, match="cannot read"):
        load_config(str(tmp_path))


def test_mount_bind_detection():
    assert Mount("/a", "/b", "none", ("rbind",)).is_bind
    assert not Mount("/dev", "tmpfs", "tmpfs", ("nosuid",)).is_bind
