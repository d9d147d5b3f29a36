"""What the hook needs from the OCI state (stdin) and the bundle's ``config.json``.

Only the fields the hook uses are parsed, into small frozen dataclasses
(STYLE #5). Both documents follow the OCI runtime spec (runtime.md "State",
config.md); podman and CRI-O pass the container's annotations in the state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcv.errors import TcvError

ANNOTATION_INJECT = "cache.triton.image/inject"
ANNOTATION_DIR = "cache.triton.image/inject-dir"
ANNOTATION_POLICY = "cache.triton.image/inject-policy"
ANNOTATION_FOR = "cache.triton.image/inject-for"

POLICY_STRICT = "strict"
POLICY_OPEN = "fail-open"


class HookError(TcvError):
    """The hook could not do what the container asked for."""


@dataclass(frozen=True)
class State:
    """The OCI state the runtime writes on the hook's stdin."""

    id: str
    bundle: str
    pid: int | None
    status: str
    annotations: Mapping[str, str]

    @property
    def image(self) -> str | None:
        """The cache image the container asked for, or None."""
        value = self.annotations.get(ANNOTATION_INJECT, "").strip()
        return value or None

    @property
    def strict(self) -> bool:
        return self.annotations.get(ANNOTATION_POLICY, "").strip().lower() == POLICY_STRICT


@dataclass(frozen=True)
class IdMapping:
    """One ``linux.uidMappings``/``gidMappings`` line: container ids
    ``[container_id, container_id + size)`` are host ids from ``host_id``."""

    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True)
class Mount:
    destination: str
    source: str
    type: str
    options: tuple[str, ...] = ()

    @property
    def is_bind(self) -> bool:
        """A bind mount (bind mounts and named volumes alike): its source is a host path."""
        return self.type == "bind" or "bind" in self.options or "rbind" in self.options


@dataclass(frozen=True)
class ContainerConfig:
    """The parts of ``config.json`` the hook uses."""

    root: Path
    env: Mapping[str, str]
    uid: int
    gid: int
    mounts: tuple[Mount, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    devices: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)


def parse_state(text: str | bytes) -> State:
    """Parse the runtime's state JSON; raise :class:`HookError` when it is not one."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise HookError(
            f"cannot read the OCI state on stdin: {err}",
            "the hook must be run by an OCI runtime (podman, CRI-O)",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("bundle"), str):
        raise HookError(
            "cannot read the OCI state on stdin: no bundle path",
            "the hook must be run by an OCI runtime (podman, CRI-O)",
        )
    annotations = data.get("annotations") or {}
    pid = data.get("pid")
    return State(
        id=str(data.get("id", "")),
        bundle=data["bundle"],
        pid=pid if isinstance(pid, int) else None,
        status=str(data.get("status", "")),
        annotations={str(k): str(v) for k, v in annotations.items()}
        if isinstance(annotations, dict)
        else {},
    )


def _env_map(items: object) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and "=" in item:
            key, _, value = item.partition("=")
            env[key] = value  # later entries win, as in execve's users
    return env


def _mappings(items: object) -> tuple[IdMapping, ...]:
    out = []
    for m in items if isinstance(items, list) else []:
        out.append(IdMapping(int(m["containerID"]), int(m["hostID"]), int(m["size"])))
    return tuple(out)


def parse_config(data: Mapping[str, Any], bundle: str | os.PathLike[str]) -> ContainerConfig:
    """The hook's view of an OCI ``config.json`` already decoded into ``data``."""
    try:
        root = data["root"]["path"]
        process = data.get("process") or {}
        user = process.get("user") or {}
        linux = data.get("linux") or {}
        mounts = tuple(
            Mount(
                destination=str(m["destination"]),
                source=str(m.get("source", "")),
                type=str(m.get("type", "")),
                options=tuple(str(o) for o in m.get("options") or ()),
            )
            for m in data.get("mounts") or ()
        )
        devices = tuple(
            str(d["path"])
            for d in linux.get("devices") or ()
            if isinstance(d, dict) and "path" in d
        )
        cfg = ContainerConfig(
            root=Path(bundle) / root,  # relative paths are relative to the bundle
            env=_env_map(process.get("env")),
            uid=int(user.get("uid", 0)),
            gid=int(user.get("gid", 0)),
            mounts=mounts,
            uid_mappings=_mappings(linux.get("uidMappings")),
            gid_mappings=_mappings(linux.get("gidMappings")),
            devices=devices,
            annotations={str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise HookError(
            f"cannot read the container's config.json: missing or bad field {err}",
            "the bundle does not follow the OCI runtime spec",
        ) from None
    return cfg


def load_config(bundle: str) -> ContainerConfig:
    path = Path(bundle) / "config.json"
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise HookError(
            f"cannot read {path}: {err}", "the bundle does not follow the OCI runtime spec"
        ) from None
    if not isinstance(data, dict):
        raise HookError(f"cannot read {path}: not a JSON object")
    return parse_config(data, bundle)
