"""The HIP binding against the real libamdhip64 (Debian's ROCm runtime), no GPU here."""

from __future__ import annotations

import re

import pytest

from tcv.gpu import hip

pytestmark = pytest.mark.integration


def test_real_libamdhip64_without_a_gpu_is_none_found():
    report = hip.probe()
    assert report.status == "no-device", report
    assert report.library in hip.SONAMES
    assert report.devices == ()
    assert report.message == "hipGetDeviceCount: no device (100)"
    # hipDriverGetVersion answers even without a device (5.2.x on Debian 12).
    assert report.driver is not None and re.fullmatch(r"\d+\.\d+\.\d+", report.driver)
