"""``tcv scan`` in-process: the table, ``--json`` (docs/spec.md §2), bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.cli.app import Tcv
from tcv.errors import EXIT_USAGE

CACHES = Path(__file__).resolve().parent.parent / "data" / "caches"
INDEX = json.loads((CACHES / "index.json").read_text())
FIXTURE = CACHES / "triton-3.9"


def _scan(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    _, code = Tcv.run(["tcv", "scan", *argv], exit=False)
    out, err = capsys.readouterr()
    return code, out, err


def test_table_lists_every_kernel_and_a_total(capsys):
    code, out, err = _scan(capsys, str(FIXTURE))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "NAME", "TARGET", "TRITON", "PTX", "FILES", "SIZE"]
    oracle = [e for e in INDEX["entries"] if e["fixture"] == "triton-3.9"]
    rows = lines[1 : 1 + len(oracle)]
    for want in sorted(oracle, key=lambda e: e["key"]):
        row = next(r for r in rows if r.startswith(want["key"][:15]))
        cells = row.split()
        assert cells[1] == want["name"]
        assert cells[2] == f"{want['backend']}:{want['arch']}:{want['warp_size']}"
        assert cells[3] == want["triton_version"]
        ptx = want["ptx_version"]
        assert cells[4] == ("-" if ptx is None else f"{ptx // 10}.{ptx % 10}")
        assert cells[5] == str(len(want["files"]))
    assert lines[-1].startswith(f"{len(oracle)} kernels, ")
    assert "0 skipped" in lines[-1]


def test_json_is_the_spec_document(capsys):
    code, out, _ = _scan(capsys, "--json", str(FIXTURE))
    assert code == 0
    doc = json.loads(out)
    assert doc == scan_cache(FIXTURE).to_json()
    assert doc["root"] == str(FIXTURE)
    want = {e["key"]: e for e in INDEX["entries"] if e["fixture"] == "triton-3.9"}
    for item in doc["entries"]:
        w = want[item["key"]]
        assert (item["arch"], item["ptx_version"], item["files"]) == (
            w["arch"],
            w["ptx_version"],
            len(w["files"]),
        )


def test_skipped_entries_are_listed_with_reasons(capsys, tmp_path):
    root = Path(shutil.copytree(FIXTURE, tmp_path / "cache"))
    (root / "EMPTY").mkdir()
    (root / "UTILS").mkdir()
    (root / "UTILS" / "cuda_utils.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    os.mkfifo(root / "FIFO")
    code, out, _ = _scan(capsys, str(root))
    assert code == 0
    assert "skipped EMPTY: empty directory" in out
    assert "skipped UTILS: launcher/utils .so directory" in out
    assert "skipped FIFO: a file at the top of the cache" in out
    assert "3 skipped" in out.splitlines()[-1]

    code, out, _ = _scan(capsys, "--json", "--include-launchers", str(root))
    doc = json.loads(out)
    assert "UTILS" in [e["key"] for e in doc["entries"]]
    assert [s["path"] for s in doc["skipped"]] == ["EMPTY", "FIFO"]


def test_empty_cache(capsys, tmp_path):
    code, out, err = _scan(capsys, str(tmp_path))
    assert code == 0, err
    assert f"no kernels in {tmp_path}" in out
    code, out, _ = _scan(capsys, "--json", str(tmp_path))
    assert json.loads(out) == {"root": str(tmp_path), "entries": [], "skipped": []}


def test_default_dir_is_tritons(capsys, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(FIXTURE))
    code, out, _ = _scan(capsys, "--json")
    assert code == 0
    assert json.loads(out)["root"] == str(FIXTURE)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(lambda p: p / "missing", "does not exist", id="missing-dir"),
        pytest.param(lambda p: (p / "f").write_text("x") and p / "f", "not a directory", id="file"),
    ],
)
@pytest.mark.parametrize(
    "json_flag", [pytest.param([], id="table"), pytest.param(["--json"], id="json")]
)
def test_bad_dir_is_one_line_and_exit_3(capsys, tmp_path, make, needle, json_flag):
    code, out, err = _scan(capsys, *json_flag, str(make(tmp_path)))
    assert code == EXIT_USAGE
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert lines[0].startswith("tcv scan: error:")
    assert "Traceback" not in err
    if json_flag:
        # Scripts get the error as JSON on stdout too (and need not parse stderr).
        doc = json.loads(out)
        assert doc == {"error": lines[0].removeprefix("tcv scan: error: "), "exit_code": 3}
    else:
        assert out == ""


def test_help_documents_the_json_and_exit_codes(capsys):
    _, code = Tcv.run(["tcv", "scan", "--help"], exit=False)
    out = capsys.readouterr().out
    assert code == 0
    assert '"skipped": [{"path", "reason"}]' in out
    assert "Exit status" in out
    assert "--include-launchers" in out
