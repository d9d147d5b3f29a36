"""Staging directories: private, fresh, always removed."""

from __future__ import annotations

import stat

import pytest

from tcv import staging


@pytest.fixture(autouse=True)
def _staging_root(tmp_path, monkeypatch):
    monkeypatch.setenv(staging.STAGING_ROOT_ENV, str(tmp_path / ".tcv"))


def test_fresh_private_directory_removed_on_success():
    with staging.staging_dir() as one, staging.staging_dir() as two:
        assert one != two
        assert stat.S_IMODE(one.stat().st_mode) == 0o700
        (one / "f").write_text("x")
    assert not one.exists() and not two.exists()


@pytest.mark.parametrize(
    "exc", [pytest.param(RuntimeError, id="error"), pytest.param(KeyboardInterrupt, id="ctrl-c")]
)
def test_removed_on_failure_and_interrupt(exc):
    with pytest.raises(exc), staging.staging_dir() as path:
        (path / "sub").mkdir()
        raise exc
    assert not path.exists()
    assert list(staging.staging_root().iterdir()) == []
