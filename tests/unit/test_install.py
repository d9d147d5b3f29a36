"""Atomic, locked, non-destructive installation of kernel directories."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from tcv.errors import ExtractError
from tcv.install import LOCK_NAME, install_kernels

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "caches" / "triton-3.9"


def fixture_keys() -> list[str]:
    return sorted(p.name for p in FIXTURE.iterdir() if p.is_dir())


@pytest.fixture
def source(tmp_path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(FIXTURE, src)
    return src


def snapshot(root: Path) -> dict[str, tuple[bytes | str, int]]:
    """Content and inode of everything under root (the lock file aside)."""
    out: dict[str, tuple[bytes | str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if rel == LOCK_NAME:
                continue
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("-> " + os.readlink(p), st.st_ino)
            elif p.is_dir():
                out[rel] = ("dir", st.st_ino)
            else:
                out[rel] = (p.read_bytes(), st.st_ino)
    return out


def group_paths(entry: Path) -> list[str]:
    (grp,) = entry.glob("__grp__*.json")
    return list(json.loads(grp.read_text())["child_paths"].values())


def test_installs_and_relocates_groups(source, tmp_path):
    dest = tmp_path / "dest"
    keys = fixture_keys()[:2]
    result = install_kernels(source, keys, dest)
    assert result.installed == keys
    for key in keys:
        names = sorted(os.listdir(dest / key))
        assert names == sorted(os.listdir(source / key))
        for name in names:
            if not name.startswith("__grp__"):
                assert (dest / key / name).read_bytes() == (source / key / name).read_bytes()
        paths = group_paths(dest / key)
        assert paths and all(p.startswith(f"{dest}/{key}/") for p in paths)
        assert all(Path(p).exists() for p in paths)
    assert sorted(p.name for p in dest.iterdir()) == sorted([*keys, LOCK_NAME])


def test_target_root_names_the_consumer_side_path(source, tmp_path):
    key = fixture_keys()[0]
    install_kernels(source, [key], tmp_path / "dest", target_root="/home/u/.triton/cache")
    assert all(
        p.startswith(f"/home/u/.triton/cache/{key}/") for p in group_paths(tmp_path / "dest" / key)
    )


def test_rerun_is_present_and_changes_nothing(source, tmp_path):
    dest = tmp_path / "dest"
    keys = fixture_keys()
    install_kernels(source, keys, dest)
    before = snapshot(dest)
    again = install_kernels(source, keys, dest)
    assert again.present == keys and not again.installed
    assert snapshot(dest) == before


def test_differing_kernel_is_kept_unless_forced(source, tmp_path):
    dest = tmp_path / "dest"
    key = fixture_keys()[0]
    (dest / key).mkdir(parents=True)
    (dest / key / "mine.txt").write_text("a user's file")
    kept = install_kernels(source, [key], dest)
    assert kept.differing == [key] and not kept.installed
    assert os.listdir(dest / key) == ["mine.txt"]
    forced = install_kernels(source, [key], dest, force=True)
    assert forced.replaced == [key]
    assert sorted(os.listdir(dest / key)) == sorted(os.listdir(source / key))
    assert not [n for n in os.listdir(dest) if n.startswith("tmp.pid_")]


def test_empty_directory_in_dest_is_not_silently_replaced(source, tmp_path):
    dest = tmp_path / "dest"
    key = fixture_keys()[0]
    (dest / key).mkdir(parents=True)
    assert install_kernels(source, [key], dest).differing == [key]


def test_other_things_in_dest_are_untouched(source, tmp_path):
    dest = tmp_path / "dest"
    (dest / "OTHERKEY").mkdir(parents=True)
    (dest / "OTHERKEY" / "x.json").write_text("{}")
    (dest / "notes.txt").write_text("keep me")
    before = snapshot(dest)
    install_kernels(source, fixture_keys(), dest, move=True)
    after = snapshot(dest)
    assert {k: v for k, v in after.items() if k in before} == before


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("../escape", id="dotdot"),
        pytest.param("a/b", id="slash"),
        pytest.param(".hidden", id="dot-name"),
        pytest.param("", id="empty"),
    ],
)
def test_unsafe_keys_are_refused_before_anything_is_written(source, tmp_path, key):
    dest = tmp_path / "dest"
    with pytest.raises(ExtractError, match="unsafe key"):
        install_kernels(source, [fixture_keys()[0], key], dest)
    assert not dest.exists()


def test_symlink_in_dest_is_never_followed(source, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    key = fixture_keys()[0]
    (dest / key).symlink_to(outside)
    assert install_kernels(source, [key], dest).differing == [key]
    assert os.listdir(outside) == ["precious"]
    assert install_kernels(source, [key], dest, force=True).replaced == [key]
    assert os.listdir(outside) == ["precious"]
    assert (dest / key).is_dir() and not (dest / key).is_symlink()


def test_link_shares_inodes_but_writes_groups_fresh(source, tmp_path):
    dest = tmp_path / "dest"
    key = fixture_keys()[0]
    install_kernels(source, [key], dest, link=True)
    for name in os.listdir(source / key):
        same = (dest / key / name).stat().st_ino == (source / key / name).stat().st_ino
        assert same == (not name.startswith("__grp__")), name
    # The source's group file still names its own paths.
    assert all("/dest/" not in p for p in group_paths(source / key))


def test_owner_is_applied_and_never_leaks_into_a_linked_source(source, tmp_path):
    dest = tmp_path / "dest"
    key = fixture_keys()[0]
    install_kernels(source, [key], dest, link=True, owner=(4321, 4322))
    for p in [dest / key, *(dest / key).iterdir()]:
        assert (p.stat().st_uid, p.stat().st_gid) == (4321, 4322)
    for p in (source / key).iterdir():
        assert p.stat().st_uid == os.getuid()


def test_move_renames_the_source_whole(source, tmp_path):
    dest = tmp_path / "dest"
    key = fixture_keys()[0]
    inode = (source / key / "add_kernel.json").stat().st_ino
    result = install_kernels(source, [key], dest, move=True)
    assert result.installed == [key]
    assert not (source / key).exists()
    assert (dest / key / "add_kernel.json").stat().st_ino == inode
    assert all(p.startswith(f"{dest}/{key}/") for p in group_paths(dest / key))


def test_missing_source_kernel_is_an_error(source, tmp_path):
    with pytest.raises(ExtractError, match="missing from the unpacked image"):
        install_kernels(source, ["NOSUCHKEY"], tmp_path / "dest")


def test_concurrent_installs_lose_nothing(tmp_path):
    """Several installers on one DEST at once: every kernel ends up installed once,
    complete; the others see it present."""
    dest = tmp_path / "dest"
    keys = fixture_keys()
    sources = []
    for i in range(4):
        src = tmp_path / f"src{i}"
        shutil.copytree(FIXTURE, src)
        sources.append(src)
    results = [None] * len(sources)
    start = threading.Barrier(len(sources))

    def work(i: int) -> None:
        start.wait()
        results[i] = install_kernels(sources[i], keys, dest, move=bool(i % 2))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    installed = [k for r in results for k in r.installed]
    present = [k for r in results for k in r.present]
    assert sorted(installed) == keys
    assert len(present) == len(keys) * (len(sources) - 1)
    for key in keys:
        assert sorted(os.listdir(dest / key)) == sorted(os.listdir(FIXTURE / key))
    assert not [n for n in os.listdir(dest) if n.startswith("tmp.pid_")]


def test_temporaries_of_killed_runs_are_removed_under_the_lock(source, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    stale = dest / f"tmp.pid_{pid}_{'a' * 32}"
    (stale / "half").mkdir(parents=True)
    live = dest / f"tmp.pid_{os.getpid()}_{'b' * 32}"
    live.mkdir()
    mine = dest / "tmp.pid_notes"
    mine.mkdir()
    install_kernels(source, fixture_keys()[:1], dest)
    assert not stale.exists()
    assert live.is_dir() and mine.is_dir()
