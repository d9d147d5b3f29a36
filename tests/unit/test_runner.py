"""The one door for external tools, faked with pytest-subprocess."""

from __future__ import annotations

import pytest
from plumbum import local

from tcv.errors import ToolError
from tcv.tools import runner


def test_run_returns_output(fp):
    fp.register([fp.program("buildah"), "from", "scratch"], stdout="working-container\n")
    result = runner.run(["buildah", "from", "scratch"])
    assert result.returncode == 0
    assert result.stdout.strip() == "working-container"
    assert result.argv == ["buildah", "from", "scratch"]


def test_failure_carries_the_last_stderr_lines(fp):
    stderr = "\n".join(f"line {i}" for i in range(10))
    fp.register([fp.program("skopeo"), "inspect", fp.any()], returncode=1, stderr=stderr)
    with pytest.raises(ToolError) as info:
        runner.run(["skopeo", "inspect", "docker://x"], what="inspect docker://x")
    err = info.value
    assert err.returncode == 1
    assert err.line() == "cannot inspect docker://x: line 5 | line 6 | line 7 | line 8 | line 9"
    assert err.argv == ["skopeo", "inspect", "docker://x"]


def test_unchecked_failure_is_returned(fp):
    fp.register([fp.program("buildah"), "rm", "c1"], returncode=125, stderr="no container\n")
    result = runner.run(["buildah", "rm", "c1"], check=False)
    assert result.returncode == 125
    assert result.stderr_tail == "no container"


def test_missing_tool_is_one_line_with_a_fix():
    with local.env(PATH="/nonexistent"), pytest.raises(ToolError) as info:
        runner.run(["buildah", "version"], what="start a build")
    assert info.value.line() == (
        "cannot start a build: buildah is not installed — "
        "install buildah (apt-get install buildah) and try again"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("a\n\n b \n", "a | b", id="blank-lines-dropped"),
        pytest.param("1\n2\n3\n4\n5\n6\n7", "3 | 4 | 5 | 6 | 7", id="last-five"),
    ],
)
def test_tail(text, expected):
    assert runner.tail(text) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["skopeo", "inspect", "--creds=me:hunter2", "docker://r/x"],
            ["skopeo", "inspect", "--creds=me:***", "docker://r/x"],
            id="creds-equals",
        ),
        pytest.param(
            ["skopeo", "copy", "--src-creds", "me:hunter2", "a", "b"],
            ["skopeo", "copy", "--src-creds", "me:***", "a", "b"],
            id="src-creds-separate",
        ),
        pytest.param(
            ["buildah", "push", "--dest-creds=me:p:a:ss", "x"],
            ["buildah", "push", "--dest-creds=me:***", "x"],
            id="password-with-colons",
        ),
        pytest.param(
            ["skopeo", "copy", "--src-registry-token=eyJabc", "--dest-registry-token", "t0k", "a"],
            ["skopeo", "copy", "--src-registry-token=***", "--dest-registry-token", "***", "a"],
            id="tokens",
        ),
        pytest.param(["skopeo", "login", "--password", "pw", "r"], None, id="password"),
        pytest.param(["skopeo", "inspect", "docker://me:hunter2"], None, id="nothing-secret"),
    ],
)
def test_redact(argv, expected):
    if expected is None:
        expected = [("***" if a == "pw" else a) for a in argv]
    assert runner.redact(argv) == expected


def test_debug_log_and_errors_never_hold_the_password(fp, caplog):
    fp.register([fp.program("skopeo"), fp.any()], returncode=1, stderr="unauthorized\n")
    argv = ["skopeo", "inspect", "--creds=me:hunter2", "docker://r/x"]
    with caplog.at_level("DEBUG", logger="tcv"), pytest.raises(ToolError) as info:
        runner.run(argv)
    assert "hunter2" not in caplog.text
    assert "--creds=me:***" in caplog.text
    assert "hunter2" not in " ".join(info.value.argv)
