"""Several ``tcv -e`` processes on one DEST at once: locked, nothing lost, every
kernel directory complete, installed exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.manifest import build_labels, build_manifest
from tests.harness import hostile as h

pytestmark = pytest.mark.integration


def test_concurrent_extractions_share_dest(registry, caches_dir, tmp_path):
    cache = caches_dir / "triton-3.9"
    entries = scan_cache(cache).entries
    layer = h.Layer(h.cache_members(cache, None, build_manifest(entries, str(cache))))
    image = h.write_image(tmp_path / "img", [layer], build_labels(entries, "c"))
    ref = h.push(image, registry.ref(f"tcv-it/concurrent:{uuid.uuid4().hex[:8]}"))
    dest = tmp_path / "dest"
    tcv = os.path.join(os.path.dirname(sys.executable), "tcv")
    env = {**os.environ, "TCV_STAGING_ROOT": str(tmp_path / "st")}
    procs = [
        subprocess.Popen(
            [
                tcv,
                "-e",
                "-i",
                ref,
                "--tls-verify=false",
                "-d",
                str(dest),
                "--no-gpu-check",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        docs.append(json.loads(out))
    keys = sorted(e.key for e in entries)
    installed = sorted(k for d in docs for k in d["installed"])
    assert installed == keys  # each kernel installed by exactly one run
    assert all(sorted(d["installed"] + d["present"]) == keys for d in docs)
    for e in entries:
        assert sorted(os.listdir(dest / e.key)) == sorted(e.files)
    assert sorted(os.listdir(dest)) == sorted([*keys, ".tcv.lock"])
    assert os.listdir(tmp_path / "st") == []
