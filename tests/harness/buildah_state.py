"""What a build can leave behind: buildah working containers, their mounts,
and staging directories. Tests take a snapshot before and after a command and
assert that nothing new is left.

Uses subprocess directly (the harness is not product code).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/graph"
runroot = "{root}/run"
"""


@dataclass(frozen=True)
class State:
    containers: frozenset[str]
    mounts: frozenset[str]
    staging: frozenset[str]

    def leftovers(self, before: State) -> dict[str, list[str]]:
        """What is here now and was not in ``before`` (empty lists when clean)."""
        return {
            "containers": sorted(self.containers - before.containers),
            "mounts": sorted(self.mounts - before.mounts),
            "staging": sorted(self.staging - before.staging),
        }


def _buildah(*args: str, env: dict[str, str] | None = None, user: str | None = None) -> str:
    argv = ["buildah", *args]
    if user:
        argv = [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            *(f"{k}={v}" for k, v in (env or {}).items()),
            "buildah",
            "unshare",
            *argv,
        ]
        env = None
    out = subprocess.run(
        argv, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    return out.stdout


def containers(*, env: dict[str, str] | None = None, user: str | None = None) -> frozenset[str]:
    """Every buildah working container, as ``id name`` (podman's containers are
    not working containers and are left out)."""
    raw = _buildah("containers", "--json", env=env, user=user).strip()
    items = json.loads(raw) if raw and raw != "null" else []
    return frozenset(f"{c['id']} {c['containername']}" for c in items)


def mounts(*, env: dict[str, str] | None = None, user: str | None = None) -> frozenset[str]:
    """Every mounted working container (``buildah mount`` with no argument)."""
    out = _buildah("mount", env=env, user=user)
    return frozenset(line.strip() for line in out.splitlines() if line.strip())


def staging(root: Path) -> frozenset[str]:
    """The entries of a staging root (``/tmp/.tcv`` or ``$TCV_STAGING_ROOT``)."""
    try:
        return frozenset(p.name for p in Path(root).iterdir())
    except FileNotFoundError:
        return frozenset()


def snapshot(
    staging_root: Path, *, env: dict[str, str] | None = None, user: str | None = None
) -> State:
    return State(containers(env=env, user=user), mounts(env=env, user=user), staging(staging_root))


@contextlib.contextmanager
def private_storage(workdir: Path) -> Iterator[Path]:
    """Point the containers tools (and every tcv they run) at a storage of
    their own through ``$CONTAINERS_STORAGE_CONF``, so that before/after
    snapshots see only what the tests did, whatever else runs on the machine.
    Everything in it is removed afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "storage.conf"
    conf.write_text(STORAGE_CONF.format(root=workdir))
    previous = os.environ.get("CONTAINERS_STORAGE_CONF")
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
    try:
        yield conf
    finally:
        for argv in (["buildah", "rm", "--all"], ["buildah", "rmi", "--all", "--force"]):
            subprocess.run(argv, capture_output=True)
        if previous is None:
            os.environ.pop("CONTAINERS_STORAGE_CONF", None)
        else:
            os.environ["CONTAINERS_STORAGE_CONF"] = previous
        with open("/proc/self/mounts") as fh:
            held = [ln.split()[1] for ln in fh if ln.split()[1].startswith(str(workdir))]
        for mountpoint in sorted(held, reverse=True):
            subprocess.run(["umount", mountpoint], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
