"""The fleet switches in-process: repeatable -d, --split-by-target, --format artifact."""

from __future__ import annotations

import pytest

from tcv.cli.app import Tcv
from tcv.cli.build import TcvBuild
from tcv.errors import EXIT_USAGE


@pytest.fixture(autouse=True)
def _staging(tmp_path, monkeypatch):
    monkeypatch.setenv("TCV_STAGING_ROOT", str(tmp_path / "staging"))


def one_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_extract_takes_one_dest(fp, tmp_path, capsys):
    # fp: no tool may run before the switches are refused.
    _, code = Tcv.run(
        ["tcv", "-e", "-i", "q.io/x:1", "-d", str(tmp_path / "a"), "-d", str(tmp_path / "b")],
        exit=False,
    )
    assert code == EXIT_USAGE
    assert "-d is given 2 times" in one_line(capsys)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        pytest.param(
            ["--split-by-target", "--format", "docker", "-i", "q.io/x:1"],
            "OCI image index",
            id="split-docker",
        ),
        pytest.param(
            ["--split-by-target", "--format", "artifact", "-i", "q.io/x:1", "--push"],
            "not of artifacts",
            id="split-artifact",
        ),
        pytest.param(
            ["--format", "artifact", "-i", "containers-storage:x"],
            "holds images only",
            id="artifact-in-local-storage",
        ),
        pytest.param(
            ["--format", "artifact", "-i", "q.io/x:1"], "add --push", id="artifact-not-pushed"
        ),
    ],
)
def test_impossible_combinations_are_one_line(fp, caches_dir, capsys, argv, says):
    cache = str(caches_dir / "triton-3.9")
    _, code = Tcv.run(["tcv", "-c", "-d", cache, *argv], exit=False)
    assert code == EXIT_USAGE
    assert says in one_line(capsys)


def test_tcv_build_needs_a_cache(fp, capsys):
    _, code = TcvBuild.run(["tcv-build", "-t", "q.io/x:1"], exit=False)
    assert code == EXIT_USAGE
    assert "pass DIR" in one_line(capsys)


def test_tcv_build_context_cannot_be_an_artifact(fp, caches_dir, tmp_path, capsys):
    argv = ["tcv-build", str(caches_dir / "triton-3.9"), "-t", "q.io/x:1", "--format", "artifact"]
    _, code = TcvBuild.run([*argv, "--context-only", str(tmp_path / "out")], exit=False)
    assert code == EXIT_USAGE
    assert "cannot make an artifact" in one_line(capsys)
