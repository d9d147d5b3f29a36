"""Talking to registries as a new user meets them: a registry with a self-signed
certificate (real HTTPS, openssl), an unreachable one, credentials without a
password, and ``name:tag@digest`` references."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import build_labels, build_manifest
from tests.harness import hostile as h
from tests.harness.registry import free_port, start_registry

pytestmark = pytest.mark.integration

TCV = Path(sys.executable).with_name("tcv")


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("tls-registry"), tls=True)
    try:
        yield reg
    finally:
        reg.stop()


def tcv(*args: str, tmp: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TCV), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp)},
        timeout=300,
        **kw,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_push_to_an_untrusted_certificate_names_the_problem_and_the_safe_fix(
    tls_registry, caches_dir, tmp_path
):
    ref = tls_registry.ref(f"tcv-it/tls:{uuid.uuid4().hex[:8]}")
    cache = str(caches_dir / "triton-3.9")
    try:
        refused = tcv("-c", "-i", ref, "-d", cache, "--push", tmp=tmp_path)
        assert refused.returncode == 5, refused.stderr
        line = one_line(refused)
        assert "cannot verify the TLS certificate of registry" in line
        assert "x509: certificate signed by unknown authority" in line  # not cut to "x509: "
        assert line.index("--cert-dir") < line.index("--tls-verify=false")
        assert "stays in local storage" in line

        pushed = tcv(
            "-c",
            "-i",
            ref,
            "-d",
            cache,
            "--push",
            "--cert-dir",
            str(tls_registry.cert_dir),
            "--retry-times",
            "1",
            tmp=tmp_path,
        )
        assert pushed.returncode == 0, pushed.stderr
        assert any(
            "/manifests/" in str(r["uri"]) and r["method"] == "PUT" for r in tls_registry.requests()
        )
    finally:
        subprocess.run(["buildah", "rmi", "-f", ref], capture_output=True)

    # Reading it back: refused without the CA, read with it (HTTPS all the way).
    denied = tcv("inspect", ref, tmp=tmp_path)
    assert denied.returncode == 5
    assert "x509: certificate signed by unknown authority" in one_line(denied)
    seen = tcv("inspect", ref, "--cert-dir", str(tls_registry.cert_dir), "--json", tmp=tmp_path)
    assert seen.returncode == 0, seen.stderr
    dest = tmp_path / "dest"
    got = tcv(
        "-e",
        "-i",
        ref,
        "-d",
        str(dest),
        "--gpu",
        "cuda:90",
        "--cert-dir",
        str(tls_registry.cert_dir),
        "--json",
        tmp=tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout and (dest / ".tcv.lock").exists()


def test_an_unreachable_registry_is_not_called_missing(tmp_path):
    ref = f"127.0.0.1:{free_port()}/tcv-it/gone:1"
    for argv in (
        ["inspect", ref],
        ["-e", "-i", ref, "--gpu", "cuda:90", "-d", str(tmp_path / "d")],
    ):
        proc = tcv(*argv, "--tls-verify=false", tmp=tmp_path)
        assert proc.returncode == 5
        line = one_line(proc)
        assert "cannot reach registry 127.0.0.1:" in line and "connection refused" in line
        assert "not in registry" not in line


def test_a_missing_tag_is_said_to_be_missing(registry, tmp_path):
    proc = tcv("inspect", registry.ref("tcv-it/never-pushed:1"), "--tls-verify=false", tmp=tmp_path)
    assert proc.returncode == 5
    assert "is not in registry" in one_line(proc)


def test_name_tag_at_digest_is_accepted_as_podman_accepts_it(registry, caches_dir, tmp_path):
    cache = caches_dir / "triton-3.9"
    entries = scan_cache(cache).entries
    members = h.cache_members(cache, None, build_manifest(entries, str(cache)))
    image = h.write_image(tmp_path / "img", [h.Layer(members)], build_labels(entries, "td"))
    ref = h.push(image, registry.ref(f"tcv-it/tagdigest:{uuid.uuid4().hex[:8]}"))
    both = f"{ref}@{image.manifest_digest}"
    seen = tcv("inspect", both, "--tls-verify=false", "--json", tmp=tmp_path)
    assert seen.returncode == 0, seen.stderr
    got = tcv(
        "-e",
        "-i",
        both,
        "--tls-verify=false",
        "--gpu",
        "cuda:90",
        "-d",
        str(tmp_path / "d"),
        "--json",
        tmp=tmp_path,
    )
    assert got.returncode == 0, got.stderr


def test_creds_without_a_password_fail_in_one_line_without_a_terminal(tmp_path):
    proc = tcv(
        "inspect", "127.0.0.1:1/x:1", "--creds", "me", tmp=tmp_path, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 3
    line = one_line(proc)
    assert "no password" in line and "--creds USER:PASSWORD" in line


def test_creds_without_a_password_are_asked_for_on_a_terminal(tmp_path):
    """On a terminal (a pty here) the password is asked for, as podman does, and
    then used (the debug log shows it passed on, redacted)."""
    master, slave = pty.openpty()
    ref = f"127.0.0.1:{free_port()}/tcv-it/ask:1"
    proc = subprocess.Popen(
        [str(TCV), "--log-level", "debug", "inspect", ref, "--creds", "me", "--tls-verify=false"],
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp_path)},
        start_new_session=True,  # no controlling terminal: getpass reads the pty on stdin
    )
    os.close(slave)
    seen = b""
    try:
        while b"Password for me:" not in seen:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, f"no password prompt: {seen!r}"
            seen += os.read(master, 4096)
        os.write(master, b"hunter2\n")
        proc.wait(timeout=120)
        while True:
            ready, _, _ = select.select([master], [], [], 0)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert proc.returncode == 5, text  # nothing listens there: but the password was taken
    assert "--creds=me:***" in text
    assert "hunter2" not in text
