"""Rewriting group files for a new cache location (docs/spec.md §4): the pure rewrite,
and what an install writes into DEST with it."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from tcv.cache.relocate import relocate_group
from tcv.install import install_kernels

CACHES = Path(__file__).resolve().parent.parent / "data" / "caches"
INDEX = json.loads((CACHES / "index.json").read_text())


def _real_entry(fixture: str = "triton-3.9") -> Path:
    e = next(e for e in INDEX["entries"] if e["fixture"] == fixture)
    return CACHES / e["fixture"] / e["key"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"child_paths": {"k.json": "/old/root/KEY/k.json", "k.ptx": "/old/root/KEY/k.ptx"}},
            {"child_paths": {"k.json": "/new/KEY/k.json", "k.ptx": "/new/KEY/k.ptx"}},
            id="dict-form",
        ),
        pytest.param(
            {"child_paths": {"k.json": "/old/KEY/k.json"}, "extra": 1},
            {"child_paths": {"k.json": "/new/KEY/k.json"}, "extra": 1},
            id="dict-form-keeps-other-fields",
        ),
        pytest.param(
            {"child_paths": ["k.json", "k.ptx"]},
            {"child_paths": ["k.json", "k.ptx"]},
            id="list-form-unchanged",
        ),
        pytest.param({"other": 1}, {"other": 1}, id="no-child-paths"),
        pytest.param([1, 2], [1, 2], id="not-an-object"),
        pytest.param(None, None, id="null"),
    ],
)
def test_relocate_group(data, expected):
    before = copy.deepcopy(data)
    assert relocate_group(data, "/new/KEY") == expected
    assert data == before  # pure


def _install(source: Path, dest: Path, target_root: str | None = None) -> Path:
    """Install the one kernel directory ``source`` into ``dest`` as extract and
    the hook do; returns the installed directory."""
    install_kernels(source.parent, [source.name], dest, target_root=target_root)
    return dest / source.name


def _group(entry: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    (grp,) = entry.glob("__grp__*.json")
    return grp, json.loads(grp.read_text())


FIXTURES = sorted({e["fixture"] for e in INDEX["entries"]})


def _dict_form(fixture: str) -> bool:
    _, group = _group(_real_entry(fixture))
    return isinstance(group["child_paths"], dict)


@pytest.mark.parametrize("fixture", [pytest.param(f, id=f) for f in FIXTURES if _dict_form(f)])
def test_install_points_every_child_at_the_new_place(tmp_path, fixture):
    source = _real_entry(fixture)
    _, before = _group(source)
    entry = _install(source, tmp_path / "B")
    # As Triton wrote it: absolute paths into the cache it was built in.
    assert not any(p.startswith(str(entry)) for p in before["child_paths"].values())

    grp, after = _group(entry)
    assert set(after["child_paths"]) == set(before["child_paths"])
    for name, path in after["child_paths"].items():
        assert path == str(entry / name)
        assert os.path.exists(path)  # what Triton's get_group checks
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        p.name for p in source.iterdir()
    )  # no temp file left
    # Same serialisation as Triton's put_group (json.dumps defaults).
    assert grp.read_text() == json.dumps(after)


@pytest.mark.parametrize("fixture", [pytest.param(f, id=f) for f in FIXTURES if not _dict_form(f)])
def test_install_leaves_real_list_form_groups_alone(tmp_path, fixture):
    source = _real_entry(fixture)
    src_grp, _ = _group(source)
    grp, _ = _group(_install(source, tmp_path / "B"))
    assert grp.read_bytes() == src_grp.read_bytes()


def test_installing_again_changes_nothing(tmp_path):
    source = _real_entry()
    entry = _install(source, tmp_path / "B")
    grp, first = _group(entry)
    inode = grp.stat().st_ino
    again = install_kernels(source.parent, [source.name], tmp_path / "B")
    assert again.present == [source.name] and not again.installed
    assert grp.stat().st_ino == inode
    assert _group(entry)[1] == first


def test_install_for_a_container_path(tmp_path):
    entry = _install(_real_entry(), tmp_path / "B", target_root="/home/user/.triton/cache")
    _, after = _group(entry)
    prefix = f"/home/user/.triton/cache/{entry.name}/"
    assert all(p.startswith(prefix) for p in after["child_paths"].values())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"child_paths": ["k.json", "k.cubin"]}', id="list-form"),
        pytest.param('{"child_paths": ', id="corrupt"),
    ],
)
def test_install_leaves_other_groups_alone(tmp_path, text):
    source = tmp_path / "A" / "KEY"
    source.mkdir(parents=True)
    (source / "__grp__k.json").write_text(text)
    (source / "k.json").write_text("{}")
    entry = _install(source, tmp_path / "B", target_root="/new")
    assert (entry / "__grp__k.json").read_text() == text
    assert sorted(p.name for p in entry.iterdir()) == ["__grp__k.json", "k.json"]


def test_install_without_group_files(tmp_path):
    source = tmp_path / "A" / "KEY"
    source.mkdir(parents=True)
    (source / "k.json").write_text("{}")
    entry = _install(source, tmp_path / "B", target_root="/new")
    assert sorted(p.name for p in entry.iterdir()) == ["k.json"]
