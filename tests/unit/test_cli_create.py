"""tcv -c in-process: switches, output for people and for machines, errors."""

from __future__ import annotations

import json
import shutil

import pytest

from tcv.cli.app import Tcv
from tcv.cli.options import registry_options
from tcv.errors import EXIT_CREATE, EXIT_USAGE
from tests.unit.test_autotune import H100, write_results

ID = "ab" * 32
DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def buildah_ok(fp, tmp_path, monkeypatch):
    """The buildah calls of a successful local create."""
    monkeypatch.setenv("TCV_STAGING_ROOT", str(tmp_path / "staging"))
    b = fp.program("buildah")

    def write_iid(process):
        arg = next(a for a in process.args if str(a).startswith("--iidfile="))
        with open(str(arg).split("=", 1)[1], "w") as fh:
            fh.write(f"sha256:{ID}")

    fp.register([b, "from", fp.any()])
    fp.register([b, "add", fp.any()])
    fp.register([b, "config", fp.any()])
    fp.register([b, "commit", fp.any()], callback=write_iid)
    fp.register([b, "inspect", fp.any()], stdout=DIGEST + "\n")
    return fp


def test_seed_form_prints_image_and_digest(buildah_ok, caches_dir, capsys):
    _, code = Tcv.run(
        ["tcv", "-c", "-i", "quay.io/example/triton-kernel", "-d", str(caches_dir / "triton-3.9")],
        exit=False,
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "image:   quay.io/example/triton-kernel"
    assert lines[1] == f"digest:  {DIGEST}"
    assert lines[2].startswith("kernels: 7 (")
    assert lines[3].startswith("pushed:  no")


def test_json_output(buildah_ok, caches_dir, capsys):
    _, code = Tcv.run(
        [
            "tcv",
            "-c",
            "-i",
            "localhost/k:1",
            "-d",
            str(caches_dir / "triton-3.9"),
            "--json",
            "--format",
            "docker",
        ],
        exit=False,
    )
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"image", "digest", "id", "entries", "bytes", "pushed"}
    assert (doc["image"], doc["digest"], doc["entries"], doc["pushed"]) == (
        "localhost/k:1",
        DIGEST,
        7,
        False,
    )
    commit = next(c for c in buildah_ok.calls if c[1] == "commit")
    assert "--format=docker" in commit


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        pytest.param(["-c", "-d", "/x"], EXIT_USAGE, "create needs an image name", id="no-image"),
        pytest.param(["-c", "-i", "localhost/x"], EXIT_USAGE, "pass -d DIR", id="no-dir"),
        pytest.param(
            ["-c", "-i", "bad name", "-d", "CACHE"],
            EXIT_USAGE,
            "invalid image reference",
            id="bad-name",
        ),
        pytest.param(
            ["-c", "-i", "localhost/x", "-d", "EMPTY"],
            EXIT_CREATE,
            "no Triton kernels",
            id="empty-dir",
        ),
        pytest.param(
            ["-c", "-i", "localhost/x", "-d", "CACHE", "--format", "zip"],
            EXIT_USAGE,
            "format",
            id="bad-format",
        ),
    ],
)
def test_bad_input_is_one_line(fp, capsys, caches_dir, tmp_path, argv, code, needle):
    argv = [
        {"CACHE": str(caches_dir / "triton-3.9"), "EMPTY": str(tmp_path)}.get(a, a) for a in argv
    ]
    _, got = Tcv.run(["tcv", *argv], exit=False)
    out, err = capsys.readouterr()
    assert got == code
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], err
    assert out == ""
    assert list(fp.calls) == []  # nothing reached buildah


@pytest.mark.parametrize(
    ("tls", "authfile", "creds", "expected"),
    [
        pytest.param("true", None, None, ["--tls-verify=true"], id="defaults"),
        pytest.param(
            "FALSE",
            "/a.json",
            "u:p",
            ["--tls-verify=false", "--authfile=/a.json", "--creds=u:p"],
            id="all",
        ),
    ],
)
def test_registry_options(tls, authfile, creds, expected):
    assert registry_options(tls, authfile, creds).args() == expected


def test_skipped_paths_are_counted(buildah_ok, caches_dir, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    (cache / "lock").write_text("")
    (cache / "tmp.pid_1_x").mkdir()
    _, code = Tcv.run(["tcv", "-c", "-i", "localhost/k", "-d", str(cache)], exit=False)
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped: 2 non-kernel paths" in out


def test_with_autotune_packs_results_for_the_named_device(buildah_ok, caches_dir, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    write_results(cache)
    image = "quay.io/example/tuned"
    argv = ["tcv", "-c", "-i", image, "-d", str(cache), "--with-autotune"]
    _, code = Tcv.run([*argv, "--autotune-device", H100, "--json"], exit=False)
    assert code == 0
    assert json.loads(capsys.readouterr().out)["autotune"] == {"device": H100, "entries": 1}
    labels = [c for c in buildah_ok.calls if "config" in [str(a) for a in c]]
    text = " ".join(str(a) for a in labels[-1])
    assert f"cache.triton.image/autotune-device={H100}" in text
    assert "cache.triton.image/autotune-count=1" in text


def test_without_the_switch_the_summary_says_results_were_left_out(
    buildah_ok, caches_dir, tmp_path, capsys
):
    cache = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    write_results(cache)
    _, code = Tcv.run(["tcv", "-c", "-i", "quay.io/example/t", "-d", str(cache)], exit=False)
    assert code == 0
    assert "autotune: 1 results not packed (--with-autotune packs them)" in capsys.readouterr().out


def test_with_autotune_and_no_known_device_is_exit_2(
    buildah_ok, caches_dir, tmp_path, capsys, monkeypatch
):
    from tcv.autotune import pack as autotune_pack
    from tcv.gpu.model import HostGpus

    monkeypatch.setattr(autotune_pack, "_detect", lambda: HostGpus())
    cache = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    write_results(cache)
    argv = ["tcv", "-c", "-i", "quay.io/example/t", "-d", str(cache), "--with-autotune"]
    _, code = Tcv.run(argv, exit=False)
    assert code == EXIT_CREATE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cannot tell which GPU model" in err and "pass --autotune-device" in err


def test_autotune_device_needs_the_switch(caches_dir, capsys):
    argv = ["tcv", "-c", "-i", "quay.io/example/t", "-d", str(caches_dir / "triton-3.9")]
    _, code = Tcv.run([*argv, "--autotune-device", H100], exit=False)
    assert code == EXIT_USAGE
    assert "missing ['with-autotune']" in capsys.readouterr().err
