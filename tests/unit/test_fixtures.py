"""The committed Triton cache fixtures agree with index.json, their oracle.

index.json is written by tests/data/make_caches.py from Triton's own data; these
checks keep a hand edit or a partial regeneration from going unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"
CACHES = DATA / "caches"
EXAMPLE = DATA.parent.parent / "examples" / "vector-add-cache"
INDEX: dict[str, Any] = json.loads((CACHES / "index.json").read_text())
ENTRIES: list[dict[str, Any]] = INDEX["entries"]

# KEY encodings of docs/spec.md §4, by Triton version.
KEY_PATTERNS = {
    "md5-hex": re.compile(r"[0-9a-f]{32}"),
    "sha256-hex": re.compile(r"[0-9a-f]{64}"),
    "sha256-base64url": re.compile(r"[A-Za-z0-9_-]{43}"),
    "sha256-base32": re.compile(r"[A-Z2-7]{52}"),
}


def _version(text: str) -> tuple[int, int]:
    major, minor = (int(x) for x in text.split(".")[:2])
    return major, minor


def _spec_encoding(version: str) -> str:
    major, minor = _version(version)
    if major < 3:
        return "md5-hex"
    return {0: "sha256-hex", 1: "sha256-hex", 2: "sha256-base64url"}.get(minor, "sha256-base32")


def _encode_hash(hexdigest: str, encoding: str) -> str:
    raw = bytes.fromhex(hexdigest)
    if encoding == "sha256-hex":
        return hexdigest
    if encoding == "sha256-base64url":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return base64.b32encode(raw).decode().rstrip("=")


def _entry_id(entry: dict[str, Any]) -> str:
    target = f"{entry['backend']}{entry['arch']}"
    return f"{entry['fixture']}/{entry['triton_version']}/{entry['stem']}-{target}"


ENTRY_PARAMS = [pytest.param(e, id=_entry_id(e)) for e in ENTRIES]


@pytest.mark.parametrize("entry", ENTRY_PARAMS)
def test_entry_dir_holds_exactly_the_listed_files(entry: dict[str, Any]) -> None:
    entry_dir = CACHES / entry["fixture"] / entry["key"]
    assert entry_dir.is_dir()
    assert sorted(p.name for p in entry_dir.iterdir()) == entry["files"]
    assert all(
        (entry_dir / f).is_file() and (entry_dir / f).stat().st_size > 0 for f in entry["files"]
    )


@pytest.mark.parametrize("entry", ENTRY_PARAMS)
def test_key_has_the_encoding_of_its_triton_version(entry: dict[str, Any]) -> None:
    encoding = _spec_encoding(entry["triton_version"])
    assert entry["key_encoding"] == encoding
    assert KEY_PATTERNS[encoding].fullmatch(entry["key"])
    if encoding != "md5-hex":  # 3.x: KEY encodes the metadata hash (docs/spec.md §4)
        assert entry["key"] == _encode_hash(entry["hash"], encoding)


@pytest.mark.parametrize("entry", ENTRY_PARAMS)
def test_metadata_and_binaries_match_the_index(entry: dict[str, Any]) -> None:
    entry_dir = CACHES / entry["fixture"] / entry["key"]
    files = set(entry["files"])
    stem = entry["stem"]
    meta = json.loads((entry_dir / f"{stem}.json").read_text())
    assert meta.get("name", stem) == entry["name"]
    assert entry["name"].startswith(stem)
    if "triton_version" in meta:  # written from 3.3 on
        assert meta["triton_version"] == entry["triton_version"]
    if entry["backend"] == "cuda":
        assert {f"{stem}.ptx", f"{stem}.cubin"} <= files
        ptx = (entry_dir / f"{stem}.ptx").read_text()
        major, minor = re.search(r"^\.version (\d+)\.(\d+)", ptx, re.MULTILINE).groups()  # type: ignore[union-attr]
        assert entry["ptx_version"] == int(major) * 10 + int(minor)
        assert re.search(rf"^\.target sm_{entry['arch']}a?\b", ptx, re.MULTILINE)
    else:
        assert {f"{stem}.amdgcn", f"{stem}.hsaco"} <= files
        assert entry["ptx_version"] is None


@pytest.mark.parametrize("entry", ENTRY_PARAMS)
def test_group_file_has_the_shape_of_its_version(entry: dict[str, Any]) -> None:
    # docs/spec.md §4: 3.x groups map names to absolute paths where the cache was built;
    # 2.x groups list bare names.
    entry_dir = CACHES / entry["fixture"] / entry["key"]
    group = json.loads((entry_dir / f"__grp__{entry['stem']}.json").read_text())
    children = group["child_paths"]
    others = sorted(f for f in entry["files"] if not f.startswith("__grp__"))
    if _version(entry["triton_version"]) >= (3, 0):
        built_in = INDEX["fixtures"][entry["fixture"]]["built_in"][entry["triton_version"]]
        assert sorted(children) == others
        assert all(path == f"{built_in}/{entry['key']}/{name}" for name, path in children.items())
    else:
        assert sorted(children) == others
        assert all(isinstance(name, str) and "/" not in name for name in children)


@pytest.mark.parametrize("fixture", [pytest.param(name, id=name) for name in INDEX["fixtures"]])
def test_fixture_dir_has_no_unindexed_entries(fixture: str) -> None:
    indexed = {e["key"] for e in ENTRIES if e["fixture"] == fixture}
    assert {p.name for p in (CACHES / fixture).iterdir()} == indexed


def test_triton_39_covers_the_required_targets() -> None:
    got = {
        (e["name"], e["backend"], e["arch"], e["warp_size"])
        for e in ENTRIES
        if e["fixture"] == "triton-3.9"
    }
    targets = {t[1:] for t in got}
    assert targets == {
        ("cuda", "80", 32),
        ("cuda", "90", 32),
        ("cuda", "100", 32),
        ("hip", "gfx942", 64),
        ("hip", "gfx1100", 32),
    }
    kernels_per_target: dict[tuple[str, str, int], set[str]] = {}
    for name, *target in got:
        kernels_per_target.setdefault(tuple(target), set()).add(name)  # type: ignore[arg-type]
    assert max(len(k) for k in kernels_per_target.values()) >= 2


def test_example_cache_is_a_byte_copy_of_three_39_entries() -> None:
    by_key = {e["key"]: e for e in ENTRIES if e["fixture"] == "triton-3.9"}
    keys = sorted(p.name for p in EXAMPLE.iterdir())
    assert {(by_key[k]["backend"], by_key[k]["arch"]) for k in keys} == {
        ("cuda", "80"),
        ("cuda", "90"),
        ("hip", "gfx942"),
    }
    assert len({by_key[k]["name"] for k in keys}) == 1
    for key in keys:
        for name in by_key[key]["files"]:
            copied = (EXAMPLE / key / name).read_bytes()
            original = (CACHES / "triton-3.9" / key / name).read_bytes()
            assert hashlib.sha256(copied).digest() == hashlib.sha256(original).digest()
        assert sorted(p.name for p in (EXAMPLE / key).iterdir()) == by_key[key]["files"]
