"""Table and size rendering."""

from __future__ import annotations

import pytest

from tcv.output import human_bytes, render_table


def test_table_aligns_columns_and_renders_none_as_dash():
    text = render_table(["KEY", "ARCH"], [["abc", "90"], ["d", None]])
    assert text.splitlines() == ["KEY  ARCH", "abc  90", "d    -"]


@pytest.mark.parametrize(
    ("n", "text"),
    [
        pytest.param(0, "0 B", id="zero"),
        pytest.param(1023, "1023 B", id="bytes"),
        pytest.param(1536, "1.5 KiB", id="kib"),
        pytest.param(5 * 1024**3, "5.0 GiB", id="gib"),
    ],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text
