"""``tcv hook``: manage the OCI runtime hook that injects kernels at container start."""

from __future__ import annotations

from tcv.cli.base import TcvApplication
from tcv.errors import UsageError


class Hook(TcvApplication):
    """Manage the OCI runtime hook that injects kernels at container start"""

    def main(self) -> int:
        raise UsageError("tcv hook is not implemented yet")
