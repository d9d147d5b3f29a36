"""Per-container records: made, found alive, removed at poststop, swept when gone."""

from __future__ import annotations

import os

import pytest

from tcv.hook import upper
from tcv.hook.state import HookError


def test_parse_start_time_with_spaces_in_the_name():
    stat = b"42 (a b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0"
    assert upper.parse_start_time(stat) == 98765
    assert upper.parse_start_time(b"42 (x) S 1") is None


def test_record_alive_removed_and_swept(tmp_path):
    me = upper.Record("live", os.getpid(), upper.process_start(os.getpid()), "v1", "d")
    dead = upper.Record("dead", os.getpid(), 1, "v2", "d")  # same pid, another start
    for r in (me, dead):
        folder = upper.write_record(tmp_path, r)
        up, work = upper.make_layer_dirs(folder, (os.getuid(), os.getgid()), upper=True)
        assert up.is_dir() and work.is_dir()
    assert upper.views_in_use(tmp_path) == {"v1"}
    assert upper.sweep(tmp_path) == ["dead"]
    assert os.listdir(tmp_path / "containers") == ["live"]
    assert upper.remove_container(tmp_path, "live") is True
    assert upper.remove_container(tmp_path, "live") is False
    assert os.listdir(tmp_path / "containers") == []


@pytest.mark.parametrize("cid", ["../x", ".hidden", "a/b", ""])
def test_unsafe_container_ids_are_refused(cid):
    with pytest.raises(HookError, match="refusing the container id"):
        upper.check_id(cid)
