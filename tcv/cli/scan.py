"""``tcv scan``: list the kernels of a local Triton cache and their targets."""

from __future__ import annotations

from tcv.cli.base import TcvApplication
from tcv.errors import UsageError


class Scan(TcvApplication):
    """List the kernels of a local Triton cache and their targets"""

    def main(self) -> int:
        raise UsageError("tcv scan is not implemented yet")
