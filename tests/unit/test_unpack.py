"""Safe layer unpacking: media types, formats, order, and every refusal."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from tcv.errors import ExtractError
from tcv.image.unpack import UnsafeLayerError, check_header, compression_of, unpack_layers
from tests.harness import hostile as h

C = "io.triton.cache"


def layer_file(tmp_path: Path, members, media=h.OCI_GZIP, name="layer") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(h.compress(h.tar_bytes(members), media))
    return path, media


def honest(key="K1", data=b"ptx-bytes") -> list[h.Member]:
    return [
        h.directory(C),
        h.directory(f"{C}/{key}"),
        h.reg(f"{C}/{key}/k.ptx", data),
        h.reg(f"{C}/{key}/k.json", b"{}"),
    ]


@pytest.fixture
def area(tmp_path):
    """A staging root with a sibling 'outside' that nothing may touch."""
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"precious")
    return root, outside


@pytest.mark.parametrize(
    "media",
    [
        pytest.param(h.OCI_GZIP, id="oci-gzip"),
        pytest.param(h.DOCKER_GZIP, id="docker-gzip"),
        pytest.param(h.OCI_ZSTD, id="oci-zstd"),
        pytest.param(h.OCI_TAR, id="oci-uncompressed"),
    ],
)
def test_media_types_unpack_and_hash(tmp_path, area, media):
    root, _ = area
    result = unpack_layers([layer_file(tmp_path, honest(), media)], root)
    assert (root / C / "K1" / "k.ptx").read_bytes() == b"ptx-bytes"
    assert result.files == {
        "K1/k.ptx": hashlib.sha256(b"ptx-bytes").digest(),
        "K1/k.json": hashlib.sha256(b"{}").digest(),
    }
    assert result.cache_bytes == 11


def test_mislabelled_compression_is_read_by_its_bytes(tmp_path, area):
    root, _ = area
    path = tmp_path / "l"
    path.write_bytes(h.compress(h.tar_bytes(honest()), h.OCI_GZIP))
    unpack_layers([(path, h.OCI_TAR)], root)
    assert (root / C / "K1" / "k.ptx").exists()


def test_unknown_media_type_is_refused():
    with pytest.raises(ExtractError, match="not a tar layer"):
        compression_of("application/vnd.oci.image.layer.v1.tar+bzip2", b"BZh")


def test_layers_apply_in_order_with_whiteouts(tmp_path, area):
    root, _ = area
    first = honest("K1", b"old") + honest("K2") + honest("K3")
    second = [
        h.reg(f"{C}/K1/k.ptx", b"new"),
        h.reg(f"{C}/.wh.K2"),
        h.reg(f"{C}/K3/.wh..wh..opq"),
        h.reg(f"{C}/K3/fresh.ptx", b"f"),
    ]
    result = unpack_layers(
        [layer_file(tmp_path, first, name="a"), layer_file(tmp_path, second, name="b")], root
    )
    assert (root / C / "K1" / "k.ptx").read_bytes() == b"new"
    assert not (root / C / "K2").exists()
    assert sorted(os.listdir(root / C / "K3")) == ["fresh.ptx"]
    assert result.files["K1/k.ptx"] == hashlib.sha256(b"new").digest()
    assert not any(k.startswith(("K2/", "K3/k.")) for k in result.files)


def test_entries_outside_the_two_trees_are_not_written(tmp_path, area):
    root, _ = area
    members = [*honest(), h.reg("etc/motd", b"hi"), h.reg("README", b"x")]
    unpack_layers([layer_file(tmp_path, members)], root)
    assert sorted(os.listdir(root)) == [C]


def test_links_inside_a_kernel_become_copies(tmp_path, area):
    root, _ = area
    members = [
        *honest(),
        h.hardlink(f"{C}/K1/copy.ptx", f"{C}/K1/k.ptx"),
        h.symlink(f"{C}/K1/alias.ptx", "k.ptx"),
        h.symlink(f"{C}/K1/chain.ptx", "./alias.ptx"),
    ]
    result = unpack_layers([layer_file(tmp_path, members)], root)
    for name in ("copy.ptx", "alias.ptx", "chain.ptx"):
        path = root / C / "K1" / name
        assert not path.is_symlink() and path.read_bytes() == b"ptx-bytes"
        assert os.stat(path).st_nlink == 1
        assert result.files[f"K1/{name}"] == result.files["K1/k.ptx"]
    assert result.bad == {}


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("../K2/k.ptx", id="other-kernel"),
        pytest.param("missing.ptx", id="dangling"),
        pytest.param("sub/k.ptx", id="through-a-dir"),
        pytest.param("loop.ptx", id="loop"),
    ],
)
def test_other_symlinks_in_a_kernel_mark_it_bad(tmp_path, area, target):
    root, _ = area
    members = [
        *honest(),
        h.symlink(f"{C}/K1/alias.ptx", target),
        h.symlink(f"{C}/K1/loop.ptx", "alias.ptx"),
    ]
    result = unpack_layers([layer_file(tmp_path, members)], root)
    assert "K1" in result.bad and "symlink" in result.bad["K1"]
    assert not (root / C / "K1" / "alias.ptx").exists()
    assert not any(p.is_symlink() for p in root.rglob("*"))


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([h.directory("x"), h.symlink(C, "x")], id="cache-tree"),
        pytest.param(
            [
                h.directory(C),
                h.reg("io.triton.manifest/m", b"{}"),
                h.symlink("io.triton.manifest/manifest.json", "m"),
            ],
            id="manifest",
        ),
    ],
)
def test_a_tree_or_the_manifest_as_a_symlink_is_refused(tmp_path, area, members):
    root, _ = area
    with pytest.raises(UnsafeLayerError, match="a symlink"):
        unpack_layers([layer_file(tmp_path, members)], root)


def test_a_kernel_dir_as_a_symlink_marks_it_bad(tmp_path, area):
    root, _ = area
    members = [*honest(), h.symlink(f"{C}/K9", "K1")]
    result = unpack_layers([layer_file(tmp_path, members)], root)
    assert "kernel directory is a symlink" in result.bad["K9"]
    assert not (root / C / "K9").exists()


def _pax_entry(records: dict[str, bytes], name: str = f"{C}/K1/x", data: bytes = b"") -> bytes:
    """A raw PAX 'x' header with ``records``, then a regular entry."""
    body = b""
    for key, value in records.items():
        rec = b" " + key.encode() + b"=" + value + b"\n"
        n = len(rec) + 1
        while len(str(n)) + len(rec) != n:
            n = len(str(n)) + len(rec)
        body += str(n).encode() + rec
    x = tarfile.TarInfo("PaxHeader")
    x.type = tarfile.XHDTYPE
    x.size = len(body)
    out = x.tobuf(tarfile.USTAR_FORMAT) + body + b"\0" * (-len(body) % 512)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return out + info.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


@pytest.mark.parametrize(
    ("records", "needle"),
    [
        pytest.param({"size": b"-1024"}, "malformed PAX size", id="negative-size"),
        pytest.param({"size": b"1_0"}, "malformed PAX size", id="underscore-size"),
        pytest.param({"path": b"io.triton.cache/K1/a\0b"}, "NUL byte", id="nul-path"),
        pytest.param({"path": b"io.triton.cache/" + b"a/" * 20 + b"f"}, "deep", id="deep"),
        pytest.param({"path": b"io.triton.cache/" + b"n" * 300}, "longer than", id="long-part"),
        pytest.param({"path": b"x/" * 2100}, r"bytes \(at most", id="long-name"),
    ],
)
def test_bad_pax_records_are_refused(tmp_path, area, records, needle):
    root, _ = area
    path = tmp_path / "pax.tar"
    path.write_bytes(_pax_entry(records) + b"\0" * 1024)
    with pytest.raises(UnsafeLayerError, match=needle):
        unpack_layers([(path, h.OCI_TAR)], root)


def test_a_gzip_bomb_outside_the_trees_is_refused_in_bounded_memory(tmp_path, area):
    import resource
    import zlib

    root, _ = area
    info = tarfile.TarInfo("elsewhere/zeros")
    info.size = 600 << 20
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [comp.compress(info.tobuf(tarfile.USTAR_FORMAT))]
    zeros = b"\0" * (1 << 20)
    parts += [comp.compress(zeros) for _ in range(600)]
    parts.append(comp.flush())
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(b"".join(parts))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UnsafeLayerError, match="decompression bomb"):
        unpack_layers([(path, h.OCI_GZIP)], root, max_bytes=1 << 20, max_other=1 << 20)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024


def test_many_gzip_members_read_quickly(tmp_path, area):
    import gzip

    root, _ = area
    raw = h.tar_bytes(honest())
    step = 4096
    blob = b"".join(gzip.compress(raw[i : i + step], mtime=0) for i in range(0, len(raw), step))
    blob += b"".join(gzip.compress(b"", mtime=0) for _ in range(2000))
    path = tmp_path / "members.tar.gz"
    path.write_bytes(blob)
    result = unpack_layers([(path, h.OCI_GZIP)], root)
    assert "K1/k.ptx" in result.files


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param(tarfile.GNU_FORMAT, id="gnu-longname"),
        pytest.param(tarfile.PAX_FORMAT, id="pax-path"),
        pytest.param(tarfile.USTAR_FORMAT, id="ustar-prefix"),
    ],
)
def test_long_names_in_every_tar_format(tmp_path, area, fmt):
    root, _ = area
    name = f"{C}/{'K' * 60}/{'n' * 80}.json"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo(name)
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    path = tmp_path / "l"
    path.write_bytes(buf.getvalue())
    unpack_layers([(path, h.OCI_TAR)], root)
    assert (root / name).read_bytes() == b"abc"


HOSTILE = [
    pytest.param([h.reg("/etc/evil", b"x")], "absolute path", id="absolute-path"),
    pytest.param([h.reg(f"{C}/../../outside/evil", b"x")], "climbs out", id="dotdot"),
    pytest.param([h.reg("../outside/keep", b"x")], "climbs out", id="dotdot-overwrite"),
    pytest.param([h.symlink(f"{C}/esc", "/tmp")], "absolute path", id="symlink-absolute"),
    pytest.param(
        [h.directory(C), h.symlink(f"{C}/esc", "../../outside")], "pointing out", id="symlink-up"
    ),
    pytest.param(
        [h.directory(C), h.symlink(f"{C}/k", "."), h.reg(f"{C}/k/file", b"x")],
        "through a symlink",
        id="write-through-symlink",
    ),
    pytest.param(
        [h.directory(C), h.hardlink(f"{C}/pw", "../outside/keep")], "hard link", id="hardlink-up"
    ),
    pytest.param(
        [h.directory(C), h.hardlink(f"{C}/pw", "/etc/passwd")], "hard link", id="hardlink-absolute"
    ),
    pytest.param(
        [h.directory(C), h.hardlink(f"{C}/pw", f"{C}/missing")],
        "not a file unpacked before",
        id="hardlink-dangling",
    ),
    pytest.param([h.chardev(f"{C}/null")], "device node", id="device-node"),
    pytest.param(
        [h.Member(f"{C}/sda", b"", tarfile.BLKTYPE, mode=0o660, devmajor=8)],
        "device node",
        id="block-device",
    ),
    pytest.param([h.fifo(f"{C}/pipe")], "fifo", id="fifo"),
    pytest.param([h.reg(f"{C}/K/suid", b"x", mode=0o4755)], "setuid", id="setuid"),
    pytest.param([h.reg(f"{C}/K/sgid", b"x", mode=0o2755)], "setuid/setgid", id="setgid"),
]


@pytest.mark.parametrize(("members", "needle"), HOSTILE)
def test_hostile_entries_are_refused(tmp_path, area, members, needle):
    root, outside = area
    before = h.snapshot(outside)
    with pytest.raises(UnsafeLayerError, match=needle):
        unpack_layers([layer_file(tmp_path, [*honest(), *members])], root)
    assert h.snapshot(outside) == before


def test_hostile_entries_are_refused_outside_the_kept_trees_too(tmp_path, area):
    root, _ = area
    with pytest.raises(UnsafeLayerError, match="device node"):
        unpack_layers([layer_file(tmp_path, [h.chardev("dev/null")])], root)


def test_more_cache_bytes_than_allowed_is_refused(tmp_path, area):
    root, _ = area
    members = [h.reg(f"{C}/K/big", b"x" * 5000)]
    with pytest.raises(UnsafeLayerError, match="more than 4096 bytes"):
        unpack_layers([layer_file(tmp_path, members)], root, max_bytes=4096)
    # Exactly the limit passes.
    root2 = tmp_path / "root2"
    root2.mkdir()
    unpack_layers([layer_file(tmp_path, members, name="again")], root2, max_bytes=5000)


def test_large_file_streams_and_counts(tmp_path, area):
    root, _ = area
    data = os.urandom(3 * 1024 * 1024 + 17)
    result = unpack_layers([layer_file(tmp_path, [h.reg(f"{C}/K/blob", data)])], root)
    assert (root / C / "K" / "blob").read_bytes() == data
    assert result.files["K/blob"] == hashlib.sha256(data).digest()


def test_manifest_tree_has_its_own_allowance(tmp_path, area):
    root, _ = area
    members = [h.reg("io.triton.manifest/manifest.json", b"{" * 2000)]
    with pytest.raises(UnsafeLayerError, match="manifest tree"):
        unpack_layers([layer_file(tmp_path, members)], root, max_other=1000)


@pytest.mark.parametrize(
    ("blob", "needle"),
    [
        pytest.param(b"\x1f\x8b" + b"garbage" * 20, "cannot read a gzip layer", id="corrupt-gzip"),
        pytest.param(
            h.compress(h.tar_bytes(honest()), h.OCI_GZIP)[:-30], "truncated", id="truncated-gzip"
        ),
        pytest.param(h.tar_bytes(honest())[:700], "ends in the middle", id="truncated-tar"),
        pytest.param(b"\x00" * 100 + b"x" * 412 + b"\x00" * 512, "checksum", id="not-a-tar"),
    ],
)
def test_damaged_layers_fail_cleanly(tmp_path, area, blob, needle):
    root, _ = area
    path = tmp_path / "l"
    path.write_bytes(blob)
    with pytest.raises(ExtractError, match=needle):
        unpack_layers([(path, h.OCI_GZIP if blob[:2] == b"\x1f\x8b" else h.OCI_TAR)], root)


def test_check_header_accepts_plain_entries():
    from tcv.image.unpack import Header

    assert check_header(Header("./io.triton.cache/K/a.json")) == f"{C}/K/a.json"
    assert check_header(Header("./", type=b"5")) == ""


def test_progress_reports_compressed_bytes(tmp_path, area):
    root, _ = area
    seen: list[int] = []
    path, media = layer_file(tmp_path, honest())
    unpack_layers([(path, media)], root, progress=seen.append)
    assert seen and seen[-1] == path.stat().st_size


def test_hardlink_through_a_symlink_is_refused(tmp_path, area):
    root, _ = area
    members = [
        *honest(),
        h.symlink(f"{C}/alias", "K1"),
        h.hardlink(f"{C}/alias/copy", f"{C}/K1/k.ptx"),
    ]
    with pytest.raises(UnsafeLayerError, match="through a symlink"):
        unpack_layers([layer_file(tmp_path, members)], root)


def test_limit_is_on_what_the_layers_unpack_to(tmp_path, area):
    """A later layer replacing a file does not count the old bytes twice."""
    root, _ = area
    first = layer_file(tmp_path, [h.reg(f"{C}/K/a", b"x" * 600)], name="one")
    second = layer_file(tmp_path, [h.reg(f"{C}/K/a", b"y" * 600)], name="two")
    result = unpack_layers([first, second], root, max_bytes=600)
    assert result.cache_bytes == 600
    assert (root / C / "K" / "a").read_bytes() == b"y" * 600


def test_the_count_of_cache_files_is_bounded(tmp_path, area, monkeypatch):
    from tcv.image import unpack

    root, _ = area
    monkeypatch.setattr(unpack, "MAX_CACHE_FILES", 3)
    members = [*honest(), h.reg(f"{C}/K1/a"), h.reg(f"{C}/K1/b")]
    with pytest.raises(UnsafeLayerError, match="more than 3 files"):
        unpack_layers([layer_file(tmp_path, members)], root)


def test_the_count_of_entries_is_bounded(tmp_path, area, monkeypatch):
    from tcv.image import unpack

    root, _ = area
    monkeypatch.setattr(unpack, "MAX_MEMBERS", 5)
    members = [*honest(), *(h.reg(f"junk/{i}") for i in range(5))]
    with pytest.raises(UnsafeLayerError, match="more than 5 entries"):
        unpack_layers([layer_file(tmp_path, members)], root)
