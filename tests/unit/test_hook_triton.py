"""The container's Triton, read from its rootfs (never executed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcv.hook.paths import BindView
from tcv.hook.triton import Found, choose, container_triton, init_version, metadata_version


def test_metadata_version_reads_the_header_only():
    text = "Metadata-Version: 2.1\nName: triton\nVersion: 3.3.1\n\nVersion: 9.9 (body)\n"
    assert metadata_version(text) == "3.3.1"
    assert metadata_version("Name: triton\n\nVersion: 1.0\n") is None


@pytest.mark.parametrize(
    ("text", "version"),
    [
        pytest.param('__version__ = "3.2.0"\n', "3.2.0", id="double"),
        pytest.param("import x\n__version__ = '3.1.0+git'\n", "3.1.0+git", id="single-local"),
        pytest.param("version = get()\n", None, id="computed"),
    ],
)
def test_init_version(text, version):
    assert init_version(text) == version


def test_choose_one_or_none():
    assert choose([Found("3.3.0", "a"), Found("3.3.0+x", "b")]).version == "3.3.0"
    assert choose([Found("3.3.0", "a"), Found("3.4.0", "b")]) is None
    assert choose([]) is None


def _plant(root: Path, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_found_in_site_packages_venv_and_init(tmp_path):
    view = BindView(root=tmp_path)
    assert container_triton(view, {}) is None
    _plant(tmp_path, "/opt/app/lib/python3.12/site-packages/triton/__init__.py",
           '__version__ = "3.5.0"\n')  # fmt: skip
    found = container_triton(view, {"VIRTUAL_ENV": "/opt/app"})
    assert found is not None and found.version == "3.5.0"
    assert found.where.endswith("triton/__init__.py")
    assert container_triton(view, {}) is None  # not a place looked in without the venv


def test_pytorch_triton_dist_info(tmp_path):
    site = "/usr/local/lib/python3.10/dist-packages"
    meta = "Name: pytorch-triton\nVersion: 3.1.0+cf34004b8a\n"
    _plant(tmp_path, f"{site}/pytorch_triton-3.1.0.dist-info/METADATA", meta)
    found = container_triton(BindView(root=tmp_path), {})
    assert found is not None and found.version == "3.1.0+cf34004b8a"


def test_link_out_of_the_root_is_not_followed(tmp_path):
    outside = tmp_path / "outside" / "site"
    _plant(outside.parent, "/site/triton-3.3.0.dist-info/METADATA", "Version: 3.3.0\n")
    root = tmp_path / "root"
    (root / "usr" / "lib" / "python3.11").mkdir(parents=True)
    (root / "usr" / "lib" / "python3.11" / "site-packages").symlink_to(outside)
    # An absolute link resolves inside the container's root, where there is nothing.
    assert container_triton(BindView(root=root), {}) is None
