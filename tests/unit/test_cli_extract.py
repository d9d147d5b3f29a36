"""``tcv -e`` in-process: switches, output, exit codes (faked skopeo)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.cli.app import Tcv
from tcv.errors import EXIT_INCOMPATIBLE, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from tcv.image.manifest import LABEL_SUMMARY, build_labels, build_manifest
from tests.harness import hostile as h

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "caches" / "triton-3.9"
SCAN = scan_cache(FIXTURE)
REF = "127.0.0.1:5000/kernels:1"


@pytest.fixture(autouse=True)
def _staging(tmp_path, monkeypatch):
    monkeypatch.setenv("TCV_STAGING_ROOT", str(tmp_path / "staging"))
    monkeypatch.delenv("TCV_GPUS", raising=False)


def serve(fp, tmp_path, labels=None, copy=True):
    """Fake skopeo answering for one crafted image of the fixture cache."""
    labels = build_labels(SCAN.entries, "kernels") if labels is None else labels
    layer = h.Layer(h.cache_members(FIXTURE, None, build_manifest(SCAN.entries, str(FIXTURE))))
    crafted = h.write_image(tmp_path / "crafted", [layer], labels)
    fp.register([fp.program("skopeo"), "inspect", "--raw", fp.any()], stdout=h.IMAGE_MANIFEST)
    fp.register(
        [fp.program("skopeo"), "inspect", fp.any()],
        stdout=json.dumps({"Digest": crafted.manifest_digest, "Labels": labels}),
    )
    if copy:

        def do_copy(process):
            shutil.copytree(crafted.path, process.args[-1].removeprefix("dir:"))

        fp.register([fp.program("skopeo"), "copy", fp.any()], callback=do_copy)
    return crafted


def run(*argv):
    _, code = Tcv.run(["tcv", *argv], exit=False)
    return code


def keys(backend, arch):
    return sorted(e.key for e in SCAN.entries if (e.backend, e.arch) == (backend, arch))


def test_json_output_and_exit_0(fp, tmp_path, capsys):
    crafted = serve(fp, tmp_path)
    dest = tmp_path / "dest"
    code = run(
        "-e", "-i", REF, "--tls-verify=false", "-d", str(dest), "--gpu", "hip:gfx942", "--json"
    )
    out = capsys.readouterr().out
    assert code == EXIT_OK
    doc = json.loads(out)
    assert doc["image"] == REF and doc["digest"] == crafted.manifest_digest
    assert doc["dest"] == str(dest)
    assert doc["installed"] == keys("hip", "gfx942")
    assert doc["present"] == []
    assert {s["key"] for s in doc["skipped"]} == {e.key for e in SCAN.entries} - set(
        keys("hip", "gfx942")
    )
    assert all(s["reason"] for s in doc["skipped"])


def test_table_and_rerun_present(fp, tmp_path, capsys):
    serve(fp, tmp_path)
    serve(fp, tmp_path / "again")
    dest = tmp_path / "dest"
    assert run("-e", "-i", REF, "-d", str(dest), "--gpu", "hip:gfx942") == EXIT_OK
    first = capsys.readouterr().out
    # The default is a summary by target: no per-kernel rows, each reason once.
    assert "TARGET" in first and "KEY" not in first
    assert not any(e.key in first for e in SCAN.entries)
    rows = rows_of(first)
    assert rows["hip:gfx942:64"] == ["2", "0", "0"]
    skipped = [e for e in SCAN.entries if (e.backend, e.arch) != ("hip", "gfx942")]
    assert sum(int(r[2]) for r in rows.values()) == len(skipped)
    reasons = first.split("skipped:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert sum(int(r.split()[0]) for r in reasons) == len(skipped)
    assert len(set(reasons)) == len(reasons)
    assert run("-e", "-i", REF, "-d", str(dest), "--gpu", "hip:gfx942") == EXIT_OK
    second = capsys.readouterr().out
    assert "0 installed, 2 already present" in second
    assert rows_of(second)["hip:gfx942:64"] == ["0", "2", "0"]


def rows_of(out):
    table = out.split("\n\n", 1)[0].splitlines()[1:]
    return {ln.split()[0]: ln.split()[1:] for ln in table}


def test_verbose_lists_every_kernel(fp, tmp_path, capsys):
    serve(fp, tmp_path)
    dest = tmp_path / "dest"
    assert run("-e", "-i", REF, "-d", str(dest), "--gpu", "hip:gfx942", "--verbose") == EXIT_OK
    out = capsys.readouterr().out
    assert "KEY" in out and "RESULT" in out
    assert all(e.key in out for e in SCAN.entries)


def test_default_dest_is_tritons(fp, tmp_path, monkeypatch, capsys):
    serve(fp, tmp_path)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "tcd"))
    assert run("-e", "-i", REF, "--gpu", "hip:gfx942", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["dest"] == str(tmp_path / "tcd")
    assert sorted(os.listdir(tmp_path / "tcd")) == sorted([*keys("hip", "gfx942"), ".tcv.lock"])


def test_preflight_exit_4_pulls_nothing(fp, tmp_path, capsys):
    serve(fp, tmp_path, copy=False)  # an unregistered `skopeo copy` would fail the test
    code = run("-e", "-i", REF, "-d", str(tmp_path / "d"), "--gpu", "cuda:75")
    err = capsys.readouterr().err
    assert code == EXIT_INCOMPATIBLE
    assert len(err.strip().splitlines()) == 1 and "nothing in" in err
    assert not (tmp_path / "d").exists()


def test_nothing_fits_per_kernel_is_exit_4_with_reasons(fp, tmp_path, capsys):
    labels = {k: v for k, v in build_labels(SCAN.entries, "k").items() if k != LABEL_SUMMARY}
    serve(fp, tmp_path, labels=labels)
    code = run("-e", "-i", REF, "-d", str(tmp_path / "d"), "--gpu", "cuda:75", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert code == EXIT_INCOMPATIBLE
    assert doc["installed"] == [] and len(doc["skipped"]) == len(SCAN.entries)


def test_not_found_is_exit_5(fp, tmp_path, capsys):
    fp.register(
        [fp.program("skopeo"), "inspect", fp.any()],
        returncode=1,
        stderr='level=fatal msg="reading manifest 1 in 127.0.0.1:5000/kernels: manifest unknown"',
    )
    assert run("-e", "-i", REF, "-d", str(tmp_path / "d"), "--gpu", "cuda:90") == EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert "manifest unknown" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        pytest.param(["-e"], "extracting needs an image", id="no-image"),
        pytest.param(["-e", "-i", "Bad Ref"], "invalid image reference", id="bad-ref"),
        pytest.param(["-e", "-i", REF, "--max-size", "0"], "--max-size", id="bad-max-size"),
        pytest.param(
            ["-e", "-i", REF, "--no-gpu-check", "--gpu", "cuda:90"], "contradict", id="contradict"
        ),
        pytest.param(["-e", "-i", REF, "--gpu", "cuda:nine"], "cuda:nine", id="bad-gpu-spec"),
    ],
)
def test_bad_usage_is_exit_3(capsys, argv, needle):
    assert run(*argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_no_gpu_check_installs_all(fp, tmp_path, capsys):
    serve(fp, tmp_path)
    dest = tmp_path / "d"
    assert run("-e", "-i", REF, "-d", str(dest), "--no-gpu-check", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["installed"] == sorted(e.key for e in SCAN.entries)


def test_help_documents_the_extract_switches(capsys):
    Tcv.run(["tcv", "--help"], exit=False)
    out = capsys.readouterr().out
    for switch in ("--no-gpu-check", "--force", "--max-size", "--tls-verify", "--authfile"):
        assert switch in out


def test_differing_kernel_needs_force(fp, tmp_path, capsys):
    serve(fp, tmp_path)
    serve(fp, tmp_path / "again")
    dest = tmp_path / "d"
    key = keys("hip", "gfx942")[0]
    (dest / key).mkdir(parents=True)
    (dest / key / "other.json").write_text("{}")
    assert run("-e", "-i", REF, "-d", str(dest), "--gpu", "hip:gfx942", "--json") == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert key not in doc["installed"]
    assert {s["key"]: s["reason"] for s in doc["skipped"]}[key].endswith("--force replaces it")
    assert os.listdir(dest / key) == ["other.json"]
    code = run("-e", "-i", REF, "-d", str(dest), "--gpu", "hip:gfx942", "--force", "--json")
    assert code == EXIT_OK
    forced = json.loads(capsys.readouterr().out)
    assert forced["installed"] == [key]  # replaced counts as installed
    assert forced["present"] == keys("hip", "gfx942")[1:]
    assert "other.json" not in os.listdir(dest / key)
