"""The command layer against real processes: stdin, exit codes, timeouts."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import pytest

from tcv.errors import ToolError
from tcv.tools import runner

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


def test_interrupt_stops_the_running_tool(tmp_path):
    """SIGTERM to tcv alone (not its process group) still ends the tool it runs."""
    fifo = tmp_path / "tool-pid"
    os.mkfifo(fifo)
    code = (
        "import sys\n"
        "from tcv.tools import runner\n"
        "from tcv.cli.base import sigterm_as_interrupt\n"
        "with sigterm_as_interrupt():\n"
        "    try:\n"
        f"        runner.run(['sh', '-c', 'echo $$ > {fifo}; exec sleep 600'])\n"
        "    except KeyboardInterrupt:\n"
        "        sys.exit(130)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        # Opening the FIFO blocks until the tool has written its pid: no polling.
        with open(fifo) as f:
            tool_pid = int(f.read())
        pidfd = os.pidfd_open(tool_pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 130
        # The parent reaped its tool before exiting: the pidfd already reads as exited.
        ready, _, _ = select.select([pidfd], [], [], 0)
        os.close(pidfd)
        assert ready, f"tool {tool_pid} outlived tcv"
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
