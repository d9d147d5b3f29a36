"""``tcv inspect`` against real images: the labels and summary, never a layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import build_labels, build_manifest
from tests.harness import hostile as h

pytestmark = pytest.mark.integration

TCV = Path(sys.executable).with_name("tcv")


@pytest.fixture(scope="module")
def image(registry, caches_dir, tmp_path_factory):
    cache = caches_dir / "triton-3.9"
    entries = scan_cache(cache).entries
    members = h.cache_members(cache, None, build_manifest(entries, str(cache)))
    work = tmp_path_factory.mktemp("inspect")
    crafted = h.write_image(work / "img", [h.Layer(members)], build_labels(entries, "insp"))
    ref = h.push(crafted, registry.ref(f"tcv-it/inspect:{uuid.uuid4().hex[:8]}"))
    return ref, crafted, entries


def test_json_reads_no_layer(registry, image, tmp_path):
    ref, crafted, entries = image
    before = len(registry.requests())
    proc = h.run_tcv("inspect", ref, "--tls-verify=false", "--json", staging=tmp_path / "st")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["image"] == ref and doc["digest"] == crafted.manifest_digest
    assert doc["labels"]["cache.triton.image/entry-count"] == str(len(entries))
    assert sum(t["entries"] for t in doc["summary"]["targets"]) == len(entries)
    uris = [str(r["uri"]) for r in registry.requests()[before:]]
    assert not [u for u in uris if any(d in u for d in crafted.layer_digests)], uris


def test_table_from_an_oci_layout(image, tmp_path):
    ref, _, _ = image
    layout = f"oci:{tmp_path / 'layout'}:t"
    h.skopeo_copy(f"docker://{ref}", layout)
    proc = h.run_tcv("inspect", layout, staging=tmp_path / "st")
    assert proc.returncode == 0, proc.stderr
    assert "BACKEND" in proc.stdout and "gfx942" in proc.stdout and layout in proc.stdout


def test_missing_image_is_exit_5(registry, tmp_path):
    proc = h.run_tcv(
        "inspect",
        registry.ref("tcv-it/no-such-image:1"),
        "--tls-verify=false",
        staging=tmp_path / "st",
    )
    assert proc.returncode == 5
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_debug_log_never_shows_the_password(tmp_path):
    """--log-level debug shows every command run, with the password given by
    --creds replaced by *** (real skopeo, an unreachable registry)."""
    from tests.harness.registry import free_port

    ref = f"127.0.0.1:{free_port()}/tcv-it/secret:v1"
    proc = subprocess.run(
        [
            str(TCV),
            "--log-level",
            "debug",
            "inspect",
            ref,
            "--creds",
            "me:hunter2",
            "--tls-verify=false",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp_path)},
        timeout=120,
    )
    assert proc.returncode == 5, proc.stderr
    assert "running: skopeo inspect" in proc.stderr
    assert "--creds=me:***" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
