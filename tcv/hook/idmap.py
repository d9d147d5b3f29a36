"""Container ids to host ids through the user-namespace mappings (OCI config.md,
``linux.uidMappings``/``gidMappings``).

Without mappings the container shares the runtime's user namespace and ids
are used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from tcv.hook.state import ContainerConfig, HookError, IdMapping


def map_id(value: int, mappings: Sequence[IdMapping], kind: str = "uid") -> int:
    """The host id for container id ``value``."""
    if not mappings:
        return value
    for m in mappings:
        if m.container_id <= value < m.container_id + m.size:
            return m.host_id + (value - m.container_id)
    raise HookError(
        f"container {kind} {value} has no host {kind} in the user-namespace mappings",
        f"run the container with a {kind} inside its mapped range",
    )


def host_owner(config: ContainerConfig) -> tuple[int, int]:
    """The host (uid, gid) that the container process's files must belong to."""
    return (
        map_id(config.uid, config.uid_mappings, "uid"),
        map_id(config.gid, config.gid_mappings, "gid"),
    )
