"""Logging set-up shared by the commands (``--log-level``)."""

from __future__ import annotations

import logging
import os
import sys

LEVELS = ("debug", "info", "warning", "error", "critical")

_FORMAT = "%(levelname)s %(name)s: %(message)s"


def default_level() -> str:
    """``$TCV_LOG_LEVEL`` when it names a level, else warning."""
    level = os.environ.get("TCV_LOG_LEVEL", "").lower()
    return level if level in LEVELS else "warning"


def configure(level: str = "warning") -> None:
    """Send the ``tcv`` loggers to stderr at ``level``."""
    logger = logging.getLogger("tcv")
    logger.setLevel(getattr(logging, level.upper()))
    if not any(getattr(h, "_tcv", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._tcv = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def debug_enabled() -> bool:
    return logging.getLogger("tcv").isEnabledFor(logging.DEBUG)
