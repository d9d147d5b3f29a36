"""The README leads with two commands; the demo one works as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEMO_IMAGE = "localhost/tcv-demo/vector-add:latest"


def readme_commands() -> list[str]:
    """The commands of the README's first code block, comments dropped."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README has no leading sh block"
    return [ln.split("#")[0].strip() for ln in block.group(1).splitlines() if ln.strip()]


def test_readme_leads_with_demo_and_test_commands():
    text = (REPO / "README.md").read_text()
    first_block_at = text.index("```sh")
    # Nothing but the title comes before the two commands.
    assert text[:first_block_at].strip() == "# TCV — Triton Cache Vault"
    assert readme_commands() == [
        "bash scripts/bootstrap.sh demo",
        "bash scripts/bootstrap.sh test",
    ]
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/bootstrap.sh test" in ci


def test_demo_packs_and_extracts_the_bundled_cache(tmp_path):
    index = json.loads((REPO / "tests/data/caches/index.json").read_text())
    # The bundled cache is a byte copy of three triton-3.9 fixture entries.
    example = [
        e
        for e in index["entries"]
        if e["fixture"] == "triton-3.9" and (REPO / "examples/vector-add-cache" / e["key"]).is_dir()
    ]
    assert len(example) == 3
    want = {e["key"] for e in example if e["backend"] == "cuda" and e["arch"] == "90"}
    others = {e["key"] for e in example} - want
    assert len(want) == 1

    argv = shlex.split(readme_commands()[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCV_", "TRITON_"))}
    env["TMPDIR"] = str(tmp_path)
    # A host without accelerators: the demo itself must pass --gpu for it.
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        dests = list(tmp_path.glob("tcv-demo-cache.*"))
        assert len(dests) == 1
        installed = {p.name for p in dests[0].iterdir() if p.is_dir()}
        assert installed == want
        for key in others:
            assert key in proc.stdout + proc.stderr  # reported as skipped, with its key
    finally:
        subprocess.run(["buildah", "rmi", "-f", DEMO_IMAGE], capture_output=True, check=False)
