"""The hostile suite records every case's outcome for the results table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

RESULTS: list[dict] = []


@pytest.fixture(scope="session")
def results():
    yield RESULTS
    out = os.environ.get("TCV_HOSTILE_RESULTS")
    if out and RESULTS:
        Path(out).write_text(json.dumps(RESULTS, indent=2) + "\n")
