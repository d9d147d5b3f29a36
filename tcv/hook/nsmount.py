"""Mount an overlay at the Triton cache path inside the container's mount namespace.

At ``prestart`` runc has made the container's mount namespace and every mount
of its ``config.json`` under the rootfs, but has not yet switched root
(libcontainer ``prepareRootfs``: hooks run "before we switch to the new root,
so that the old root is still available in the hooks"). A process that joins
that namespace therefore sees the host's tree (the store, the volume sources)
and, under the rootfs path, the container's tree with its volumes and binds in
place. It mounts there; after ``pivot_root`` the container keeps the overlay
and loses every path to its layers.

Joining: ``setns(2)`` through ctypes, in a forked child that does nothing but
walk and mount, then exits. Python 3.11 has no ``os.setns`` (3.12+), and
``nsenter``+``mount(8)`` would follow symlinks the image planted in the cache
path; here the target is walked one component at a time without following
links (``paths.open_in_container``) and mounted through ``/proc/self/fd/N``, as
runc mounts. The hook itself never changes namespace, and no process of it
survives the call.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tcv.hook.paths import BindView, open_in_container
from tcv.hook.state import HookError

CLONE_NEWNS = 0x00020000
MS_NOSUID = 0x2
MS_NODEV = 0x4
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class OverlayPlan:
    """What to mount: ``lowers`` (host paths, top first), the ``upper`` and ``work``
    directories (host paths), at ``container_path`` under the container's ``rootfs``.
    ``keep_target_below``: the directory already at the cache path (the image's own
    cache) stays visible as the lowest layer when it has anything in it."""

    rootfs: str
    container_path: str
    lowers: tuple[str, ...]
    upper: str
    work: str
    keep_target_below: bool = True
    userxattr: bool = False


def overlay_options(lowers: Sequence[str], upper: str, work: str, *, userxattr: bool) -> str:
    """The overlay mount data (overlayfs.rst). ``userxattr`` in a user namespace,
    where the ``trusted.`` xattrs overlay keeps its state in cannot be written."""
    if not lowers:
        raise ValueError("an overlay needs at least one lower directory")
    for p in (*lowers, upper, work):
        if any(c in p for c in ",:\n") or not p:
            raise ValueError(f"path {p!r} cannot be given to overlay")
    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    return opts + (",userxattr" if userxattr else "")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def open_host_dir(path: str) -> int:
    """Open a host directory by a path already resolved by hand, following no link
    on the way (a link swapped in since fails with ENOTDIR/ELOOP)."""
    fd = os.open("/", _PATH_DIR)
    try:
        for comp in [c for c in path.split("/") if c]:
            nxt = os.open(comp, _PATH_DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _mount_in_namespace(plan: OverlayPlan) -> None:
    """Runs in the child, in the container's mount namespace."""
    target = open_in_container(BindView(root=Path(plan.rootfs)), plan.container_path)
    fds = [open_host_dir(p) for p in (*plan.lowers, plan.upper, plan.work)]
    lowers = [f"/proc/self/fd/{fd}" for fd in fds[: len(plan.lowers)]]
    if plan.keep_target_below and os.listdir(target.path):
        lowers.append(str(target.path))
    data = overlay_options(
        lowers,
        f"/proc/self/fd/{fds[-2]}",
        f"/proc/self/fd/{fds[-1]}",
        userxattr=plan.userxattr,
    )
    libc = _libc()
    _check(
        libc.mount(
            b"tcv-cache",
            str(target.path).encode(),
            b"overlay",
            ctypes.c_ulong(MS_NOSUID | MS_NODEV),
            data.encode(),
        ),
        f"mount overlay at {plan.container_path}",
    )


def mount_overlay(pid: int, plan: OverlayPlan) -> None:
    """Mount ``plan`` in the mount namespace of process ``pid``; raise HookError
    with the reason when it cannot be done."""
    try:
        ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise HookError(
            f"cannot open the mount namespace of the container's process {pid}: {err.strerror}"
        ) from None
    rd, wr = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child, checked by its report
            code = 0
            try:
                os.close(rd)
                _check(_libc().setns(ns, CLONE_NEWNS), "setns")
                _mount_in_namespace(plan)
            except BaseException as err:  # reported to the parent, never raised
                code = 1
                text = (err.line() if isinstance(err, HookError) else str(err)).encode()
                num = err.errno if isinstance(err, OSError) and err.errno else 0
                os.write(wr, struct.pack("i", num) + text[:4000])
            os._exit(code)
        os.close(wr)
        wr = -1
        report = b""
        while chunk := os.read(rd, 4096):
            report += chunk
        _, status = os.waitpid(child, 0)
    finally:
        os.close(ns)
        os.close(rd)
        if wr >= 0:
            os.close(wr)
    if os.waitstatus_to_exitcode(status) != 0 or report:
        num = struct.unpack("i", report[:4])[0] if len(report) >= 4 else 0
        why = report[4:].decode(errors="replace") or f"exit status {status}"
        hint = ""
        if num in (errno.EPERM, errno.EINVAL, errno.ENODEV):
            hint = "the kernel refused the overlay (is overlayfs available to this user?)"
        raise HookError(f"cannot mount the cache in the container: {why}", hint or None)
