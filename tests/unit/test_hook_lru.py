"""Which store entries the size cap removes: least recently used, never one in use."""

from __future__ import annotations

import pytest

from tcv.hook.lru import Entry, choose_evictions, older_than, parse_size


def _e(name, size, used, in_use=False, kind="view"):
    return Entry(kind, name, size, used, in_use)


def test_oldest_first_until_under_the_cap():
    entries = [_e("new", 10, 3.0), _e("old", 10, 1.0), _e("mid", 10, 2.0)]
    assert [e.name for e in choose_evictions(entries, 20)] == ["old"]
    assert [e.name for e in choose_evictions(entries, 10)] == ["old", "mid"]
    assert choose_evictions(entries, 30) == []


def test_in_use_is_never_chosen_even_over_the_cap():
    entries = [_e("old-in-use", 50, 1.0, in_use=True), _e("new", 10, 2.0)]
    assert [e.name for e in choose_evictions(entries, 5)] == ["new"]


def test_older_than_skips_in_use():
    entries = [_e("a", 1, 1.0), _e("b", 1, 1.0, in_use=True), _e("c", 1, 9.0)]
    assert [e.name for e in older_than(entries, 5.0)] == ["a"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        pytest.param("1000", 1000, id="bytes"),
        pytest.param("20G", 20 << 30, id="G"),
        pytest.param("512m", 512 << 20, id="lower-m"),
        pytest.param("1.5GiB", int(1.5 * (1 << 30)), id="GiB"),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "5X"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)
