"""A reader of the tar stream of one image layer: POSIX ustar headers, PAX
``x``/``g`` records and GNU long names, decompressed from gzip or zstd in
bounded chunks.

Why not :mod:`tarfile`: Debian 12's Python (3.11.2-6+deb12u6) has no ``tarfile``
data filter (PEP 706 arrived in 3.11.4), so every refusal rule would have to be
written on top of it anyway; and a cache layer holds tens of thousands of
small files, where the general module's per-entry cost dominated extraction
(its streaming mode measured ~1.4–2.9× slower per entry than this reader).
This module only parses; what an entry may be is decided in
:mod:`tcv.image.unpack`. ``tests/unit/test_tar.py`` checks it against
:mod:`tarfile` on valid archives.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from tcv.errors import ExtractError

CHUNK = 1 << 20  # the most decompressed data one read hands out
BLOCK = 512
ZERO_BLOCK = b"\0" * BLOCK
MAX_EXTENSION = 1 << 20  # one PAX or GNU long-name record
MAX_PAX_TOTAL = 1 << 20  # the PAX records in force at once

# Tar type flags (POSIX.1-2001 / GNU).
REGULAR = (b"0", b"\0", b"7")
HARDLINK = b"1"
SYMLINK = b"2"
CHARDEV = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
PAX_LOCAL = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"


class UnsafeLayerError(ExtractError):
    """A layer entry that could escape the staging root or carry privileges."""


@dataclass
class Header:
    """One tar entry's header, after PAX and GNU long-name records are applied."""

    name: str
    type: bytes = REGULAR[0]
    size: int = 0
    mode: int = 0o644
    linkname: str = ""

    def isreg(self) -> bool:
        return self.type in REGULAR

    def isdir(self) -> bool:
        return self.type == DIRECTORY


def short(text: str, keep: int = 120) -> str:
    return text if len(text) <= keep else text[:keep] + "…"


class Stream:
    """Decompressed bytes of one layer, read in whole chunks.

    No call hands out more than ``CHUNK`` bytes of decompressed data, whatever
    the ratio, and every decompressed byte is counted in ``out``; ``allowance``
    (called per chunk) is the most the stream may produce in all.
    """

    def __init__(
        self,
        raw: BinaryIO,
        kind: str,
        report: Callable[[int], None] | None,
        base: int,
        *,
        out: int = 0,
        allowance: Callable[[], int] | None = None,
    ):
        self.raw = raw
        self.report = report
        self.done = base
        self.out = out
        self.allowance = allowance
        self.buf = b""
        self.pos = 0
        self.kind = kind
        if kind == "gzip":
            self._z = zlib.decompressobj(wbits=31)
        elif kind == "zstd":
            # Python 3.11 has no zstd in the standard library (docs/spec.md §3 needs tar+zstd).
            import zstandard

            self._zr = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)

    def _chunk(self) -> bytes:
        """The next piece of decompressed data, b"" at the end."""
        if self.kind == "zstd":
            data = self._zr.read(CHUNK)
            self._progress(self.raw.tell())
        elif self.kind == "gzip":
            data = self._gzip()
        else:
            data = self._raw()
        self.out += len(data)
        if self.allowance is not None and self.out > (limit := self.allowance()):
            raise UnsafeLayerError(
                f"the image's layers decompress to more than {limit} bytes, far more than "
                "the files they hold (a decompression bomb)",
                "raise --max-size if the image is trusted and really that large",
            )
        return data

    def _raw(self) -> bytes:
        raw = self.raw.read(CHUNK)
        self._progress(None, len(raw))
        return raw

    def _gzip(self) -> bytes:
        while True:
            z = self._z
            if z.eof:
                # Several gzip members one after the other (pigz, some builders).
                data = z.unused_data or self._raw()
                if not data:
                    return b""
                self._z = z = zlib.decompressobj(wbits=31)
            elif z.unconsumed_tail:
                data = z.unconsumed_tail
            else:
                data = self._raw()
                if not data:
                    out = z.flush(CHUNK)  # what zlib still holds
                    if out:
                        return out
                    raise ExtractError("the gzip layer of the image is truncated")
            out = z.decompress(data, CHUNK)
            if out:
                return out

    def _progress(self, absolute: int | None, delta: int = 0) -> None:
        if absolute is not None:
            self.done = absolute
        else:
            self.done += delta
        if self.report:
            self.report(self.done)

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or fewer only at the end of the stream."""
        if n < 0:
            raise ExtractError("the layer has a negative size in a tar header")
        avail = len(self.buf) - self.pos
        if avail >= n:
            out = self.buf[self.pos : self.pos + n]
            self.pos += n
            return out
        parts = [self.buf[self.pos :]]
        self.buf, self.pos = b"", 0
        while avail < n:
            chunk = self._chunk()
            if not chunk:
                break
            need = n - avail
            if len(chunk) > need:
                parts.append(chunk[:need])
                self.buf, self.pos = chunk, need
                avail = n
            else:
                parts.append(chunk)
                avail += len(chunk)
        return b"".join(parts)


def _octal(field: bytes, what: str) -> int:
    if field and field[0] & 0x80:
        # GNU base-256 for large numbers; a negative one is never valid here.
        if field[0] & 0x40:
            raise ExtractError(f"the layer has a negative {what} in a tar header")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ExtractError(f"the layer has a malformed {what} in a tar header") from None


def _pax_records(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] == b"\0":
            break
        sp = data.find(b" ", pos, pos + 21)
        if sp < 0 or not data[pos:sp].isdigit():
            raise ExtractError("the layer has a malformed PAX header")
        length = int(data[pos:sp])
        if length <= sp - pos or pos + length > len(data):
            raise ExtractError("the layer has a malformed PAX header")
        record = data[sp + 1 : pos + length - 1]  # without the trailing newline
        key, eq, value = record.partition(b"=")
        if not eq:
            raise ExtractError("the layer has a malformed PAX header")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def read_headers(stream: Stream) -> Iterator[Header]:
    """Yield each entry's header; the caller must consume exactly
    ``padded(h.size)`` bytes of data (or call :func:`skip`) before the next."""
    global_pax: dict[str, str] = {}
    local: dict[str, str] = {}
    zero_blocks = 0
    while True:
        block = stream.read(BLOCK)
        if not block:
            return  # a stream without the end-of-archive blocks; accept it
        if len(block) < BLOCK:
            raise ExtractError("the layer ends in the middle of a tar header")
        if block == ZERO_BLOCK:
            zero_blocks += 1
            if zero_blocks == 2:
                return
            continue
        zero_blocks = 0
        stored = _octal(block[148:156], "checksum")
        if stored != sum(block[:148]) + 256 + sum(block[156:]):
            raise ExtractError("the layer is not a valid tar archive (bad header checksum)")
        type_ = block[156:157]
        size = _octal(block[124:136], "size")
        if type_ in (PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK):
            if size > MAX_EXTENSION:
                raise UnsafeLayerError(
                    f"the layer has a tar extension header of {size} bytes "
                    f"(at most {MAX_EXTENSION})"
                )
            data = stream.read(padded(size))[:size]
            if len(data) < size:
                raise ExtractError("the layer ends in the middle of a tar header")
            if type_ == PAX_LOCAL:
                local.update(_pax_records(data))
            elif type_ == PAX_GLOBAL:
                global_pax.update(_pax_records(data))
                if sum(len(k) + len(v) for k, v in global_pax.items()) > MAX_PAX_TOTAL:
                    raise UnsafeLayerError("the layer's global PAX records are implausibly large")
            elif type_ == GNU_LONGNAME:
                local["path"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            else:
                local["linkpath"] = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            if sum(len(k) + len(v) for k, v in local.items()) > MAX_PAX_TOTAL:
                raise UnsafeLayerError(
                    "the layer's PAX records for one entry are implausibly large"
                )
            continue
        name = block[0:100].split(b"\0", 1)[0]
        if block[257:263] == b"ustar\x00":  # POSIX: the prefix field holds the rest
            prefix = block[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        pax = {**global_pax, **local} if global_pax else local
        local = {}
        if any(k.startswith("GNU.sparse") for k in pax):
            raise UnsafeLayerError("the layer has a sparse file, which a cache never holds")
        if "size" in pax:
            text = pax["size"]
            # Digits only: int() would take "-5", " 5" or "1_0"; a negative size
            # would make the reader go backwards for ever.
            if not (text.isascii() and text.isdigit()) or len(text) > 19:
                raise UnsafeLayerError(f"the layer has a malformed PAX size {short(text)!r}")
            size = int(text)
        if type_ in (DIRECTORY, SYMLINK, HARDLINK, CHARDEV, BLOCKDEV, FIFO):
            size = 0  # these carry no data, whatever the size field says
        yield Header(
            name=pax.get("path") or name.decode("utf-8", "surrogateescape"),
            type=type_,
            size=size,
            mode=_octal(block[100:108], "mode"),
            linkname=pax.get("linkpath")
            or block[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape"),
        )
