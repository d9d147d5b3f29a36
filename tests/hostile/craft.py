"""Building blocks of the hostile cases: honest kernels, raw tar records, bombs.

Everything an attacker controls is written here byte for byte: tar headers
(through :mod:`tarfile` where it can say it, by hand where it refuses to),
compression streams, the image manifest and config, the OCI layout. Nothing is
pushed through a tool that would repair it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import zstandard

from tcv.cache.kernel import FileInfo, KernelEntry
from tcv.cache.scan import scan_cache
from tcv.image.manifest import build_labels, build_manifest
from tests.harness import hostile as h

C = h.CACHE_DIR
M = "io.triton.manifest"
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "caches" / "triton-3.9"
GOOD = (
    "4SDXVXBFAHNXZM5UPNFTYK7NXZAF7A5DGE3DQLXW5HXK7GQX2FAA",  # add_kernel cuda:90
    "FHPOL2T7KLQL6PG4W2MQICBWZI4NLZW6B7BZZXIX5XBUHENYXUOA",  # scale_relu_kernel cuda:90
)
BAD = "B" * 52  # a well-formed 3.3+ key for the crafted kernel
ALREADY = "W6VCXNA7IKPLDUZGU5PXZXERP624WFBLTUTFIOG34WI5PYPWV5GQ"  # pre-filled in DEST
MIB = 1 << 20


def fixture_files(key: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((FIXTURE / key).iterdir())}


def fixture_entry(key: str) -> KernelEntry:
    return next(e for e in scan_cache(FIXTURE).entries if e.key == key)


@dataclass
class Kernels:
    """Kernel directories of an image: key → file name → bytes, with the
    fixture entry each was copied from (for the manifest)."""

    dirs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    like: dict[str, str] = field(default_factory=dict)

    @classmethod
    def honest(cls, bad_from: str | None = GOOD[1]) -> Kernels:
        """The two good kernels, plus a copy of ``bad_from`` under BAD to be spoilt."""
        k = cls()
        for key in GOOD:
            k.dirs[key] = fixture_files(key)
            k.like[key] = key
        if bad_from is not None:
            k.dirs[BAD] = fixture_files(bad_from)
            k.like[BAD] = bad_from
        return k

    def entries(self) -> list[KernelEntry]:
        out = []
        for key, files in self.dirs.items():
            infos = {
                n: FileInfo(size=len(b), sha256=hashlib.sha256(b).hexdigest())
                for n, b in files.items()
            }
            out.append(replace(fixture_entry(self.like[key]), key=key, files=infos))
        return out

    def members(self) -> list[h.Member]:
        out = [h.directory(C)]
        for key, files in sorted(self.dirs.items()):
            out.append(h.directory(f"{C}/{key}"))
            out += [h.reg(f"{C}/{key}/{n}", b) for n, b in sorted(files.items())]
        return out

    def manifest(self) -> dict:
        return build_manifest(self.entries(), "/build/cache")

    def manifest_members(self, manifest: object | None = None) -> list[h.Member]:
        doc = self.manifest() if manifest is None else manifest
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return [h.directory(M), h.reg(h.MANIFEST_PATH, data)]

    def labels(self) -> dict[str, str]:
        return build_labels(self.entries(), "hostile")


# ---------------------------------------------------------------- raw tar


def header(
    name: str,
    *,
    size: int = 0,
    type_: bytes = tarfile.REGTYPE,
    linkname: str = "",
    mode: int = 0o644,
) -> bytes:
    """One ustar header block (names of at most 100 bytes)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = type_
    info.linkname = linkname
    info.mode = mode
    return info.tobuf(tarfile.USTAR_FORMAT)


def pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def pax(records: Mapping[str, bytes], *, global_: bool = False) -> bytes:
    """A PAX extended header (``x``, or ``g`` for global) holding ``records``."""
    body = b"".join(pax_record(k, v) for k, v in records.items())
    return header(
        "PaxHeader", size=len(body), type_=tarfile.XGLTYPE if global_ else tarfile.XHDTYPE
    ) + pad(body)


def regular(name: str, data: bytes) -> bytes:
    return header(name, size=len(data)) + pad(data)


def end() -> bytes:
    return b"\0" * 1024


def tar_of(members: Iterable[h.Member]) -> bytes:
    """A PAX tar of the members, without its end-of-archive blocks, so more
    records can follow."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mode, info.linkname = m.type, m.mode, m.linkname
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(m.data) if info.size else None)
        return buf.getvalue()  # what was added; leaving the block appends the end


# ---------------------------------------------------------------- streams


def gzip_stream(parts: Iterable[bytes], level: int = 1) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [comp.compress(p) for p in parts]
    out.append(comp.flush())
    return b"".join(out)


def zeros(total: int, chunk: int = MIB) -> Iterable[bytes]:
    block = b"\0" * chunk
    for _ in range(total // chunk):
        yield block


def zstd_stream(parts: Iterable[bytes]) -> bytes:
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(level=1).stream_writer(buf, closefd=False) as w:
        for p in parts:
            w.write(p)
    return buf.getvalue()


# ---------------------------------------------------------------- images


@dataclass
class Blob:
    """A layer exactly as it will be stored (already compressed, or not)."""

    data: bytes
    media_type: str = h.OCI_GZIP


def oci_image(
    dest: Path,
    blobs: list[Blob],
    labels: Mapping[str, str],
    *,
    size_of: Mapping[int, int] | None = None,
    digest_of: Mapping[int, str] | None = None,
    config_bytes: bytes | None = None,
) -> str:
    """Write an OCI image layout at ``dest``; returns its ``oci:`` reference.

    ``size_of``/``digest_of``: what the manifest claims for layer *i* instead
    of the truth (a lying image)."""
    sha = blobs_dir = dest / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (sha / digest).write_bytes(data)
        return "sha256:" + digest

    descs = []
    for i, blob in enumerate(blobs):
        digest = put(blob.data)
        descs.append(
            {
                "mediaType": blob.media_type,
                "digest": (digest_of or {}).get(i, digest),
                "size": (size_of or {}).get(i, len(blob.data)),
            }
        )
    if config_bytes is None:
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": dict(labels)},
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
        }
        config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": h.OCI_MANIFEST,
        "config": {
            "mediaType": h.OCI_CONFIG,
            "digest": put(config_bytes),
            "size": len(config_bytes),
        },
        "layers": descs,
    }
    raw = json.dumps(manifest).encode()
    digest = put(raw)
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": h.OCI_MANIFEST,
                "digest": digest,
                "size": len(raw),
                "annotations": {"org.opencontainers.image.ref.name": "t"},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))
    return f"oci:{dest}:t"


def many_headers(prefix: str, count: int) -> bytes:
    """``count`` empty regular-file headers ``<prefix>NNNNNNN``, quickly: one
    template, the name digits and checksum patched per entry."""
    template = bytearray(header(f"{prefix}{0:07d}"))
    start = len(prefix)
    template[148:156] = b" " * 8
    base = sum(template) - sum(template[start : start + 7])
    out = bytearray()
    for i in range(count):
        digits = b"%07d" % i
        template[start : start + 7] = digits
        template[148:156] = b"%06o\0 " % (base + sum(digits))
        out += template
    return bytes(out)
