"""Container ids to host ids through user-namespace mappings."""

from __future__ import annotations

import pytest

from tcv.hook.idmap import host_owner, map_id
from tcv.hook.state import ContainerConfig, HookError, IdMapping

MAPS = (IdMapping(0, 100000, 1000), IdMapping(1000, 5000, 1), IdMapping(1001, 101001, 64535))


@pytest.mark.parametrize(
    ("value", "mappings", "expected"),
    [
        pytest.param(0, (), 0, id="no-userns-root"),
        pytest.param(1234, (), 1234, id="no-userns-user"),
        pytest.param(0, MAPS, 100000, id="root-mapped"),
        pytest.param(999, MAPS, 100999, id="end-of-first-range"),
        pytest.param(1000, MAPS, 5000, id="keep-id-single"),
        pytest.param(1001, MAPS, 101001, id="third-range-start"),
        pytest.param(65535, MAPS, 165535, id="last-id"),
    ],
)
def test_map_id(value, mappings, expected):
    assert map_id(value, mappings) == expected


def test_unmapped_id_is_an_error():
    with pytest.raises(HookError, match="container gid 70000 has no host gid"):
        map_id(70000, MAPS, "gid")


def test_host_owner_maps_uid_and_gid_separately(tmp_path):
    cfg = ContainerConfig(
        root=tmp_path,
        env={},
        uid=1000,
        gid=0,
        uid_mappings=MAPS,
        gid_mappings=(IdMapping(0, 300000, 65536),),
    )
    assert host_owner(cfg) == (5000, 300000)
