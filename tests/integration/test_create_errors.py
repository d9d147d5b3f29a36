"""tcv -c on bad input, with real buildah: one clear line, the documented exit
code, and nothing left behind (no working container, mount or staging dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import buildah_state
from tests.harness.registry import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _own_storage(tmp_path_factory):
    """A containers storage of this module's own: leftovers checks see only its builds."""
    with buildah_state.private_storage(tmp_path_factory.mktemp("storage")):
        yield


BIN = Path(sys.executable).parent
CLEAN = {"containers": [], "mounts": [], "staging": []}


def image_exists(ref: str) -> bool:
    found = subprocess.run(["buildah", "inspect", "--type=image", ref], capture_output=True)
    return found.returncode == 0


def not_a_cache(root: Path) -> Path:
    """Things Triton leaves in a cache that are not kernels."""
    root.mkdir()
    (root / "lock").write_text("")
    (root / "tmp.pid_12_abc").mkdir()
    launcher = root / "ZZLAUNCHER"
    launcher.mkdir()
    (launcher / "__triton_launcher.so").write_bytes(b"\x7fELF")
    return root


@pytest.mark.parametrize(
    ("case", "code", "needle"),
    [
        pytest.param("missing-dir", 3, "does not exist", id="missing-dir"),
        pytest.param("empty-dir", 2, "no Triton kernels", id="empty-dir"),
        pytest.param("no-kernels", 2, "no Triton kernels", id="no-kernels"),
        pytest.param("bad-name", 3, "invalid image reference", id="invalid-image-name"),
        pytest.param("digest-name", 3, "give a tag instead", id="image-by-digest"),
        pytest.param("no-buildah", 2, "buildah is not installed", id="buildah-missing"),
        pytest.param("unreachable", 5, "cannot reach registry", id="unreachable-registry"),
    ],
)
def test_bad_input(caches_dir, tmp_path, case, code, needle):
    staging = tmp_path / "staging"
    staging.mkdir()
    ref = f"localhost/tcv-it/bad-{case}:{uuid.uuid4().hex[:8]}"
    cache = caches_dir / "triton-3.9"
    extra: list[str] = []
    env = {**os.environ, "TCV_STAGING_ROOT": str(staging)}
    if case == "missing-dir":
        cache = tmp_path / "nowhere"
    elif case == "empty-dir":
        cache = tmp_path / "empty"
        cache.mkdir()
    elif case == "no-kernels":
        cache = not_a_cache(tmp_path / "cache")
    elif case == "bad-name":
        ref = "Quay.io/Example/Triton_Kernel:bad tag"
    elif case == "digest-name":
        ref = "localhost/tcv-it/x@sha256:" + "a" * 64
    elif case == "no-buildah":
        # Only the Python of this venv on PATH: no buildah to be found.
        env["PATH"] = str(BIN)
    elif case == "unreachable":
        ref = f"127.0.0.1:{free_port()}/tcv-it/unreachable:{uuid.uuid4().hex[:8]}"
        extra = ["--push", "--tls-verify=false"]
    before = buildah_state.snapshot(staging)
    try:
        proc = subprocess.run(
            [str(BIN / "tcv"), "-c", "-i", ref, "-d", str(cache), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == code, proc.stderr
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("tcv: error: ")
        assert needle in lines[0]
        assert "Traceback" not in proc.stderr
        assert proc.stdout == ""
        assert buildah_state.snapshot(staging).leftovers(before) == CLEAN
        if case == "unreachable":
            # The image was built; a failed push loses nothing.
            assert image_exists(ref)
        elif case not in ("bad-name", "digest-name"):
            assert not image_exists(ref)
    finally:
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)


@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGINT, id="ctrl-c"),
        pytest.param(signal.SIGTERM, id="sigterm"),
    ],
)
def test_interrupt_mid_build_leaves_nothing(caches_dir, tmp_path, signum):
    """SIGINT to the process group, as a terminal's Ctrl-C does, or SIGTERM, as
    a cancelled CI job gets, while buildah works."""
    staging = tmp_path / "staging"
    staging.mkdir()
    cache = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    # A large (sparse) file in one kernel directory keeps buildah busy for a while.
    entry = next(p for p in sorted(cache.iterdir()) if p.is_dir())
    with open(entry / "pad.bin", "wb") as fh:
        fh.truncate(512 << 20)
    ref = f"localhost/tcv-it/interrupted:{uuid.uuid4().hex[:8]}"
    before = buildah_state.snapshot(staging)
    proc = subprocess.Popen(
        [str(BIN / "tcv"), "-c", "-i", ref, "-d", str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(staging)},
        start_new_session=True,
    )
    try:
        # Wait (polling the state, not sleeping blindly) for the working container.
        deadline = time.monotonic() + 120
        while not any(
            c.split()[1].startswith("tcv-create-")
            for c in buildah_state.containers() - before.containers
        ):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no working container appeared"
            time.sleep(0.05)
        os.killpg(proc.pid, signum)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines == ["tcv: error: interrupted; nothing half-done was left behind"], err
        assert buildah_state.snapshot(staging).leftovers(before) == CLEAN
        assert not image_exists(ref)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)


def test_json_errors_are_json_on_stdout_and_one_line_on_stderr(caches_dir, tmp_path):
    """With --json a failure is also a JSON object on stdout, so scripts need
    not parse stderr; people still get the one line on stderr."""
    proc = subprocess.run(
        [str(BIN / "tcv"), "-c", "-i", "localhost/x", "-d", str(tmp_path / "nope"), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp_path)},
    )
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0]
    doc = json.loads(proc.stdout)
    assert doc == {"error": lines[0].removeprefix("tcv: error: "), "exit_code": 3}


def test_a_closed_stdout_ends_quietly_with_the_sigpipe_status(caches_dir, tmp_path):
    """`tcv scan | head`: the reader has gone; tcv dies of SIGPIPE as the other
    commands of a pipeline do (a shell shows 141), with nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [str(BIN / "tcv"), "scan", str(caches_dir / "triton-3.9")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TCV_STAGING_ROOT": str(tmp_path)},
        )
    finally:
        os.close(write_end)
    assert proc.returncode == -signal.SIGPIPE, proc.stderr
    assert proc.stderr == ""
