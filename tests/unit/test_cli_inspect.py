"""``tcv inspect`` in-process (faked skopeo): JSON, table, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.cli.app import Tcv
from tcv.errors import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from tcv.image.manifest import LABEL_SUMMARY, build_labels
from tests.harness import hostile as h

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "caches" / "triton-3.9"
LABELS = build_labels(scan_cache(FIXTURE).entries, "kernels")
DIGEST = "sha256:" + "e" * 64


def answer(fp, labels, argv_tail=None):
    # The raw manifest is read first; an image manifest sends tcv on to its config.
    fp.register([fp.program("skopeo"), "inspect", "--raw", fp.any()], stdout=h.IMAGE_MANIFEST)
    fp.register(
        [fp.program("skopeo"), "inspect", "--no-tags", *(argv_tail or [fp.any()])],
        stdout=json.dumps({"Digest": DIGEST, "Labels": labels}),
    )


def run(*argv):
    _, code = Tcv.run(["tcv", "inspect", *argv], exit=False)
    return code


def test_json(fp, capsys):
    answer(fp, LABELS, ["--tls-verify=false", "docker://127.0.0.1:5000/k:1"])
    assert run("127.0.0.1:5000/k:1", "--tls-verify=false", "--json") == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert list(doc) == ["image", "digest", "labels", "summary"]
    assert doc["image"] == "127.0.0.1:5000/k:1" and doc["digest"] == DIGEST
    assert doc["labels"] == LABELS
    assert doc["summary"] == json.loads(LABELS[LABEL_SUMMARY])
    # The Go readers' JSON types (docs/spec.md §3): arch a string, warp size an integer.
    assert all(
        isinstance(t["arch"], str) and isinstance(t["warp_size"], int)
        for t in doc["summary"]["targets"]
    )


def test_table(fp, capsys):
    answer(fp, LABELS)
    assert run("oci:/layout:t") == EXIT_OK
    out = capsys.readouterr().out
    assert "oci:/layout:t" in out and DIGEST in out
    assert "BACKEND" in out and "gfx942" in out and "9.4" in out
    assert "cache.triton.image/cache-size-bytes" in out


def test_image_without_summary_says_so(fp, capsys):
    answer(fp, {"org.opencontainers.image.title": "old"})
    assert run("q.io/old") == EXIT_OK
    assert "no cache.triton.image/summary label" in capsys.readouterr().out


def test_not_found_is_exit_5(fp, capsys):
    fp.register(
        [fp.program("skopeo"), "inspect", fp.any()],
        returncode=1,
        stderr='level=fatal msg="Error parsing image name \\"oci:/x\\": open /x/index.json: '
        'no such file or directory"',
    )
    assert run("oci:/x") == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "cannot read image oci:/x: open /x/index.json" in err


@pytest.mark.parametrize(
    "argv",
    [pytest.param([], id="no-image"), pytest.param(["ftp://x"], id="bad-transport")],
)
def test_bad_usage(capsys, argv):
    assert run(*argv) == EXIT_USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_help(capsys):
    Tcv.run(["tcv", "inspect", "--help"], exit=False)
    out = capsys.readouterr().out
    assert "never a layer" in out and "--json" in out
