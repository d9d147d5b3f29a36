"""``tcv inspect``: print an image's summary labels without downloading layers."""

from __future__ import annotations

from tcv.cli.base import TcvApplication
from tcv.errors import UsageError


class Inspect(TcvApplication):
    """Print an image's summary labels without downloading layers"""

    def main(self) -> int:
        raise UsageError("tcv inspect is not implemented yet")
