"""The CLI base: one line and the documented exit code for bad usage."""

from __future__ import annotations

import pytest

from tcv.cli.app import Tcv
from tcv.errors import EXIT_USAGE


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        pytest.param(["--bogus"], "Unknown switch --bogus", id="unknown-switch"),
        pytest.param(["-c", "-e"], "invalid", id="create-and-extract"),
        pytest.param(["--log-level", "loud"], "log-level", id="bad-log-level"),
        pytest.param(["frobnicate"], "unknown command 'frobnicate'", id="unknown-command"),
    ],
)
def test_bad_usage_is_one_line_and_exit_3(capsys, argv, needle):
    _, code = Tcv.run(["tcv", *argv], exit=False)
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert "Traceback" not in err + out


def test_help_lists_the_seed_forms(capsys):
    _, code = Tcv.run(["tcv", "--help"], exit=False)
    out = capsys.readouterr().out
    assert code == 0
    assert "tcv -c -i IMAGE -d DIR" in out
    assert "tcv -e -i IMAGE" in out
