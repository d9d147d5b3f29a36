"""Ctrl-C (and SIGTERM) during ``tcv -e``: staging removed, DEST untouched, exit 130.

The interrupt arrives at a known point without any sleep: the "registry" is a
socket that accepts skopeo's connection and never answers, so when ``accept``
returns, tcv is inside its preflight with its staging directory made.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("ctrl-c", id="ctrl-c-to-the-process-group"),
        pytest.param("sigterm", id="sigterm-to-tcv"),
    ],
)
def test_interrupt_cleans_up(tmp_path, how):
    staging = tmp_path / "staging"
    dest = tmp_path / "dest"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(120)
        port = server.getsockname()[1]
        tcv = os.path.join(os.path.dirname(sys.executable), "tcv")
        proc = subprocess.Popen(
            [tcv, "-e", "-i", f"127.0.0.1:{port}/x/y:1", "--tls-verify=false",
             "--gpu", "cuda:90", "-d", str(dest)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TCV_STAGING_ROOT": str(staging)},
            start_new_session=True,
        )  # fmt: skip
        conn, _ = server.accept()  # skopeo is talking to us: tcv is mid-preflight
        with conn:
            assert len(os.listdir(staging)) == 1  # the run's staging directory exists
            if how == "ctrl-c":
                os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            else:
                os.kill(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert os.listdir(staging) == []
    assert not dest.exists()
