"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.registry import Registry, start_registry
from tests.harness.userinstall import UserInstall
from tests.harness.userinstall import user_install as make_user_install

DATA = Path(__file__).parent / "data"
CACHES = DATA / "caches"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def caches_dir() -> Path:
    """Real Triton caches made by the official wheels (tests/data/make_caches.py)."""
    return CACHES


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real registry on 127.0.0.1 for the whole session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def user_install() -> Iterator[UserInstall]:
    """This checkout as other users (``nobody``, the rootless test user) can run
    it, wherever it is cloned (see tests/harness/userinstall.py)."""
    install = make_user_install()
    try:
        yield install
    finally:
        install.remove()
