"""The hook's entry point: cheap exit, fail-open, strict, its own time bound, its log."""

from __future__ import annotations

import fcntl
import io
import json
import os
import socket

import pytest

from tcv.hook import logsetup, timebound
from tcv.hook import main as hook_main
from tcv.hook.settings import HookSettings


def _state(annotations, bundle="/nonexistent/bundle"):
    data = {"ociVersion": "1.0.2", "id": "0123456789abcdef", "status": "creating",
            "pid": 1, "bundle": str(bundle), "annotations": annotations}  # fmt: skip
    return io.BytesIO(json.dumps(data).encode())


@pytest.fixture
def env(tmp_path):
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path / "graph"}"\n')
    return {"TCV_HOOK_LOG": str(tmp_path / "hook.log"), "TCV_STORE": str(tmp_path / "store"),
            "TCV_GPUS": "cuda:90", "CONTAINERS_STORAGE_CONF": str(conf)}  # fmt: skip


def test_no_annotation_leaves_without_a_trace(env, tmp_path):
    assert hook_main.main([], stdin=_state({"other": "x"}), env=env) == 0
    assert not (tmp_path / "hook.log").exists()
    assert not (tmp_path / "store").exists()


def test_annotations_read_from_config_when_state_has_none(env, tmp_path, fp):
    fp.register([fp.program("skopeo"), "inspect", "--raw", fp.any()], returncode=1)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({
        "root": {"path": "rootfs"},
        "annotations": {"cache.triton.image/inject": "containers-storage:localhost/absent",
                        "cache.triton.image/inject-policy": "strict"},
    }))  # fmt: skip
    assert hook_main.main([], stdin=_state({}, bundle), env=env) == 1
    log = (tmp_path / "hook.log").read_text()
    assert "the cache image containers-storage:localhost/absent is not in local storage" in log
    assert "failing the start (inject-policy=strict)" in log


def test_garbage_on_stdin_is_logged_and_ignored(env, tmp_path):
    assert hook_main.main([], stdin=io.BytesIO(b"not json"), env=env) == 0
    assert "cannot read the OCI state" in (tmp_path / "hook.log").read_text()


@pytest.mark.parametrize(
    ("policy", "code", "verdict"),
    [
        pytest.param(None, 0, "fail-open", id="default-fail-open"),
        pytest.param("fail-open", 0, "fail-open", id="explicit-fail-open"),
        pytest.param("strict", 1, "failing the start", id="strict"),
    ],
)
def test_failure_policy(env, tmp_path, capsys, policy, code, verdict):
    annotations = {"cache.triton.image/inject": "localhost/kernels"}
    if policy:
        annotations["cache.triton.image/inject-policy"] = policy
    assert hook_main.main([], stdin=_state(annotations), env=env) == code
    log = (tmp_path / "hook.log").read_text()
    assert "container 0123456789ab: cannot inject localhost/kernels" in log
    assert "/nonexistent/bundle/config.json" in log
    assert verdict in log
    out, err = capsys.readouterr()
    assert out == ""  # never anything on stdout
    if code:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tcv-hook: container 0123456789ab")
    else:
        assert err == ""


def test_time_bound_interrupts_a_blocked_wait(tmp_path):
    lock = tmp_path / "lock"
    holder = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    waiter = os.open(lock, os.O_RDWR)
    try:
        with (
            pytest.raises(timebound.HookTimeout, match=r"gave up after 0\.2s"),
            timebound.time_bound(0.2),
        ):
            fcntl.flock(waiter, fcntl.LOCK_EX)  # held above: only the bound ends this
    finally:
        os.close(waiter)
        os.close(holder)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, 30.0, id="default"),
        pytest.param("5", 5.0, id="set"),
        pytest.param("0", 30.0, id="zero-is-default"),
        pytest.param("soon", 30.0, id="garbage-is-default"),
    ],
)
def test_timeout_from(value, expected):
    env = {} if value is None else {"TCV_HOOK_TIMEOUT": value}
    assert HookSettings.from_env(env).timeout == expected


def test_log_goes_under_the_store_without_syslog(tmp_path, monkeypatch):
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(tmp_path / "no-syslog"))
    env = {"TCV_STORE": str(tmp_path / "store")}
    logger = logsetup.setup_logging(HookSettings.from_env(env))
    logger.warning("hello")
    for h in logger.handlers:
        h.flush()
    assert "hello" in (tmp_path / "store" / "hook.log").read_text()


def test_syslog_asked_but_absent_falls_back_to_the_store(tmp_path, monkeypatch):
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(tmp_path / "no-syslog"))
    env = {"TCV_STORE": str(tmp_path / "store"), "TCV_HOOK_LOG": "syslog"}
    logger = logsetup.setup_logging(HookSettings.from_env(env))
    logger.warning("fallback")
    for h in logger.handlers:
        h.flush()
    assert "fallback" in (tmp_path / "store" / "hook.log").read_text()


@pytest.mark.parametrize("status", [pytest.param(s, id=s) for s in ("running", "stopped")])
def test_other_stages_do_nothing(env, tmp_path, status):
    data = {"id": "0123456789abcdef", "status": status, "bundle": "/nonexistent",
            "annotations": {"cache.triton.image/inject": "x",
                            "cache.triton.image/inject-policy": "strict"}}  # fmt: skip
    assert hook_main.main([], stdin=io.BytesIO(json.dumps(data).encode()), env=env) == 0
    assert "cannot inject" not in (
        (tmp_path / "hook.log").read_text() if (tmp_path / "hook.log").exists() else ""
    )


def test_syslog_when_a_listener_is_there(tmp_path, monkeypatch):
    """A real datagram socket stands for /dev/log: the hook's line arrives on it."""
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(path))
        logger = logsetup.setup_logging(
            HookSettings.from_env({"TCV_STORE": str(tmp_path / "store")})
        )
        logger.info("injected 2 kernel(s)")
        listener.settimeout(5)
        data = listener.recv(4096).decode()
        for h in logger.handlers:
            h.close()
    assert data.startswith("<30>tcv-hook[")  # facility daemon (3) * 8 + info (6)
    assert data.endswith("INFO injected 2 kernel(s)\x00")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("warm", "delivered", "needles"),
    [
        pytest.param(
            True,
            0,
            ["while rendering the view", "the store was warm", "without injected"],
            id="warm-nothing",
        ),
        pytest.param(
            False,
            0,
            ["the first start of an image fills the store", "without injected"],
            id="cold",
        ),
        pytest.param(True, 7, ["7 kernel(s) were delivered before"], id="some-delivered"),
    ],
)
def test_timeout_line_says_where_and_what(warm, delivered, needles):
    line = timebound.timeout_line(2, "rendering the view", warm, delivered)
    assert line.startswith("gave up after 2s while rendering the view")
    for needle in needles:
        assert needle in line
    assert ("cold" in line or "fills" in line) is (not warm)
    assert ("without injected" in line) is (delivered == 0)


def test_poststop_removes_the_container_and_sweeps_the_gone(env, tmp_path):
    from tcv.hook import upper

    store = tmp_path / "store"
    mine = upper.write_record(store, upper.Record("0123456789abcdef", 1, 1, "v", "d"))
    gone = upper.write_record(store, upper.Record("gone", 2**22 + 1, 5, "v", "d"))
    live = upper.write_record(
        store, upper.Record("live", os.getpid(), upper.process_start(os.getpid()), "v", "d")
    )
    data = {"id": "0123456789abcdef", "status": "stopped", "bundle": "/nonexistent"}
    stdin = io.BytesIO(json.dumps(data).encode())
    assert hook_main.main([], stdin=stdin, env=env) == 0
    assert not mine.exists() and not gone.exists() and live.exists()
