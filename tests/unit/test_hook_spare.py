"""Spares on real temporary directories: the tuple's name, exclusive claims, moving
in without replacing, leftovers, refills and the sweep."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from tcv.cache import scan_cache
from tcv.hook import spare as sp
from tcv.hook.state import HookError
from tcv.hook.store import digest_dirname
from tcv.install import LOCK_NAME
from tcv.manifest import build_manifest

DIGEST = "sha256:" + "cd" * 32
OTHER = "sha256:" + "ef" * 32
OWNER = (1234, 2345)
PATH = "/cache/triton"


@pytest.fixture(scope="module")
def fixture_cache(caches_dir) -> Path:
    return caches_dir / "triton-3.9"


@pytest.fixture(scope="module")
def cuda90(caches_dir) -> list[str]:
    entries = json.loads((caches_dir / "index.json").read_text())["entries"]
    return sorted(
        e["key"]
        for e in entries
        if e["fixture"] == "triton-3.9" and (e["backend"], e["arch"]) == ("cuda", "90")
    )


@pytest.fixture
def store(tmp_path, fixture_cache) -> Path:
    """A store holding the fixture image under DIGEST, as a fill leaves it."""
    root = tmp_path / "store"
    image = root / "images" / digest_dirname(DIGEST)
    shutil.copytree(fixture_cache, image / "cache")
    (image / "store.json").write_text(json.dumps({
        "image": "containers-storage:localhost/k:1", "cache": "cache", "labels": {},
        "manifest": build_manifest(scan_cache(fixture_cache).entries, str(fixture_cache)),
    }))  # fmt: skip
    return root


def make_ready(spares: sp.Spares, spec: sp.SpareSpec, keys=None, marker="spare") -> Path:
    """A ready spare made by hand: one directory per key with a marker file."""
    d = spares.prepare(spec)
    ready = d / f"ready-{os.urandom(4).hex()}"
    for key in spec.keys if keys is None else keys:
        (ready / key).mkdir(parents=True)
        (ready / key / "k.json").write_text(marker)
    return ready


# --- the tuple ----------------------------------------------------------------------------


def test_spare_key_is_the_tuple_not_its_spelling():
    a = sp.spare_key(DIGEST, ["B", "A", "A"], PATH, OWNER)
    assert a == sp.spare_key(DIGEST, ("A", "B"), PATH, [1234, 2345])
    assert len(a) == 32 and int(a, 16) >= 0


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"digest": OTHER}, id="digest"),
        pytest.param({"keys": ["A"]}, id="fewer-keys"),
        pytest.param({"keys": ["A", "B", "C"]}, id="more-keys"),
        pytest.param({"container_path": "/cache"}, id="container-path"),
        pytest.param({"owner": (1234, 0)}, id="gid"),
        pytest.param({"owner": (0, 2345)}, id="uid"),
    ],
)
def test_spare_key_changes_with_each_part(changed):
    base = {"digest": DIGEST, "keys": ["A", "B"], "container_path": PATH, "owner": OWNER}
    assert sp.spare_key(**base) != sp.spare_key(**{**base, **changed})


def test_spec_document_round_trip():
    spec = sp.SpareSpec.of(DIGEST, ["B", "A"], PATH, OWNER)
    assert sp.SpareSpec.from_document(json.loads(json.dumps(spec.document()))) == spec
    assert spec.keys == ("A", "B")


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({"digest": DIGEST, "keys": [], "container_path": PATH}, id="no-owner"),
        pytest.param(
            {"digest": "nope", "keys": [], "container_path": PATH, "owner": [0, 0]},
            id="bad-digest",
        ),
        pytest.param(
            {"digest": DIGEST, "keys": [], "container_path": PATH, "owner": ["x", 0]},
            id="bad-owner",
        ),
    ],
)
def test_spec_from_bad_document(doc):
    with pytest.raises(HookError, match="not a spare description"):
        sp.SpareSpec.from_document(doc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, 2, id="default"),
        pytest.param("0", 0, id="off"),
        pytest.param(" 3 ", 3, id="three"),
        pytest.param("99", sp.MAX_SPARES, id="capped"),
        pytest.param("-1", 0, id="negative"),
    ],
)
def test_spares_wanted(value, expected):
    assert sp.spares_wanted({} if value is None else {sp.SPARES_ENV: value}) == expected


def test_spares_wanted_not_a_number_says_what_to_do():
    with pytest.raises(HookError) as info:
        sp.spares_wanted({sp.SPARES_ENV: "two"})
    assert "tcv hook install --spares N" in info.value.line()


@pytest.mark.parametrize(
    ("free", "total", "need", "ok"),
    [
        pytest.param(100, 100, 10, True, id="plenty"),
        pytest.param(20, 100, 15, True, id="exactly-five-percent-left"),
        pytest.param(20, 100, 16, False, id="below-five-percent"),
        pytest.param(10, 100, 20, False, id="does-not-fit"),
    ],
)
def test_has_room(free, total, need, ok):
    assert sp.has_room(free, total, need) is ok


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../x", id="dotdot"),
        pytest.param("a" * 31, id="short"),
        pytest.param("trash-" + "a" * 26, id="not-alnum"),
        pytest.param("A" * 32, id="uppercase"),
        pytest.param("\u00e9" * 32, id="not-hex"),
    ],
)
def test_tuple_dir_refuses_other_names(tmp_path, name):
    with pytest.raises(HookError):
        sp.Spares(tmp_path).tuple_dir(name)


# --- claiming -----------------------------------------------------------------------------


def test_claim_takes_each_ready_spare_once(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    assert spares.claim(spec.key) is None  # nothing made yet
    make_ready(spares, spec)
    make_ready(spares, spec)
    first, second = spares.claim(spec.key), spares.claim(spec.key)
    assert first and second and first != second
    assert first.name.startswith(f"claimed-{os.getpid()}-")
    assert spares.claim(spec.key) is None
    assert spares.ready(spec.key) == []


def test_claim_is_exclusive_among_racing_claimers(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    make_ready(spares, spec)
    won: list[Path | None] = []
    start = threading.Barrier(8)

    def claimer() -> None:
        start.wait()
        won.append(spares.claim(spec.key))

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [w for w in won if w is not None]
    assert len(won) == 8 and len(winners) == 1
    assert (winners[0] / "A" / "k.json").read_text() == "spare"


def test_claim_marks_the_tuple_used(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    make_ready(spares, spec)
    spec_file = spares.tuple_dir(spec.key) / sp.SPEC_FILE
    os.utime(spec_file, (1, 1))
    assert spares.claim(spec.key)
    assert spec_file.stat().st_mtime > time.time() - 60


# --- moving in ----------------------------------------------------------------------------


def test_move_in_skips_present_keys_and_never_replaces(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A", "B", "C", "D"], PATH, OWNER)
    make_ready(spares, spec, keys=["A", "B", "C"])  # D is missing from the spare
    dest = tmp_path / "dest"
    (dest / "B").mkdir(parents=True)
    (dest / "B" / "k.json").write_text("theirs")
    (dest / "C").mkdir()  # even an empty directory is kept
    claimed = spares.claim(spec.key)
    assert claimed is not None
    moved = sp.move_in(claimed, ["A", "B", "C", "D"], dest, OWNER)
    assert (moved.moved, moved.present, moved.missing) == (["A"], ["B", "C"], ["D"])
    assert moved.error is None
    assert (dest / "A" / "k.json").read_text() == "spare"
    assert (dest / "B" / "k.json").read_text() == "theirs"
    assert list((dest / "C").iterdir()) == []
    # The same lock as install_kernels, given to the container's user like the files.
    assert (dest / LOCK_NAME).stat().st_uid == OWNER[0]
    # What was not moved stays in the claimed spare until it is discarded.
    assert sorted(p.name for p in claimed.iterdir()) == ["B", "C"]


def test_move_in_refuses_unsafe_keys(tmp_path):
    (tmp_path / "claimed").mkdir()
    with pytest.raises(HookError, match="unsafe key"):
        sp.move_in(tmp_path / "claimed", ["../etc"], tmp_path, None)


def test_move_in_waits_for_the_install_lock(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    make_ready(spares, spec)
    claimed = spares.claim(spec.key)
    dest = tmp_path / "dest"
    dest.mkdir()
    held = os.open(dest / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    results: list[sp.Moved] = []
    mover = threading.Thread(target=lambda: results.append(sp.move_in(claimed, ["A"], dest, None)))
    try:
        mover.start()
        mover.join(0.3)
        assert mover.is_alive() and not (dest / "A").exists()
    finally:
        os.close(held)
    mover.join()
    assert results[0].moved == ["A"]


def test_discard_removes_an_empty_claim_and_sets_leftovers_aside(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A", "B"], PATH, OWNER)
    make_ready(spares, spec)
    make_ready(spares, spec)
    d = spares.tuple_dir(spec.key)
    empty = spares.claim(spec.key)
    assert empty is not None
    (tmp_path / "d1").mkdir()
    sp.move_in(empty, ["A", "B"], tmp_path / "d1", None)
    spares.discard(empty)
    assert not empty.exists()
    leftover = spares.claim(spec.key)
    assert leftover is not None
    (tmp_path / "d2" / "B").mkdir(parents=True)
    sp.move_in(leftover, ["A", "B"], tmp_path / "d2", None)
    spares.discard(leftover)
    assert not leftover.exists()
    trash = [n for n in os.listdir(d) if n.startswith("trash-")]
    assert len(trash) == 1 and os.listdir(d / trash[0]) == ["B"]
    assert spares.sweep() == [f"{spec.key}/{trash[0]}"]
    assert sorted(os.listdir(d)) == [sp.LOCK_FILE, sp.SPEC_FILE]


# --- making spares ------------------------------------------------------------------------


def test_refill_makes_rendered_private_copies(store, cuda90, fixture_cache):
    spares = sp.Spares(store / "spares")
    spec = sp.SpareSpec.of(DIGEST, cuda90, PATH, OWNER)
    spares.prepare(spec)
    made = sp.refill(store, spec.key, wanted=2)
    assert len(made) == 2 and sorted(p.name for p in made) == spares.ready(spec.key)
    for ready in made:
        assert sorted(os.listdir(ready)) == cuda90  # no lock file, nothing else
        for key in cuda90:
            entry = ready / key
            assert (entry.stat().st_uid, entry.stat().st_gid) == OWNER
            assert sorted(os.listdir(entry)) == sorted(os.listdir(fixture_cache / key))
            for f in entry.iterdir():
                assert (f.stat().st_uid, f.stat().st_gid) == OWNER
                # A private copy: never the store's inode.
                assert f.stat().st_ino != (fixture_cache / key / f.name).stat().st_ino
                if f.name.startswith("__grp__"):
                    paths = json.loads(f.read_text())["child_paths"].values()
                    assert paths and all(p.startswith(f"{PATH}/{key}/") for p in paths)
    assert sp.refill(store, spec.key, wanted=2) == []  # already enough


def test_refill_without_its_image_makes_nothing(store):
    spares = sp.Spares(store / "spares")
    spec = sp.SpareSpec.of(OTHER, ["A"], PATH, OWNER)
    spares.prepare(spec)
    assert sp.refill(store, spec.key, wanted=2) == []
    assert spares.ready(spec.key) == []


def test_failed_build_leaves_nothing(store):
    spares = sp.Spares(store / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["NOSUCHKERNEL"], PATH, OWNER)
    d = spares.prepare(spec)
    with pytest.raises(Exception, match="NOSUCHKERNEL"):
        spares.build(spec, store / "images" / digest_dirname(DIGEST) / "cache")
    assert sorted(os.listdir(d)) == [sp.SPEC_FILE]


# --- the sweep ----------------------------------------------------------------------------


def dead_pid() -> int:
    """A pid no process has: past the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_sweep_removes_what_no_one_uses(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    d = spares.prepare(spec)
    for name in ("building-1", f"claimed-{dead_pid()}-1", f"claimed-{os.getpid()}-2", "trash-1"):
        (d / name / "A").mkdir(parents=True)
    ready = make_ready(spares, spec)
    (spares.root / "trash-x").mkdir()
    removed = spares.sweep(live_images={digest_dirname(DIGEST)})
    assert sorted(removed) == sorted(
        ["trash-x", f"{spec.key}/building-1", f"{spec.key}/claimed-{dead_pid()}-1",
         f"{spec.key}/trash-1"]
    )  # fmt: skip
    # The live hook's claim, the ready spare and the tuple itself stay.
    assert sorted(os.listdir(d)) == sorted(
        [f"claimed-{os.getpid()}-2", ready.name, sp.LOCK_FILE, sp.SPEC_FILE]
    )


def test_sweep_keeps_a_refill_in_progress(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    d = spares.prepare(spec)
    (d / "building-1").mkdir()
    os.utime(d / sp.SPEC_FILE, (1, 1))  # unused for long, but its refill runs
    with spares.refill_lock(spec.key) as got:
        assert got
        assert spares.sweep(live_images=set()) == []
    assert (d / "building-1").is_dir()


@pytest.mark.parametrize(
    ("age_days", "live", "dropped"),
    [
        pytest.param(8, True, True, id="unused-for-a-week"),
        pytest.param(0, False, True, id="image-left-the-store"),
        pytest.param(0, True, False, id="in-use"),
    ],
)
def test_sweep_drops_whole_tuples(tmp_path, age_days, live, dropped):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    d = spares.prepare(spec)
    make_ready(spares, spec)
    then = time.time() - age_days * 86400
    os.utime(d / sp.SPEC_FILE, (then, then))
    removed = spares.sweep(live_images={digest_dirname(DIGEST)} if live else set())
    assert (spec.key in removed) is dropped
    assert d.exists() is not dropped
    assert [n for n in os.listdir(spares.root) if n.startswith("trash-")] == []


def test_sweep_never_drops_the_tuple_it_refills(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    d = spares.prepare(spec)
    ready = make_ready(spares, spec)
    with spares.refill_lock(spec.key):
        assert spares.sweep(held=spec.key, live_images=set()) == []
    assert ready.is_dir() and d.is_dir()


def test_sweep_keeps_a_tuple_with_a_live_claim(tmp_path):
    spares = sp.Spares(tmp_path / "spares")
    spec = sp.SpareSpec.of(DIGEST, ["A"], PATH, OWNER)
    make_ready(spares, spec)
    claimed = spares.claim(spec.key)
    assert claimed is not None
    spares.sweep(live_images=set())
    assert (claimed / "A").is_dir()  # the claiming hook is still moving it


# --- the detached process -----------------------------------------------------------------


def test_refill_argv_runs_this_tcv_with_this_python(tmp_path):
    argv = sp.refill_argv(tmp_path, "e" * 32, 2, 60.0, 1.5)
    assert argv[0] == sys.executable and argv[1] == "-c"
    assert Path(argv[3], "tcv", "hook", "spare.py").is_file()
    assert argv[4:] == [str(tmp_path), "e" * 32, "2", "60", "1.5"]


def test_request_without_a_keeper_starts_one(tmp_path, fp):
    argv = sp.refill_argv(tmp_path, "e" * 32, 2, 0.5)
    fp.register(argv)
    assert isinstance(sp.request_refill(tmp_path, "e" * 32, 2, 0.5), int)
    assert fp.call_count(argv) == 1


@pytest.mark.parametrize(
    ("data", "requests", "rest"),
    [
        pytest.param(b"", {}, b"", id="nothing"),
        pytest.param(b"a" * 32 + b" 2\n", {"a" * 32: 2}, b"", id="one"),
        pytest.param(
            b"a" * 32 + b" 2\n" + b"a" * 32 + b" 1\nbb",
            {"a" * 32: 1},
            b"bb",
            id="last-wins-partial-kept",
        ),
        pytest.param(
            b"../x 2\n" + b"b" * 32 + b" 99\nnonsense\n",
            {"b" * 32: sp.MAX_SPARES},
            b"",
            id="bad-lines-dropped-capped",
        ),
    ],
)
def test_parse_requests(data, requests, rest):
    assert sp.parse_requests(data) == (requests, rest)


def test_send_request_only_to_a_listening_keeper(tmp_path):
    key = "c" * 32
    assert sp.send_request(tmp_path, key, 2) is False  # no FIFO
    fifo = tmp_path / sp.KEEPER_FIFO
    os.mkfifo(fifo)
    assert sp.send_request(tmp_path, key, 2) is False  # a FIFO no one reads
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert sp.send_request(tmp_path, key, 2) is True
        assert os.read(reader, 100) == f"{key} 2\n".encode()
    finally:
        os.close(reader)
    fifo.unlink()
    fifo.write_text("")  # not a FIFO: never written to
    assert sp.send_request(tmp_path, key, 2) is False
    assert fifo.read_text() == ""


def test_keeper_serves_and_leaves_when_idle(store, cuda90):
    spares = sp.Spares(store / "spares")
    spec = sp.SpareSpec.of(DIGEST, cuda90, PATH, OWNER)
    spares.prepare(spec)
    errors = []
    assert sp.keep(store, spec.key, 2, 0, lambda k, e: errors.append((k, e))) == 1
    assert errors == [] and len(spares.ready(spec.key)) == 2
    assert not (spares.root / sp.KEEPER_FIFO).exists()  # new requests start a new keeper
    with sp._flock(spares.root / sp.KEEPER_LOCK, blocking=False) as got:
        assert got  # and that one gets the lock


def test_keeper_reports_a_failed_tuple_and_serves_on(store):
    spares = sp.Spares(store / "spares")
    bad = sp.SpareSpec.of(DIGEST, ["NOSUCHKERNEL"], PATH, OWNER)
    spares.prepare(bad)
    errors = []
    assert sp.keep(store, bad.key, 1, 0, lambda k, e: errors.append(k)) == 0
    assert errors == [bad.key]


def test_request_goes_to_the_running_keeper(store):
    """A second refill process hands its request to the keeper that holds the lock."""
    spares = sp.Spares(store / "spares")
    spares.root.mkdir(parents=True)
    os.mkfifo(spares.root / sp.KEEPER_FIFO)
    reader = os.open(spares.root / sp.KEEPER_FIFO, os.O_RDWR | os.O_NONBLOCK)
    try:
        with sp._flock(spares.root / sp.KEEPER_LOCK, blocking=True):
            assert sp.keep(store, "d" * 32, 2, 0, lambda k, e: None) == 0
        assert os.read(reader, 100) == b"d" * 32 + b" 2\n"
    finally:
        os.close(reader)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, sp.DEFAULT_KEEPER_IDLE, id="default"),
        pytest.param("0", 0.0, id="leave-at-once"),
        pytest.param("2.5", 2.5, id="seconds"),
        pytest.param("soon", sp.DEFAULT_KEEPER_IDLE, id="not-a-number"),
    ],
)
def test_keeper_idle(value, expected):
    assert sp.keeper_idle({} if value is None else {sp.KEEPER_IDLE_ENV: value}) == expected


def test_keeper_delay():
    assert sp.keeper_delay({}) == sp.DEFAULT_KEEPER_DELAY
    assert sp.keeper_delay({sp.KEEPER_DELAY_ENV: "0"}) == 0.0
