"""Staging directories: private, fresh, always removed; a shared root like /tmp."""

from __future__ import annotations

import os
import stat

import pytest

from tcv import staging


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """The default root moved under tmp_path, no $TCV_STAGING_ROOT."""
    root = tmp_path / ".tcv"
    monkeypatch.delenv(staging.STAGING_ROOT_ENV, raising=False)
    monkeypatch.setattr(staging, "DEFAULT_STAGING_ROOT", str(root))
    return root


def test_fresh_private_directory_removed_on_success(shared):
    with staging.staging_dir() as one, staging.staging_dir() as two:
        assert one != two
        assert one.parent == shared
        assert stat.S_IMODE(one.stat().st_mode) == 0o700
        (one / "f").write_text("x")
    assert not one.exists() and not two.exists()


def test_shared_root_is_sticky_and_world_writable(shared):
    with staging.staging_dir():
        pass
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_shared_root_made_by_an_older_run_is_opened_up(shared):
    shared.mkdir(mode=0o755)
    with staging.staging_dir() as path:
        assert path.parent == shared
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p, t: os.symlink(t, p), id="symlink"),
        pytest.param(lambda p, t: (os.mkdir(p), os.chown(p, 65534, 65534)), id="someone-elses"),
        pytest.param(lambda p, t: open(p, "w").close(), id="a-file"),
    ],
)
def test_untrusted_shared_root_falls_back_to_a_private_one(shared, tmp_path, make):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make(str(shared), str(elsewhere))
    if os.geteuid() != 0 and not shared.is_symlink():
        pytest.fail("this case needs root to hand the directory to another user")
    with staging.staging_dir() as path:
        assert path.parent == tmp_path / f".tcv-{os.geteuid()}"
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert list(elsewhere.iterdir()) == []


def test_environment_overrides_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv(staging.STAGING_ROOT_ENV, str(tmp_path / "mine"))
    with staging.staging_dir() as path:
        assert path.parent == tmp_path / "mine"


@pytest.mark.parametrize(
    "exc", [pytest.param(RuntimeError, id="error"), pytest.param(KeyboardInterrupt, id="ctrl-c")]
)
def test_removed_on_failure_and_interrupt(shared, exc):
    with pytest.raises(exc), staging.staging_dir() as path:
        (path / "sub").mkdir()
        raise exc
    assert not path.exists()
    assert list(shared.iterdir()) == []


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_stale_run_directories_are_swept_live_ones_kept(shared):
    import fcntl

    shared.mkdir()
    dead = _dead_pid()
    killed = shared / f"extract-{dead}-abc"  # SIGKILLed after taking its lock
    (killed / "root").mkdir(parents=True)
    (killed / staging.OWNER_FILE).write_text("")
    early = shared / f"create-{dead}-def"  # killed before taking it
    early.mkdir()
    mine = shared / f"extract-{os.getpid()}-ghi"  # a live process
    mine.mkdir()
    held = shared / f"extract-{dead}-jkl"  # a live run in another pid namespace
    held.mkdir()
    (held / staging.OWNER_FILE).write_text("")
    other = shared / "notes"  # not a run directory
    other.mkdir()
    fd = os.open(held / staging.OWNER_FILE, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with staging.staging_dir("extract-") as path:
            assert path.name.startswith(f"extract-{os.getpid()}-")
            assert (path / staging.OWNER_FILE).is_file()
            left = sorted(p.name for p in shared.iterdir())
    finally:
        os.close(fd)
    assert left == sorted([mine.name, held.name, other.name, path.name])


def test_a_running_staging_directory_is_never_swept(shared):
    with staging.staging_dir("extract-") as path:
        # Even with its pid unknown (another namespace), the held lock keeps it.
        twin = path.with_name(f"extract-{_dead_pid()}-x")
        os.rename(path, twin)
        assert staging.sweep_stale(shared) == []
        os.rename(twin, path)
    assert not path.exists()


def test_a_zombie_is_not_alive():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        assert not staging.process_alive(pid)
        assert staging.process_alive(os.getpid())
    finally:
        os.waitpid(pid, 0)
