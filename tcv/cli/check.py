"""``tcv check``: per-kernel verdict of a cache or image against this host."""

from __future__ import annotations

from tcv.cli.base import TcvApplication
from tcv.errors import UsageError


class Check(TcvApplication):
    """Per-kernel verdict of a cache or image against this host"""

    def main(self) -> int:
        raise UsageError("tcv check is not implemented yet")
