"""Unit tests refuse real subprocesses: any unregistered command fails loudly."""

from __future__ import annotations

import pytest
from plumbum import local

# plumbum resolves `uname -p` lazily on first use; do it before faking starts.
_ = local.env


@pytest.fixture(autouse=True)
def _no_real_subprocesses(fp):  # type: ignore[no-untyped-def]
    fp.pass_command([fp.program("uname"), fp.any()])
    return fp
