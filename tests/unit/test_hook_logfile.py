"""The hook's own log file: bounded and rotated."""

from __future__ import annotations

import logging

from tcv.hook.logfile import BoundedFileHandler, rotation_names


def test_rotation_names_oldest_first():
    assert rotation_names("h.log", 2) == [("h.log.1", "h.log.2"), ("h.log", "h.log.1")]


def test_file_stays_bounded_and_rotates(tmp_path):
    path = tmp_path / "hook.log"
    logger = logging.getLogger("tcv-test-logfile")
    logger.propagate = False
    handler = BoundedFileHandler(str(path), max_bytes=1000, backups=2)
    logger.addHandler(handler)
    try:
        for i in range(100):
            logger.warning("line %03d %s", i, "x" * 40)
    finally:
        logger.removeHandler(handler)
    assert path.stat().st_size <= 1000
    assert (tmp_path / "hook.log.1").stat().st_size <= 1000
    assert (tmp_path / "hook.log.2").exists() and not (tmp_path / "hook.log.3").exists()
    assert path.read_text().splitlines()[-1].startswith("line 099")
