"""Hostile layers, crafted here and served by a real registry: each is refused
(exit 1, one line), nothing is written outside staging, staging is removed, and
DEST is byte-identical to before."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.fetch import UNLABELLED_FLOOR, unlabelled_limit
from tcv.image.manifest import LABEL_CACHE_SIZE, build_labels, build_manifest
from tests.harness import hostile as h

pytestmark = pytest.mark.integration

C = h.CACHE_DIR
H100 = h.H100
# Where an escape would land: unique per session, checked for absence afterwards.
ESCAPE = Path("/tmp") / f"tcv-escape-{uuid.uuid4().hex}"
UP = "../" * 12


@pytest.fixture(scope="module")
def honest(caches_dir):
    """One cuda:90 kernel of the fixture, as members + manifest + labels."""
    cache = caches_dir / "triton-3.9"
    entries = [e for e in scan_cache(cache).entries if e.arch == "90"][:1]
    manifest = build_manifest(entries, str(cache))
    members = h.cache_members(cache, [e.key for e in entries], manifest)
    return members, build_labels(entries, "hostile"), entries[0].key


def hostile_members(key: str) -> dict[str, list[h.Member]]:
    return {
        "absolute-path": [h.reg(f"{ESCAPE}/abs", b"x")],
        "dotdot": [h.reg(f"{C}/{key}/{UP}{ESCAPE.relative_to('/')}/up", b"x")],
        "symlink-escape": [
            h.symlink(f"{C}/{key}/out", f"{UP}{ESCAPE.relative_to('/')}"),
            h.reg(f"{C}/{key}/out/through", b"x"),
        ],
        "symlink-absolute": [
            h.symlink(f"{C}/{key}/out", str(ESCAPE)),
            h.reg(f"{C}/{key}/out/through", b"x"),
        ],
        "hardlink-escape": [h.hardlink(f"{C}/{key}/passwd", f"{UP}etc/passwd")],
        "hardlink-absolute": [h.hardlink(f"{C}/{key}/passwd", "/etc/passwd")],
        "device-node": [h.chardev(f"{C}/{key}/null")],
        "fifo": [h.fifo(f"{C}/{key}/pipe")],
        "setuid": [h.reg(f"{C}/{key}/tool", b"#!/bin/sh\n", mode=0o4755)],
        "setgid": [h.reg(f"{C}/{key}/tool", b"#!/bin/sh\n", mode=0o2755)],
    }


CASES = [
    pytest.param(name, needle, id=name)
    for name, needle in [
        ("absolute-path", "absolute path"),
        ("dotdot", "climbs out"),
        ("symlink-escape", "pointing out of the image"),
        ("symlink-absolute", "symlink"),
        ("hardlink-escape", "hard link"),
        ("hardlink-absolute", "hard link"),
        ("device-node", "device node"),
        ("fifo", "fifo"),
        ("setuid", "setuid"),
        ("setgid", "setuid/setgid"),
    ]
]


@pytest.fixture
def dest(tmp_path, caches_dir):
    """A DEST that already holds a kernel and a user's file."""
    d = tmp_path / "dest"
    d.mkdir()
    cache = caches_dir / "triton-3.9"
    some = sorted(p for p in cache.iterdir() if p.is_dir())[0]
    (d / some.name).mkdir()
    for f in some.iterdir():
        (d / some.name / f.name).write_bytes(f.read_bytes())
    (d / "notes.txt").write_text("mine")
    return d


def extract(ref: str, dest: Path, staging: Path, *extra: str):
    return h.run_tcv(
        "-e", "-i", ref, "--tls-verify=false", "-d", str(dest), *H100, *extra, staging=staging
    )


def assert_refused(proc, needle: str, dest: Path, before: dict, staging: Path) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert h.snapshot(dest) == before
    assert not ESCAPE.exists()
    assert os.listdir(staging) == []


@pytest.mark.parametrize(("case", "needle"), CASES)
def test_hostile_layer_is_refused(registry, honest, tmp_path, dest, case, needle):
    members, labels, key = honest
    bad = hostile_members(key)[case]
    # The hostile entries ride inside an otherwise honest layer, before the manifest.
    layer = h.Layer([*members[:-2], *bad, *members[-2:]])
    image = h.write_image(tmp_path / "img", [layer], labels)
    ref = h.push(image, registry.ref(f"tcv-it/hostile-{case}:1"))
    before = h.snapshot(dest)
    staging = tmp_path / "staging"
    assert_refused(extract(ref, dest, staging), needle, dest, before, staging)


def test_more_bytes_than_the_label_says_is_refused(registry, honest, tmp_path, dest):
    members, labels, _ = honest
    lying = {**labels, LABEL_CACHE_SIZE: str(int(labels[LABEL_CACHE_SIZE]) - 1)}
    image = h.write_image(tmp_path / "img", [h.Layer(members)], lying)
    ref = h.push(image, registry.ref("tcv-it/hostile-oversized:1"))
    before = h.snapshot(dest)
    staging = tmp_path / "staging"
    assert_refused(extract(ref, dest, staging), "cache-size-bytes", dest, before, staging)


def test_max_size_switch_caps_an_honest_image(registry, honest, tmp_path, dest):
    members, labels, _ = honest
    image = h.write_image(tmp_path / "img", [h.Layer(members)], labels)
    ref = h.push(image, registry.ref("tcv-it/hostile-maxsize:1"))
    before = h.snapshot(dest)
    staging = tmp_path / "staging"
    proc = extract(ref, dest, staging, "--max-size", "1000")
    assert_refused(proc, "more than 1000 bytes", dest, before, staging)
    # Without the cap the same image installs.
    assert extract(ref, dest, staging).returncode == 0


def test_tampered_file_fails_the_manifest_check(registry, honest, tmp_path, dest):
    members, labels, _ = honest
    altered = [
        h.reg(m.name, m.data[:-2] + b"//") if m.name.endswith(".ptx") else m for m in members
    ]
    image = h.write_image(tmp_path / "img", [h.Layer(altered)], labels)
    ref = h.push(image, registry.ref("tcv-it/hostile-tampered:1"))
    before = h.snapshot(dest)
    staging = tmp_path / "staging"
    assert_refused(extract(ref, dest, staging), "sha256", dest, before, staging)


def test_unlabelled_decompression_bomb_is_refused(registry, honest, tmp_path, dest):
    """No cache-size-bytes label (as in the Go tools' images): the unpacked size is
    still bounded by the compressed size, so a bomb stops at the bound."""
    members, labels, key = honest
    unlabelled = {k: v for k, v in labels.items() if k != LABEL_CACHE_SIZE}
    bomb = h.reg(f"{C}/{key}/zeros.bin", bytes(UNLABELLED_FLOOR + (1 << 20)))
    image = h.write_image(tmp_path / "img", [h.Layer([*members, bomb])], unlabelled)
    # dir: layouts store each blob under its digest's hex.
    blob_bytes = sum((image.path / d.split(":")[1]).stat().st_size for d in image.layer_digests)
    assert unlabelled_limit(blob_bytes) == UNLABELLED_FLOOR  # the zeros shrink to ~256 KiB
    ref = h.push(image, registry.ref("tcv-it/hostile-bomb:1"))
    before = h.snapshot(dest)
    staging = tmp_path / "staging"
    proc = extract(ref, dest, staging)
    assert_refused(proc, f"more than {UNLABELLED_FLOOR} bytes", dest, before, staging)
    # The same image without the bomb installs: the bound does not touch honest images.
    honest_image = h.write_image(tmp_path / "img2", [h.Layer(members)], unlabelled)
    honest_ref = h.push(honest_image, registry.ref("tcv-it/unlabelled-honest:1"))
    assert extract(honest_ref, dest, staging).returncode == 0
    assert (dest / key).is_dir()
