"""Rewriting group files for a new cache location (SPEC §4)."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from tcv.cache.relocate import relocate_entry, relocate_group

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


def _entry_copy(tmp_path: Path, fixture: str = "triton-3.9") -> Path:
    return Path(shutil.copytree(_real_entry(fixture), tmp_path / "B" / _real_entry(fixture).name))


def _group(entry: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    (grp,) = entry.glob("__grp__*.json")
    return grp, json.loads(grp.read_text())


FIXTURES = sorted({e["fixture"] for e in INDEX["entries"]})


def _dict_form(fixture: str) -> bool:
    _, group = _group(_real_entry(fixture))
    return isinstance(group["child_paths"], dict)


@pytest.mark.parametrize("fixture", [pytest.param(f, id=f) for f in FIXTURES if _dict_form(f)])
def test_relocate_entry_points_every_child_at_the_new_place(tmp_path, fixture):
    entry = _entry_copy(tmp_path, fixture)
    grp, before = _group(entry)
    # As Triton wrote it: absolute paths into the cache it was built in.
    assert not any(p.startswith(str(entry)) for p in before["child_paths"].values())
    os.chmod(grp, 0o640)

    assert relocate_entry(entry, str(entry)) == 1

    _, after = _group(entry)
    assert set(after["child_paths"]) == set(before["child_paths"])
    for name, path in after["child_paths"].items():
        assert path == str(entry / name)
        assert os.path.exists(path)  # what Triton's get_group checks
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        p.name for p in _real_entry(fixture).iterdir()
    )  # no temp file left
    assert grp.stat().st_mode & 0o7777 == 0o640
    # Same serialisation as Triton's put_group (json.dumps defaults).
    assert grp.read_text() == json.dumps(after)


@pytest.mark.parametrize("fixture", [pytest.param(f, id=f) for f in FIXTURES if not _dict_form(f)])
def test_relocate_entry_leaves_real_list_form_groups_alone(tmp_path, fixture):
    entry = _entry_copy(tmp_path, fixture)
    grp, _ = _group(entry)
    before = grp.read_bytes()
    assert relocate_entry(entry, str(entry)) == 0
    assert grp.read_bytes() == before


def test_relocate_entry_again_changes_nothing(tmp_path):
    entry = _entry_copy(tmp_path)
    assert relocate_entry(entry, str(entry)) == 1
    grp, _ = _group(entry)
    inode = grp.stat().st_ino
    assert relocate_entry(entry, str(entry)) == 0
    assert grp.stat().st_ino == inode


def test_relocate_entry_to_a_container_path(tmp_path):
    entry = _entry_copy(tmp_path)
    assert relocate_entry(entry, "/home/user/.triton/cache/KEY") == 1
    _, after = _group(entry)
    assert all(p.startswith("/home/user/.triton/cache/KEY/") for p in after["child_paths"].values())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"child_paths": ["k.json", "k.cubin"]}', id="list-form"),
        pytest.param('{"child_paths": ', id="corrupt"),
    ],
)
def test_relocate_entry_leaves_other_groups_alone(tmp_path, text):
    entry = tmp_path / "KEY"
    entry.mkdir()
    (entry / "__grp__k.json").write_text(text)
    (entry / "k.json").write_text("{}")
    assert relocate_entry(entry, "/new/KEY") == 0
    assert (entry / "__grp__k.json").read_text() == text
    assert sorted(p.name for p in entry.iterdir()) == ["__grp__k.json", "k.json"]


def test_relocate_entry_without_group_files(tmp_path):
    (tmp_path / "k.json").write_text("{}")
    assert relocate_entry(tmp_path, "/new") == 0
