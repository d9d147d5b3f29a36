"""Pruning the store: by size (LRU), by age, never a view a running container uses;
and ``tcv hook store`` in-process."""

from __future__ import annotations

import json
import os

from tcv.cli.app import Tcv
from tcv.errors import EXIT_USAGE
from tcv.hook import upper
from tcv.hook.prune import inventory, prune
from tcv.hook.store import Store, digest_dirname
from tcv.hook.view import ViewSpec, list_views, render_view

DIGEST = "sha256:" + "ef" * 32


def _store(tmp_path, caches_dir):
    fixture = caches_dir / "triton-3.9"
    keys = sorted(p.name for p in fixture.iterdir() if p.is_dir())
    image = tmp_path / "images" / digest_dirname(DIGEST)
    image.mkdir(parents=True)
    (image / "store.json").write_text(json.dumps({"image": "containers-storage:x"}))
    os.utime(image / "store.json", (500, 500))
    views = []
    for i, path in enumerate(["/a", "/b", "/c"]):
        v = render_view(tmp_path, ViewSpec.of(DIGEST, keys[:2], path, (0, 0)), fixture)
        os.utime(v.dir / "used", (1000 + i, 1000 + i))
        views.append(v)
    return Store(tmp_path), views


def test_size_cap_removes_the_oldest_not_the_one_in_use(tmp_path, caches_dir):
    store, (a, b, c) = _store(tmp_path, caches_dir)
    start = upper.process_start(os.getpid())
    upper.write_record(tmp_path, upper.Record("ctr", os.getpid(), start, a.key, DIGEST))
    entries = inventory(store)
    assert {e.name: e.in_use for e in entries if e.kind == "view"}[a.key] is True
    image = next(e for e in entries if e.kind == "image")
    # An image's last use is its newest view's (c's): b goes first, then the image
    # (tied with c, the image goes first: it can be fetched again), and two views fit.
    removed = prune(store, max_size=a.size + c.size)
    assert image.last_used == 1002
    assert {e.name for e in removed} == {b.key, image.name}
    assert sorted(v.key for v in list_views(tmp_path)) == sorted([a.key, c.key])
    assert not (tmp_path / "images" / digest_dirname(DIGEST)).exists()


def test_age_rule(tmp_path, caches_dir):
    store, (a, b, _c) = _store(tmp_path, caches_dir)
    removed = prune(store, max_age=10, now=1011.5)
    assert {e.name for e in removed} == {a.key, b.key}


def test_cli_store_list_and_prune(tmp_path, caches_dir, capsys):
    _store(tmp_path, caches_dir)
    _, code = Tcv.run(["tcv", "hook", "store", "--store", str(tmp_path), "--json"], exit=False)
    assert code == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(e["kind"] for e in listed["entries"]) == ["image", "view", "view", "view"]
    _, code = Tcv.run(["tcv", "hook", "store", "prune", "--store", str(tmp_path)], exit=False)
    assert code == EXIT_USAGE
    assert "give --max-age DAYS, --max-size SIZE or --absent" in capsys.readouterr().err
    args = ["tcv", "hook", "store", "prune", "--store", str(tmp_path), "--max-size", "0"]
    _, code = Tcv.run(args, exit=False)
    assert code == 0 and list_views(tmp_path) == []
