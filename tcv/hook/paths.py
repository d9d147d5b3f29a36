"""Where the container's Triton looks, and how to reach that directory from the host.

The container path comes from docs/spec.md §7's order: the ``inject-dir`` annotation,
``TRITON_CACHE_DIR``, ``TRITON_HOME/.triton/cache``, the process user's home
(``HOME``, else its ``/etc/passwd`` line inside the image) + ``/.triton/cache``
— the order Triton itself uses (runtime/cache.py ``default_cache_dir``).

Reaching it: the path is walked one component at a time in the *container's*
view. Each component is opened with ``O_PATH|O_NOFOLLOW`` relative to its
parent, so the kernel never follows a link for us; links are read and resolved
by hand against the container's root (absolute targets restart at the root,
``..`` stops at the root), and a component that is the destination of a bind
mount (bind mounts and named volumes, whose ``source`` is a host path)
continues in that mount's host source. Nothing can lead outside the rootfs or
the mount sources, whatever links the image plants.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tcv.hook.state import ANNOTATION_DIR, ANNOTATION_FOR, ContainerConfig, HookError, Mount

MAX_SYMLINKS = 40  # as Linux's path walk (MAXSYMLINKS)
_UNSAFE_USER = re.compile(r'[\\/:*?"<>|]')  # replaced by "_" in Inductor's default dir
_DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _clean(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))


def container_cache_dir(
    annotations: Mapping[str, str],
    env: Mapping[str, str],
    home: str | None,
    user: str | None = None,
) -> str:
    """The Triton cache path inside the container (absolute, normalised).

    ``cache.triton.image/inject-for=inductor`` (when neither ``inject-dir`` nor
    ``TRITON_CACHE_DIR`` is set) picks the directory Inductor points Triton at
    for device 0: ``${TORCHINDUCTOR_CACHE_DIR:-$TMPDIR/torchinductor_<user>}/triton/0``
    (PyTorch ``torch/_inductor/runtime/cache_dir_utils.py``); ``user`` is the
    container user's name, as ``getpass.getuser()`` would find it."""
    explicit = annotations.get(ANNOTATION_DIR, "").strip()
    if explicit:
        if not explicit.startswith("/"):
            raise HookError(
                f"annotation {ANNOTATION_DIR}={explicit!r} is not an absolute path",
                "give the Triton cache path inside the container, e.g. /cache/triton",
            )
        return _clean(explicit)
    for candidate in (env.get("TRITON_CACHE_DIR", "").strip(),):
        if candidate.startswith("/"):
            return _clean(candidate)
    workload = annotations.get(ANNOTATION_FOR, "").strip().lower() or "triton"
    if workload == "inductor":
        return _inductor_dir(env, user)
    if workload != "triton":
        raise HookError(
            f"annotation {ANNOTATION_FOR}={workload!r} is not a workload the hook serves",
            "use triton or inductor; for vLLM set inject-dir to the rank's triton_cache",
        )
    triton_home = env.get("TRITON_HOME", "").strip()
    if triton_home.startswith("/"):
        return _clean(posixpath.join(triton_home, ".triton", "cache"))
    return _clean(posixpath.join(home or "/", ".triton", "cache"))


def _inductor_dir(env: Mapping[str, str], user: str | None) -> str:
    base = env.get("TORCHINDUCTOR_CACHE_DIR", "").strip()
    if not base.startswith("/"):
        tmp = env.get("TMPDIR", "").strip()
        tmp = tmp if tmp.startswith("/") else "/tmp"
        name = _UNSAFE_USER.sub("_", user or "root")
        base = posixpath.join(tmp, f"torchinductor_{name}")
    return _clean(posixpath.join(base, "triton", "0"))


def container_user(env: Mapping[str, str], passwd: str | None, uid: int) -> str | None:
    """The user name ``getpass.getuser()`` returns in the container: ``LOGNAME``,
    ``USER``, ``LNAME``, ``USERNAME``, else the passwd entry of ``uid``."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if value := env.get(name, "").strip():
            return value
    for line in (passwd or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].strip() == str(uid) and fields[0]:
            return fields[0]
    return None


def passwd_home(passwd: str, uid: int) -> str | None:
    """The home directory of ``uid`` in an ``/etc/passwd`` text, if listed."""
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2].strip() == str(uid) and fields[5].startswith("/"):
            return fields[5]
    return None


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


@dataclass(frozen=True)
class BindView:
    """The container's filesystem as the host sees it: the rootfs plus the bind
    mounts (host source per container destination). Later mounts hide earlier
    ones at the same destination, as the runtime mounts them in order."""

    root: Path
    binds: Mapping[tuple[str, ...], Mount] = field(default_factory=dict)
    hidden: tuple[tuple[str, ...], ...] = ()  # destinations of non-bind mounts

    @classmethod
    def of(cls, config: ContainerConfig) -> BindView:
        binds: dict[tuple[str, ...], Mount] = {}
        hidden: list[tuple[str, ...]] = []
        for m in config.mounts:
            dest = tuple(split(_clean(m.destination)))
            if m.is_bind:
                binds[dest] = m
                if dest in hidden:
                    hidden.remove(dest)
            else:
                binds.pop(dest, None)
                hidden.append(dest)
        return cls(root=config.root, binds=binds, hidden=tuple(hidden))

    def mount_at(self, parts: Sequence[str]) -> Mount | None:
        return self.binds.get(tuple(parts))

    def hidden_at(self, parts: Sequence[str]) -> bool:
        return tuple(parts) in self.hidden


def _open_dir(path: str | Path, what: str) -> int:
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise HookError(f"cannot open {what} {path}: {err.strerror}") from None
    return fd


class OpenedDir:
    """A directory reached safely: its fd (``O_PATH``), the container path, and
    the host path it was reached through. ``path`` (``/proc/self/fd/N``) names
    exactly the opened directory, whatever links change later; close when done."""

    def __init__(self, fd: int, container_path: str, host_path: str) -> None:
        self.fd = fd
        self.container_path = container_path
        self.host_path = host_path

    @property
    def path(self) -> Path:
        return Path(f"/proc/self/fd/{self.fd}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_in_container(
    view: BindView,
    container_path: str,
    *,
    create: bool = False,
    owner: tuple[int, int] | None = None,
    mode: int = 0o755,
) -> OpenedDir:
    """Open the directory at ``container_path`` as the container will see it.

    With ``create``, missing directories are made (``mkdirat``) and given to
    ``owner``. Raises :class:`HookError` when a component is not a directory,
    lies under a mount the hook cannot reach from the host (tmpfs, proc), or
    the links loop.
    """
    todo = split(container_path)
    todo.reverse()  # a stack: pop() gives the next component
    stack: list[tuple[int, str]] = []  # (fd, host path) per resolved component
    parts: list[str] = []
    root_mount = view.mount_at([])
    base = root_mount.source if root_mount else str(view.root)
    stack.append((_open_dir(base, "the container root"), base))
    links = 0
    try:
        while todo:
            comp = todo.pop()
            if comp == "..":
                if parts:  # ".." at the root stays at the root
                    parts.pop()
                    os.close(stack.pop()[0])
                continue
            candidate = [*parts, comp]
            mount = view.mount_at(candidate)
            if mount is not None:
                if not os.path.isdir(mount.source):
                    raise HookError(
                        f"the mount source {mount.source} of {'/' + '/'.join(candidate)} "
                        "is not a directory on the host"
                    )
                stack.append((_open_dir(mount.source, "the mount source"), mount.source))
                parts.append(comp)
                continue
            if view.hidden_at(candidate):
                raise HookError(
                    f"{'/' + '/'.join(candidate)} is a non-bind mount the hook cannot "
                    "write into from the host",
                    "put the Triton cache on a volume, a bind mount or the image's filesystem",
                )
            dir_fd, host = stack[-1]
            host_child = posixpath.join(host, comp)
            try:
                fd = os.open(comp, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                if not create:
                    raise HookError(f"{'/' + '/'.join(candidate)} does not exist") from None
                try:
                    os.mkdir(comp, mode, dir_fd=dir_fd)
                    if owner is not None:
                        os.chown(comp, *owner, dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    pass  # made by a concurrent start: open it below like any other
                fd = os.open(comp, _DIR_FLAGS, dir_fd=dir_fd)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise HookError(
                        f"too many levels of symbolic links under {container_path}",
                        "fix the links in the image or set the cache path explicitly",
                    )
                target = os.readlink(comp, dir_fd=dir_fd)
                if target.startswith("/"):  # absolute: the container's root, not the host's
                    while parts:
                        parts.pop()
                        os.close(stack.pop()[0])
                rest = split(target)
                rest.reverse()
                todo.extend(rest)
                continue
            if not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, "not a directory", "/" + "/".join(candidate))
            stack.append((fd, host_child))
            parts.append(comp)
    except OSError as err:
        for fd, _ in stack:
            os.close(fd)
        raise HookError(
            f"cannot reach {container_path} in the container: "
            f"{err.strerror or err} ({err.filename or ''})".replace(" ()", ""),
        ) from None
    except BaseException:
        for fd, _ in stack:
            os.close(fd)
        raise
    fd, host = stack.pop()
    for other, _ in stack:
        os.close(other)
    return OpenedDir(fd, "/" + "/".join(parts), host)
