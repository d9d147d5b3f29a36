"""The overlay's mount data, and a mount refused without a namespace to join."""

from __future__ import annotations

import pytest

from tcv.hook.nsmount import OverlayPlan, mount_overlay, overlay_options
from tcv.hook.state import HookError


def test_overlay_options():
    assert overlay_options(["/v", "/t"], "/u", "/w", userxattr=False) == (
        "lowerdir=/v:/t,upperdir=/u,workdir=/w"
    )
    assert overlay_options(["/v"], "/u", "/w", userxattr=True).endswith(",userxattr")


@pytest.mark.parametrize("bad", ["/a,b", "/a:b", ""])
def test_overlay_options_refuse_paths_it_cannot_carry(bad):
    with pytest.raises(ValueError):
        overlay_options([bad], "/u", "/w", userxattr=False)


def test_no_such_process_is_one_clear_error():
    plan = OverlayPlan("/nonexistent", "/c", ("/v",), "/u", "/w")
    with pytest.raises(HookError, match="cannot open the mount namespace"):
        mount_overlay(2**22 + 1, plan)
