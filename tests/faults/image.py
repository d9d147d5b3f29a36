"""The faults suite's image: 500 honest kernels, and how to tell one is whole."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.hostile import craft as c

KERNELS = 500


def key(i: int) -> str:
    return base64.b32encode(hashlib.sha256(b"%d" % i).digest()).decode().rstrip("=")


@pytest.fixture(scope="module")
def big_image(tmp_path_factory) -> tuple[str, dict[str, bytes]]:
    """An honest image of 500 kernels (copies of one fixture kernel)."""
    files = c.fixture_files(c.GOOD[0])
    k = c.Kernels()
    for i in range(KERNELS):
        k.dirs[key(i)] = files
        k.like[key(i)] = c.GOOD[0]
    raw = c.tar_of([*k.members(), *k.manifest_members()]) + c.end()
    ref = c.oci_image(
        tmp_path_factory.mktemp("big") / "oci", [c.Blob(c.gzip_stream([raw]))], k.labels()
    )
    return ref, files


def complete(dest: Path, kernel: str, files: dict[str, bytes]) -> bool:
    d = dest / kernel
    if sorted(os.listdir(d)) != sorted(files):
        return False
    for name, data in files.items():
        got = (d / name).read_bytes()
        if name.startswith("__grp__"):
            paths = json.loads(got)["child_paths"]
            if any(os.path.dirname(p) != str(d) for p in paths.values()):
                return False
        elif got != data:
            return False
    return True
