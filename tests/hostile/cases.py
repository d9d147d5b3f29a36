"""The hostile inputs: one crafted image each, with the outcome ``tcv -e`` owes.

An attacker controls the image: its tar streams, compression, manifest,
config and labels, and the digests and sizes its OCI manifest claims. Each
case builds such an image as an OCI layout and says what must happen:

- :class:`Refuse`: exit ``code`` with one error line containing ``needle``,
  DEST byte-identical;
- :class:`Install`: exit 0, exactly the ``installed`` kernels added to DEST,
  and each key of ``skipped`` reported with a reason containing its needle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tcv.image.manifest import LABEL_CACHE_SIZE, LABEL_ENTRY_COUNT, LABEL_SUMMARY
from tests.harness import hostile as h
from tests.hostile import craft as c
from tests.hostile.craft import BAD, GOOD, MIB, Blob, C, Kernels, M

UP = "../" * 12


@dataclass(frozen=True)
class Ctx:
    """Where a case writes its image, and what it aims at."""

    work: Path  # the case's own scratch directory
    decoy: Path  # a Triton cache outside DEST and staging that must not change

    @property
    def up_to_decoy(self) -> str:
        return UP + str(self.decoy).lstrip("/")


@dataclass(frozen=True)
class Refuse:
    needle: str
    code: int = 1


@dataclass(frozen=True)
class Install:
    installed: frozenset[str] = frozenset(GOOD)
    skipped: dict[str, str] = field(default_factory=dict)
    json: bool = True  # False: read the table a person sees


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ctx], str]  # returns the image reference
    expect: Refuse | Install
    why: str  # the attack, in a few words


CASES: list[Case] = []


def case(id: str, expect: Refuse | Install, why: str):
    def deco(fn: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
        CASES.append(Case(id, fn, expect, why))
        return fn

    return deco


# ---------------------------------------------------------------- helpers


def image(
    ctx: Ctx,
    kernels: Kernels,
    extra: list[h.Member] = (),  # type: ignore[assignment]
    *,
    manifest: object | None = None,
    with_manifest: bool = True,
    labels: dict[str, str] | None = None,
    media: str = h.OCI_GZIP,
) -> str:
    """The kernels, the hostile ``extra`` members, then the manifest, in one layer."""
    members = [*kernels.members(), *extra]
    if with_manifest:
        members += kernels.manifest_members(manifest)
    raw = h.tar_bytes(members)
    return c.oci_image(
        ctx.work / "oci",
        [Blob(h.compress(raw, media), media)],
        kernels.labels() if labels is None else labels,
    )


def raw_image(
    ctx: Ctx, data: bytes, *, media: str = h.OCI_GZIP, labels: dict[str, str] | None = None
) -> str:
    """An image whose one layer is ``data`` as given (already compressed)."""
    return c.oci_image(
        ctx.work / "oci",
        [Blob(data, media)],
        Kernels.honest().labels() if labels is None else labels,
    )


def honest_prefix() -> bytes:
    """The honest kernels as tar records, with no end-of-archive."""
    return c.tar_of(Kernels.honest(bad_from=None).members())


def spoilt(name: str, data: bytes) -> Kernels:
    """The honest kernels with file ``name`` of BAD replaced by ``data``."""
    k = Kernels.honest()
    k.dirs[BAD][name] = data
    return k


def unlabelled(k: Kernels) -> dict[str, str]:
    labels = k.labels()
    labels.pop(LABEL_CACHE_SIZE)
    return labels


BK = f"{C}/{BAD}"
META = "scale_relu_kernel.json"
GROUP = "__grp__scale_relu_kernel.json"
PTX = "scale_relu_kernel.ptx"


# ---------------------------------------------------------------- escapes


@case("absolute-path", Refuse("absolute path"), "a member named by an absolute path")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.reg(f"{ctx.decoy}/planted", b"x")])


@case("dotdot", Refuse("climbs out"), "a member name climbing out with ..")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.reg(f"{BK}/{ctx.up_to_decoy}/planted", b"x")])


@case("symlink-out-relative", Refuse("pointing out"), "a symlink out, then a write through it")
def _(ctx: Ctx) -> str:
    extra = [h.symlink(f"{BK}/out", ctx.up_to_decoy), h.reg(f"{BK}/out/planted", b"x")]
    return image(ctx, Kernels.honest(), extra)


@case("symlink-out-absolute", Refuse("absolute path"), "an absolute symlink, then a write")
def _(ctx: Ctx) -> str:
    extra = [h.symlink(f"{BK}/out", str(ctx.decoy)), h.reg(f"{BK}/out/planted", b"x")]
    return image(ctx, Kernels.honest(), extra)


@case(
    "cache-tree-symlink-chain",
    Refuse("io.triton.cache a symlink"),
    "io.triton.cache as a chain of in-image symlinks resolving to a cache elsewhere",
)
def _(ctx: Ctx) -> str:
    # Each link looks inside the image on its own ("a/.." is "."), together they
    # climb: M/a is the staging root, M/d four levels above it.
    extra = [
        h.directory(M),
        h.symlink(f"{M}/a", ".."),
        h.symlink(f"{M}/b", "a/.."),
        h.symlink(f"{M}/c", "b/.."),
        h.symlink(f"{M}/d", "c/.."),
        h.symlink(C, f"{M}/d/{ctx.decoy.name}/cache"),
    ]
    return image(ctx, Kernels(), extra, with_manifest=False, labels=Kernels.honest().labels())


@case(
    "write-through-in-image-symlink",
    Refuse("through a symlink"),
    "a file written below a symlink that stays inside the image",
)
def _(ctx: Ctx) -> str:
    extra = [h.symlink(f"{C}/alias", GOOD[0]), h.reg(f"{C}/alias/planted", b"x")]
    return image(ctx, Kernels.honest(), extra)


@case("manifest-symlink", Refuse("manifest.json a symlink"), "manifest.json as a symlink")
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    extra = [
        h.directory(M),
        h.reg(f"{M}/real.json", json.dumps(k.manifest()).encode()),
        h.symlink(h.MANIFEST_PATH, "real.json"),
    ]
    return image(ctx, k, extra, with_manifest=False)


@case("hardlink-out", Refuse("hard link"), "a hard link to a path outside the image")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.hardlink(f"{BK}/pw", f"{UP}etc/passwd")])


@case("hardlink-absolute", Refuse("hard link"), "a hard link to /etc/passwd")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.hardlink(f"{BK}/pw", "/etc/passwd")])


@case("hardlink-forward", Refuse("not a file unpacked before it"), "a hard link to a later file")
def _(ctx: Ctx) -> str:
    return image(
        ctx, Kernels.honest(), [h.hardlink(f"{BK}/early", f"{BK}/later"), h.reg(f"{BK}/later")]
    )


@case(
    "whiteout-through-symlink",
    Refuse("through a symlink"),
    "a second layer's whiteout reached through a symlink of the first",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    first = h.tar_bytes([*k.members(), h.symlink(f"{C}/alias", GOOD[0]), *k.manifest_members()])
    second = h.tar_bytes([h.reg(f"{C}/alias/.wh.{PTX}", b"")])
    blobs = [Blob(h.compress(first, h.OCI_GZIP)), Blob(h.compress(second, h.OCI_GZIP))]
    return c.oci_image(ctx.work / "oci", blobs, k.labels())


# ---------------------------------------------------------------- privileges and kinds


@case("char-device", Refuse("device node"), "a character device in a kernel directory")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.chardev(f"{BK}/null")])


@case("block-device", Refuse("device node"), "a block device")
def _(ctx: Ctx) -> str:
    m = h.Member(f"{BK}/sda", b"", tarfile.BLKTYPE, mode=0o660, devmajor=8)
    return image(ctx, Kernels.honest(), [m])


@case("fifo", Refuse("fifo"), "a FIFO (a reader would block on it)")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.fifo(f"{BK}/pipe")])


@case("setuid", Refuse("setuid"), "a setuid executable")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.reg(f"{BK}/tool", b"#!/bin/sh\n", mode=0o4755)])


@case("setgid-dir", Refuse("setuid/setgid"), "a setgid directory")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.directory(f"{C}/sub", mode=0o2755)])


@case("sparse-file", Refuse("sparse file"), "a GNU sparse file (size lies about the data)")
def _(ctx: Ctx) -> str:
    rec = c.pax({"GNU.sparse.major": b"1", "GNU.sparse.minor": b"0", "path": f"{BK}/s".encode()})
    return raw_image(
        ctx, h.compress(honest_prefix() + rec + c.regular("x", b"") + c.end(), h.OCI_GZIP)
    )


@case("unknown-type", Refuse("unsupported type"), "a tar entry of type V (volume label)")
def _(ctx: Ctx) -> str:
    data = honest_prefix() + c.header(f"{BK}/vol", type_=b"V") + c.end()
    return raw_image(ctx, h.compress(data, h.OCI_GZIP))


# ---------------------------------------------------------------- tar format abuse


@case("pax-negative-size", Refuse("malformed PAX size"), "a PAX size of -1024: reads backwards")
def _(ctx: Ctx) -> str:
    data = honest_prefix() + c.pax({"size": b"-1024"}) + c.regular(f"{BK}/x", b"") + c.end()
    return raw_image(ctx, h.compress(data, h.OCI_GZIP))


@case("pax-absurd-size", Refuse("more than"), "a PAX size of 10^18 bytes for a file of the cache")
def _(ctx: Ctx) -> str:
    data = honest_prefix() + c.pax({"size": b"1" + b"0" * 18}) + c.regular(f"{BK}/x", b"") + c.end()
    return raw_image(ctx, h.compress(data, h.OCI_GZIP))


@case("pax-nul-path", Refuse("NUL byte"), "a NUL byte inside a PAX path")
def _(ctx: Ctx) -> str:
    data = honest_prefix() + c.pax({"path": f"{BK}/a\0b".encode()}) + c.regular("x", b"") + c.end()
    return raw_image(ctx, h.compress(data, h.OCI_GZIP))


@case("pax-huge-record", Refuse("extension header"), "a 32 MiB PAX header")
def _(ctx: Ctx) -> str:
    body = c.pax_record("comment", b"a" * (32 * MIB))
    data = honest_prefix() + c.header("PaxHeader", size=len(body), type_=tarfile.XHDTYPE)
    return raw_image(
        ctx, h.compress(data + c.pad(body) + c.regular("x", b"") + c.end(), h.OCI_GZIP)
    )


@case("pax-global-flood", Refuse("global PAX records"), "many global PAX headers, new keys each")
def _(ctx: Ctx) -> str:
    recs = b"".join(c.pax({f"k{i}": b"v" * 60_000}, global_=True) for i in range(40))
    return raw_image(ctx, h.compress(honest_prefix() + recs + c.end(), h.OCI_GZIP))


@case("long-path", Refuse("bytes (at most"), "a 64 KiB path")
def _(ctx: Ctx) -> str:
    data = honest_prefix() + c.pax({"path": (f"{BK}/" + "d/" * 32_000 + "f").encode()})
    return raw_image(ctx, h.compress(data + c.regular("x", b"") + c.end(), h.OCI_GZIP))


@case("deep-directories", Refuse("nested"), "a file 40 directories deep in the cache tree")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), [h.reg(f"{BK}/" + "d/" * 40 + "f", b"x")])


@case("bad-checksum", Refuse("bad header checksum"), "a tar header with a wrong checksum")
def _(ctx: Ctx) -> str:
    block = bytearray(c.header(f"{BK}/x", size=0))
    block[148:156] = b"0000000\0"
    return raw_image(ctx, h.compress(honest_prefix() + bytes(block) + c.end(), h.OCI_GZIP))


@case("truncated-gzip", Refuse("truncated"), "a gzip layer cut in the middle")
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    blob = h.compress(h.tar_bytes([*k.members(), *k.manifest_members()]), h.OCI_GZIP)
    return raw_image(ctx, blob[: len(blob) // 2])


@case("truncated-tar", Refuse("ends in the middle"), "an uncompressed layer cut inside a file")
def _(ctx: Ctx) -> str:
    data = honest_prefix() + c.header(f"{BK}/big", size=10 * MIB) + b"x" * 1000
    return raw_image(ctx, data, media=h.OCI_TAR, labels=unlabelled(Kernels.honest()))


@case(
    "wrong-media-type", Refuse("not a tar layer"), "a layer of media type application/octet-stream"
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    return raw_image(ctx, h.tar_bytes(k.members()), media="application/octet-stream")


@case("garbage-layer", Refuse("cannot read a gzip layer"), "gzip magic followed by noise")
def _(ctx: Ctx) -> str:
    return raw_image(ctx, b"\x1f\x8b\x08\x00" + bytes(range(256)) * 64)


# ---------------------------------------------------------------- bombs


@case(
    "bomb-unlabelled-in-cache",
    Refuse("more than"),
    "no size label, 300 MiB of zeros in one kernel file (1:1000 gzip)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    head = honest_prefix() + c.header(f"{BK}/zeros", size=300 * MIB)
    return raw_image(ctx, c.gzip_stream([head, *c.zeros(300 * MIB), c.end()]), labels=unlabelled(k))


@case(
    "bomb-outside-the-trees",
    Refuse("decompression bomb"),
    "1 GiB of zeros in a file outside io.triton.cache (never written, still decompressed)",
)
def _(ctx: Ctx) -> str:
    head = honest_prefix() + c.header("junk/zeros", size=1024 * MIB)
    return raw_image(ctx, c.gzip_stream([head, *c.zeros(1024 * MIB), c.end()]))


@case(
    "bomb-gzip-members",
    Refuse("decompression bomb"),
    "512 concatenated gzip members of 1 MiB of zeros each, outside the trees",
)
def _(ctx: Ctx) -> str:
    first = c.gzip_stream([honest_prefix() + c.header("junk/zeros", size=512 * MIB)])
    member = c.gzip_stream(c.zeros(MIB))
    return raw_image(ctx, first + member * 512 + c.gzip_stream([c.end()]))


@case(
    "bomb-zstd", Refuse("decompression bomb"), "a zstd layer of 1 GiB of zeros, outside the trees"
)
def _(ctx: Ctx) -> str:
    head = honest_prefix() + c.header("junk/zeros", size=1024 * MIB)
    data = c.zstd_stream([head, *c.zeros(1024 * MIB), c.end()])
    return raw_image(ctx, data, media=h.OCI_ZSTD)


@case("size-label-too-small", Refuse("cache-size-bytes"), "a size label smaller than the layer")
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    return image(ctx, k, labels={**k.labels(), LABEL_CACHE_SIZE: "1000"})


@case(
    "manifest-tree-flood",
    Refuse("manifest tree is larger"),
    "80 MiB of files in io.triton.manifest/ (compressible)",
)
def _(ctx: Ctx) -> str:
    head = honest_prefix() + c.header(f"{M}/pad", size=80 * MIB)
    return raw_image(ctx, c.gzip_stream([head, *c.zeros(80 * MIB), c.end()]))


# ---------------------------------------------------------------- the image manifest


@case("manifest-deep-json", Refuse("nested"), "manifest.json nested 100,000 levels deep")
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    return image(ctx, k, manifest=b"[" * 100_000 + b"]" * 100_000)


@case("manifest-not-json", Refuse("not valid JSON"), "manifest.json that is not JSON")
def _(ctx: Ctx) -> str:
    return image(ctx, Kernels.honest(), manifest=b'{"triton": [')


@case("manifest-duplicate-kernel", Refuse("twice"), "the manifest lists one kernel twice")
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    doc["triton"].append(doc["triton"][0])
    return image(ctx, k, manifest=doc)


@case(
    "manifest-wrong-sha", Refuse("does not match the sha256"), "a kernel file altered after packing"
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    k.dirs[GOOD[0]]["add_kernel.ptx"] += b"// altered\n"
    return image(ctx, k, manifest=doc)


@case("manifest-negative-size", Refuse("has the size"), "the manifest gives a file a size of -1")
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    first = next(iter(doc["triton"][0]["files"].values()))
    first["size"] = -1
    return image(ctx, k, manifest=doc)


@case(
    "manifest-unlisted-file",
    Refuse("not in the image manifest"),
    "an extra file in a listed kernel",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    labels = {**k.labels(), LABEL_CACHE_SIZE: str(10 * MIB)}
    extra = [h.reg(f"{C}/{GOOD[0]}/payload.so", b"\x7fELF")]
    return image(ctx, k, extra, manifest=doc, labels=labels)


# ---------------------------------------------------------------- OCI descriptors that lie


@case("oci-digest-lie", Refuse("cannot pull"), "the OCI manifest names a layer by a wrong digest")
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    data = h.compress(h.tar_bytes([*k.members(), *k.manifest_members()]), h.OCI_GZIP)
    ref = c.oci_image(ctx.work / "oci", [Blob(data)], k.labels())
    # The blob is stored under the digest the manifest claims, but holds other bytes.
    blobs = ctx.work / "oci" / "blobs" / "sha256"
    true = next(p for p in blobs.iterdir() if p.read_bytes() == data)
    fake = "0" * 64
    (blobs / fake).write_bytes(data + b"tampered")
    index = json.loads((ctx.work / "oci" / "index.json").read_text())
    mpath = blobs / index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(mpath.read_text())
    manifest["layers"][0]["digest"] = f"sha256:{fake}"
    manifest["layers"][0]["size"] = len(data) + 8
    raw = json.dumps(manifest).encode()
    new = hashlib.sha256(raw).hexdigest()
    (blobs / new).write_bytes(raw)
    index["manifests"][0].update(digest=f"sha256:{new}", size=len(raw))
    (ctx.work / "oci" / "index.json").write_text(json.dumps(index))
    true.unlink()
    return ref


@case(
    "oci-size-lie",
    Install(),
    "the OCI manifest claims a layer of 100 bytes; no size claim is trusted, the digest is",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    data = h.compress(h.tar_bytes([*k.members(), *k.manifest_members()]), h.OCI_GZIP)
    return c.oci_image(ctx.work / "oci", [Blob(data)], k.labels(), size_of={0: 100})


# ---------------------------------------------------------------- bad kernels among good ones


@case(
    "group-list-passwd",
    Install(skipped={BAD: "/etc/passwd"}),
    "a 2.x list-form group naming /etc/passwd (Triton would join it to the cache dir)",
)
def _(ctx: Ctx) -> str:
    return image(ctx, spoilt(GROUP, json.dumps({"child_paths": [META, "/etc/passwd"]}).encode()))


@case(
    "group-dict-dotdot",
    Install(skipped={BAD: "the path"}),
    "a dict group whose path climbs with ..",
)
def _(ctx: Ctx) -> str:
    doc = {"child_paths": {META: f"/c/{BAD}/../../../etc/{META}"}}
    return image(ctx, spoilt(GROUP, json.dumps(doc).encode()))


@case(
    "group-dict-other-kernel",
    Install(skipped={BAD: "not a file of this kernel"}),
    "a group naming a file of another kernel directory",
)
def _(ctx: Ctx) -> str:
    doc = {"child_paths": {f"../{GOOD[0]}/add_kernel.json": f"/c/{GOOD[0]}/add_kernel.json"}}
    return image(ctx, spoilt(GROUP, json.dumps(doc).encode()))


@case(
    "group-dict-absolute-name",
    Install(skipped={BAD: "not a file of this kernel"}),
    "a group whose child name is an absolute path",
)
def _(ctx: Ctx) -> str:
    return image(
        ctx, spoilt(GROUP, json.dumps({"child_paths": {"/etc/shadow": "/etc/shadow"}}).encode())
    )


@case("group-deep-json", Install(skipped={BAD: "nested"}), "a group file nested 50,000 deep")
def _(ctx: Ctx) -> str:
    return image(ctx, spoilt(GROUP, b'{"child_paths": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"))


@case(
    "metadata-array",
    Install(skipped={BAD: "not an object"}),
    "metadata JSON [1,2,3] (Triton would crash on it)",
)
def _(ctx: Ctx) -> str:
    return image(ctx, spoilt(META, b"[1,2,3]"))


@case("metadata-deep", Install(skipped={BAD: "nested"}), "metadata nested 50,000 levels deep")
def _(ctx: Ctx) -> str:
    return image(ctx, spoilt(META, b"[" * 50_000 + b"]" * 50_000))


@case(
    "kernel-file-symlink-elsewhere",
    Install(skipped={BAD: "symlink"}),
    "a kernel file that is a symlink to another kernel's file",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    k.dirs[BAD].pop(PTX)
    return image(ctx, k, [h.symlink(f"{BK}/{PTX}", f"../{GOOD[1]}/{PTX}")], manifest=doc)


@case(
    "kernel-file-symlink-dangling",
    Install(skipped={BAD: "symlink"}),
    "a kernel file that is a dangling symlink",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    k.dirs[BAD].pop(PTX)
    return image(ctx, k, [h.symlink(f"{BK}/{PTX}", "nowhere.ptx")], manifest=doc)


@case(
    "kernel-dir-symlink",
    Install(skipped={BAD: "kernel directory is a symlink"}),
    "a kernel directory that is a symlink to a good one",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    k.dirs.pop(BAD)
    return image(ctx, k, [h.symlink(BK, GOOD[1])], manifest=doc)


@case(
    "kernel-symlink-sibling",
    Install(installed=frozenset({*GOOD, BAD})),
    "a relative symlink between two files of one kernel: installed as a copy",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    k.dirs[BAD]["alias.ptx"] = k.dirs[BAD][PTX]
    doc, labels = k.manifest(), k.labels()
    k.dirs[BAD].pop("alias.ptx")
    return image(ctx, k, [h.symlink(f"{BK}/alias.ptx", PTX)], manifest=doc, labels=labels)


@case(
    "kernel-hardlink-sibling",
    Install(installed=frozenset({*GOOD, BAD})),
    "a hard link between two files of one kernel: installed as a copy",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    k.dirs[BAD]["alias.ptx"] = k.dirs[BAD][PTX]
    doc, labels = k.manifest(), k.labels()
    k.dirs[BAD].pop("alias.ptx")
    extra = [h.hardlink(f"{BK}/alias.ptx", f"{BK}/{PTX}")]
    return image(ctx, k, extra, manifest=doc, labels=labels)


@case(
    "duplicate-entry",
    Install(installed=frozenset({*GOOD, BAD})),
    "one file twice in the layer, the later with other bytes (the later wins, then verified)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    doc = k.manifest()
    early = [h.reg(f"{BK}/{PTX}", b"the first copy, replaced below")]
    members = [h.directory(C), h.directory(BK), *early, *k.members(), *k.manifest_members(doc)]
    return c.oci_image(
        ctx.work / "oci", [Blob(h.compress(h.tar_bytes(members), h.OCI_GZIP))], k.labels()
    )


@case(
    "key-not-utf8",
    Install(skipped={"\udcff\udcfe": "not a Triton cache key"}, json=False),
    "a kernel directory named by bytes that are not UTF-8 (no manifest: scanned)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    k.dirs["\udcff\udcfe"] = k.dirs.pop(BAD)
    k.like["\udcff\udcfe"] = k.like.pop(BAD)
    return image(ctx, k, with_manifest=False)


@case(
    "key-terminal-escape",
    Install(skipped={"\x1b[2J\x1b]0;pwned\x07": "not a Triton cache key"}, json=False),
    "a kernel directory named with terminal control sequences",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    name = "\x1b[2J\x1b]0;pwned\x07"
    k.dirs[name] = k.dirs.pop(BAD)
    k.like[name] = k.like.pop(BAD)
    return image(ctx, k, with_manifest=False)


@case(
    "metadata-not-object-unlisted",
    Install(skipped={BAD: "not an object"}),
    "metadata [1,2,3] in an image without a manifest (scanned)",
)
def _(ctx: Ctx) -> str:
    return image(ctx, spoilt(META, b"[1,2,3]"), with_manifest=False)


# ---------------------------------------------------------------- labels that lie


@case(
    "summary-deep-json",
    Install(),
    "the summary label nested 100,000 deep (ignored with a warning; kernels judged one by one)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    return image(ctx, k, labels={**k.labels(), LABEL_SUMMARY: "[" * 100_000 + "]" * 100_000})


@case(
    "size-label-absurd",
    Install(),
    "a size label of 10^30 bytes (not believed; the compressed-size bound applies)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    return image(ctx, k, labels={**k.labels(), LABEL_CACHE_SIZE: "1" + "0" * 30})


@case("size-label-negative", Install(), "a size label of -1 (not believed)")
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    return image(ctx, k, labels={**k.labels(), LABEL_CACHE_SIZE: "-1"})


@case(
    "many-tiny-entries",
    Install(),
    "100,000 empty files outside the trees before the kernels",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    junk = b"".join(c.header(f"junk/{i}") for i in range(100_000))
    body = c.tar_of([*k.members(), *k.manifest_members()])
    return raw_image(ctx, h.compress(junk + body + c.end(), h.OCI_GZIP), labels=k.labels())


@case(
    "too-many-entries",
    Refuse("more than 1000000 entries"),
    "a million and one empty entries outside the trees",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    junk = c.many_headers("junk/f", 1_000_001)
    return raw_image(ctx, c.gzip_stream([c.tar_of(k.members()), junk, c.end()]), labels=k.labels())


@case("no-layers", Refuse("lists no layers"), "an image manifest with no layer at all")
def _(ctx: Ctx) -> str:
    return c.oci_image(ctx.work / "oci", [], Kernels.honest().labels())


@case(
    "entry-count-absurd",
    Install(),
    "an entry-count label of 10^15 (not believed, never used to size anything)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    return image(ctx, k, labels={**k.labels(), LABEL_ENTRY_COUNT: "1" + "0" * 15})


@case(
    "key-named-like-tcv-files",
    Install(skipped={".tcv.lock": "not a Triton cache key", "tmp.pid_1_ab": "leftover"}),
    "kernel directories named .tcv.lock and tmp.pid_1_ab (TCV's own names in DEST)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest()
    k.dirs[".tcv.lock"] = k.dirs.pop(BAD)
    k.like[".tcv.lock"] = GOOD[1]
    k.dirs["tmp.pid_1_ab"] = dict(k.dirs[".tcv.lock"])
    k.like["tmp.pid_1_ab"] = GOOD[1]
    return image(ctx, k, with_manifest=False)


@case(
    "gzip-trailing-garbage",
    Install(),
    "4 MiB of noise after the end of the tar inside the gzip stream (never read)",
)
def _(ctx: Ctx) -> str:
    k = Kernels.honest(bad_from=None)
    body = c.tar_of([*k.members(), *k.manifest_members()]) + c.end()
    return raw_image(ctx, c.gzip_stream([body, os.urandom(4 * MIB)]), labels=k.labels())
