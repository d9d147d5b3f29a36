"""tcv-build in-process (docs/spec.md §6): the digest alone on stdout; --context-only."""

from __future__ import annotations

import pytest

from tcv.cli.build import TcvBuild
from tcv.errors import EXIT_NOT_FOUND, EXIT_USAGE

ID = "ab" * 32
DIGEST = "sha256:" + "cd" * 32
PUSHED = "sha256:" + "ef" * 32


@pytest.fixture
def buildah_ok(fp, tmp_path, monkeypatch):
    monkeypatch.setenv("TCV_STAGING_ROOT", str(tmp_path / "staging"))
    b = fp.program("buildah")

    def write_flag(name, value):
        def cb(process):
            arg = next(a for a in process.args if str(a).startswith(f"--{name}="))
            with open(str(arg).split("=", 1)[1], "w") as fh:
                fh.write(value)

        return cb

    fp.register([b, "from", fp.any()])
    fp.register([b, "add", fp.any()])
    fp.register([b, "config", fp.any()])
    fp.register([b, "commit", fp.any()], callback=write_flag("iidfile", f"sha256:{ID}"))
    fp.register([b, "inspect", fp.any()], stdout=DIGEST + "\n")
    fp.push_ok = write_flag("digestfile", PUSHED)
    return fp


def test_prints_only_the_digest(buildah_ok, caches_dir, capsys):
    _, code = TcvBuild.run(
        ["tcv-build", str(caches_dir / "triton-3.9"), "-t", "localhost/k:1"], exit=False
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert out == DIGEST + "\n"


def test_push_prints_the_registry_digest(buildah_ok, caches_dir, capsys):
    buildah_ok.register(
        [buildah_ok.program("buildah"), "push", buildah_ok.any()], callback=buildah_ok.push_ok
    )
    _, code = TcvBuild.run(
        [
            "tcv-build",
            str(caches_dir / "triton-3.9"),
            "-t",
            "r.example/k:1",
            "--push",
            "--tls-verify=false",
        ],
        exit=False,
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert out == PUSHED + "\n"


def test_unreachable_registry_is_exit_5(buildah_ok, caches_dir, capsys):
    buildah_ok.register(
        [buildah_ok.program("buildah"), "push", buildah_ok.any()],
        returncode=125,
        stderr="Error: dial tcp 127.0.0.1:1: connect: connection refused\n",
    )
    _, code = TcvBuild.run(
        ["tcv-build", str(caches_dir / "triton-3.9"), "-t", "127.0.0.1:1/k", "--push"],
        exit=False,
    )
    out, err = capsys.readouterr()
    assert code == EXIT_NOT_FOUND
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "cannot reach registry" in err


def test_context_only_writes_a_context_and_runs_nothing(fp, caches_dir, tmp_path, capsys):
    out_dir = tmp_path / "ctx"
    _, code = TcvBuild.run(
        [
            "tcv-build",
            str(caches_dir / "triton-3.9"),
            "-t",
            "quay.io/x/kernels:1",
            "--context-only",
            str(out_dir),
        ],
        exit=False,
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == ""
    text = (out_dir / "Containerfile").read_text()
    assert "FROM scratch" in text and "COPY rootfs/ /" in text
    assert '"org.opencontainers.image.title"="kernels"' in text
    assert (out_dir / "rootfs" / "io.triton.manifest" / "manifest.json").is_file()
    assert list(fp.calls) == []


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["DIR"], id="no-tag"),
        pytest.param(["-t", "localhost/x"], id="no-dir"),
        pytest.param(
            ["DIR", "-t", "localhost/x", "--context-only", "OUT", "--push"], id="context-and-push"
        ),
    ],
)
def test_bad_usage_is_exit_3(fp, caches_dir, tmp_path, capsys, argv):
    argv = [
        {"DIR": str(caches_dir / "triton-3.9"), "OUT": str(tmp_path / "o")}.get(a, a) for a in argv
    ]
    _, code = TcvBuild.run(["tcv-build", *argv], exit=False)
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert list(fp.calls) == []


def test_help_documents_the_pipeline_contract(capsys):
    _, code = TcvBuild.run(["tcv-build", "--help"], exit=False)
    out = capsys.readouterr().out
    assert code == 0
    for needle in ("--context-only", "digest", "SOURCE_DATE_EPOCH", "Exit status"):
        assert needle in out
