"""The command layer against real processes: stdin, exit codes, timeouts."""

from __future__ import annotations

import pytest

from tcv import runner
from tcv.errors import ToolError

pytestmark = pytest.mark.integration


def test_stdin_reaches_the_tool():
    assert runner.run(["cat"], stdin="secret\n").stdout == "secret\n"


def test_nonzero_exit_names_the_action_and_stderr():
    with pytest.raises(ToolError) as info:
        runner.run(["sh", "-c", "echo denied >&2; exit 7"], what="push the image")
    assert info.value.returncode == 7
    assert info.value.line() == "cannot push the image: denied"


def test_timeout_is_one_line():
    with pytest.raises(ToolError) as info:
        runner.run(["sleep", "30"], timeout=0.5, what="inspect the image")
    assert "did not finish within" in info.value.line()
