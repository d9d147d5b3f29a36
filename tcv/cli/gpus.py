"""``tcv gpus``: list this host's accelerators as TCV sees them."""

from __future__ import annotations

from tcv.cli.base import TcvApplication
from tcv.errors import UsageError


class Gpus(TcvApplication):
    """List this host's accelerators as TCV sees them"""

    def main(self) -> int:
        raise UsageError("tcv gpus is not implemented yet")
