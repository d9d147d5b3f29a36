"""The layer tar reader against :mod:`tarfile` on valid archives: every entry
the standard module lists, with the same name, type, size, mode, link target
and bytes, in all three tar formats and all three layer compressions."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from tcv.image.tar import Stream, padded, read_headers

LONG = "io.triton.cache/" + "K" * 52 + "/" + "n" * 180 + ".json"  # beyond ustar's 100+155


def _members() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def add(name: str, kind: bytes, data: bytes | None = None, **kw: object) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        for k, v in kw.items():
            setattr(info, k, v)
        if data is not None:
            info.size = len(data)
        out.append((info, data))

    add("io.triton.cache", tarfile.DIRTYPE, mode=0o755)
    add("io.triton.cache/KEY", tarfile.DIRTYPE, mode=0o700)
    add("io.triton.cache/KEY/k.json", tarfile.REGTYPE, b'{"name": "k"}', mode=0o644)
    add("io.triton.cache/KEY/empty", tarfile.REGTYPE, b"", mode=0o600)
    add("io.triton.cache/KEY/k.cubin", tarfile.REGTYPE, bytes(range(256)) * 40, mode=0o755)
    add("io.triton.cache/KEY/odd", tarfile.REGTYPE, b"x" * 511)
    add("io.triton.cache/KEY/even", tarfile.REGTYPE, b"y" * 1024)
    add("io.triton.cache/KEY/alias", tarfile.SYMTYPE, linkname="k.json")
    add("io.triton.cache/KEY/hard", tarfile.LNKTYPE, linkname="io.triton.cache/KEY/k.json")
    add(LONG, tarfile.REGTYPE, b"long name")
    add("io.triton.cache/KEY/longlink", tarfile.SYMTYPE, linkname="l" * 150)
    add("io.triton.cache/KEY/ünïcode.json", tarfile.REGTYPE, b"u")
    return out


def _compress(raw: bytes, kind: str) -> bytes:
    if kind == "gzip":
        half = len(raw) // 2  # two gzip members one after the other, as pigz writes
        return gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def _ours(blob: bytes, kind: str) -> list[tuple[str, bytes, int, int, str, bytes]]:
    stream = Stream(io.BytesIO(blob), kind, None, 0)
    out = []
    for h in read_headers(stream):
        data = stream.read(padded(h.size))[: h.size]
        # tarfile drops a directory name's trailing slash; unpack normalizes it away
        name = h.name.rstrip("/") if h.isdir() else h.name
        out.append((name, h.type, h.size, h.mode, h.linkname, data))
    return out


def _stdlib(raw: bytes) -> list[tuple[str, bytes, int, int, str, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            data = f.read() if f else b""
            out.append((m.name, m.type, m.size if m.isreg() else 0, m.mode, m.linkname, data))
    return out


@pytest.mark.parametrize(
    "fmt",
    [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
    ids=["ustar", "gnu", "pax"],
)
@pytest.mark.parametrize("kind", ["tar", "gzip", "zstd"])
def test_reader_agrees_with_tarfile(fmt, kind):
    members = _members()
    if fmt == tarfile.USTAR_FORMAT:  # ustar cannot hold the long names or non-ASCII ones
        members = [(i, d) for i, d in members if i.name.isascii() and i.name != LONG]
        members = [(i, d) for i, d in members if len(i.linkname) <= 100]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    expected = _stdlib(raw)
    assert len(expected) == len(members)
    assert _ours(_compress(raw, kind), kind) == expected


def test_reader_agrees_on_a_real_cache_layer():
    """A whole real Triton cache (the bundled one, compiled by the official wheel)."""
    cache = Path(__file__).parents[1] / "data" / "caches" / "triton-3.9"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(cache, arcname="io.triton.cache")
    expected = _stdlib(raw.getvalue())
    assert len(expected) > 3
    assert _ours(raw.getvalue(), "tar") == expected
