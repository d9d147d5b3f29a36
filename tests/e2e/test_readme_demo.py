"""The README leads with two commands; the demo one works as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.harness import buildah_state

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
    dest = tmp_path / "demo-cache"
    env["TCV_DEMO_DEST"] = str(dest)
    leftovers_before = set(Path(tempfile.gettempdir()).glob("tcv-demo-cache.*"))
    # The demo's image goes to a storage of this test's own: the user's own demo
    # image (and anything else in their storage) is never touched.
    with buildah_state.private_storage(tmp_path / "storage") as conf:
        env["CONTAINERS_STORAGE_CONF"] = str(conf)
        # A host without accelerators: the demo itself must pass --gpu for it.
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        installed = {p.name for p in dest.iterdir() if p.is_dir()}
        assert installed == want
        for key in others:
            assert key in proc.stdout + proc.stderr  # reported as skipped, with its key
        assert f"installed into {dest}" in proc.stderr
        # Again: the same place, nothing new anywhere, the kernel already present.
        again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "0 installed, 1 already present" in again.stdout
    assert set(Path(tempfile.gettempdir()).glob("tcv-demo-cache.*")) == leftovers_before


def test_demo_puts_tcv_on_path_for_a_new_login_shell():
    """After the demo's set-up, a new login shell finds `tcv` (the README's Use
    lines), and it is this checkout's."""
    proc = subprocess.run(
        ["bash", "-lc", "command -v tcv && tcv --version && command -v tcv-build"],
        capture_output=True, text=True, env={"HOME": "/root", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[0] == "/usr/local/bin/tcv"
    # The test command's own set-up linked this checkout's venv.
    assert Path(lines[0]).resolve() == (Path(sys.executable).parent / "tcv").resolve()
    assert lines[-1] == "/usr/local/bin/tcv-build"
