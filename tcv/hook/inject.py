"""The injection flow for one container (SPEC §7).

1. ``config.json``: rootfs, mounts, environment, user, id mappings, devices;
2. the container's Triton cache path and the host directory behind it;
3. the GPUs the container was given, through the compatibility rules;
4. the image from the host-side store (filled on first use);
5. the fitting kernel directories, group files pointing at the container-side
   path, files owned by the container's user: moved in from a spare made ahead
   of time when the destination is on the store's filesystem (``spare.py``),
   else copied; then a detached process makes the next spare.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tcv.hook.idmap import host_owner
from tcv.hook.paths import BindView, container_cache_dir, open_in_container, passwd_home
from tcv.hook.state import ContainerConfig, HookError, State, load_config
from tcv.hook.store import Store, default_root, resolve

log = logging.getLogger(__name__)

PULL_ENV = "TCV_HOOK_PULL"
PULL_POLICIES = ("missing", "never")
DEFAULT_PULL = "missing"


@dataclass(frozen=True)
class InjectReport:
    image: str
    digest: str
    container_path: str
    host_path: str
    gpus: tuple[str, ...]
    installed: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    store_warm: bool = True
    from_spare: int = 0  # how many of ``installed`` were moved in from a spare
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def line(self) -> str:
        """What was injected, for the operator's log."""
        where = self.container_path + (f" (host {self.host_path})" if self.host_path else "")
        head = (
            f"injected {len(self.installed)} kernel(s) from {self.image} ({self.digest}) "
            f"into {where} for {', '.join(self.gpus) or 'no GPU'}; "
            f"{len(self.present)} already present, {len(self.skipped)} not for these GPUs; "
            f"store {'warm' if self.store_warm else 'filled'}; {self.delivery()}"
            f"{self.seconds:.3f}s"
        )
        if self.installed:
            head += "; installed " + " ".join(self.installed)
        if self.skipped:
            reasons = sorted({reason for _, reason in self.skipped})
            head += "; skipped because " + " | ".join(reasons[:3])
        return head + "".join(f"; {n}" for n in self.notes)

    def delivery(self) -> str:
        """How the installed kernels got there (empty when none were installed)."""
        if not self.installed:
            return ""
        copied = len(self.installed) - self.from_spare
        if not self.from_spare:
            return "copied; "
        return "from a spare; " if not copied else f"from a spare ({copied} copied); "


def image_home(view: BindView, uid: int) -> str | None:
    """The home of ``uid`` from the image's ``/etc/passwd``, read inside the root
    (never through a link that leaves it)."""
    try:
        with open_in_container(view, "/etc") as etc:
            fd = os.open("passwd", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=etc.fd)
    except (HookError, OSError):
        return None
    with os.fdopen(fd, "r", errors="replace") as f:
        return passwd_home(f.read(1 << 20), uid)


def cache_path_of(state: State, config: ContainerConfig, view: BindView) -> str:
    annotations = {**config.annotations, **state.annotations}
    home = config.env.get("HOME", "").strip() or image_home(view, config.uid)
    if not home:
        home = "/root" if config.uid == 0 else "/"
    return container_cache_dir(annotations, config.env, home)


def visible_gpus(config: ContainerConfig, env: Mapping[str, str]):  # type: ignore[no-untyped-def]
    """The host's GPUs (the override in the hook's own environment, else detection)
    narrowed to those the container was given."""
    from tcv.gpu.discover import host_gpus, select_visible

    host = host_gpus(None, env.get("TCV_CUDA_DRIVER") or None, env=env)
    return select_visible(host, list(config.devices), config.env.get("NVIDIA_VISIBLE_DEVICES"))


def registry_options(env: Mapping[str, str]):  # type: ignore[no-untyped-def]
    from tcv.registry import RegistryOptions

    return RegistryOptions(
        tls_verify=env.get("TCV_HOOK_TLS_VERIFY", "true").lower() != "false",
        authfile=env.get("TCV_HOOK_AUTHFILE") or None,
    )


def pull_allowed(env: Mapping[str, str]) -> bool:
    policy = env.get(PULL_ENV, DEFAULT_PULL).strip().lower() or DEFAULT_PULL
    if policy not in PULL_POLICIES:
        raise HookError(
            f"{PULL_ENV}={policy!r} is not a pull policy",
            f"use one of {', '.join(PULL_POLICIES)} (tcv hook install --pull)",
        )
    return policy == "missing"


def inject(state: State, env: Mapping[str, str], *, deadline: float) -> InjectReport:
    """Inject the kernels ``state``'s container can use; raise HookError on failure."""
    started = time.monotonic()
    image = state.image
    if image is None:
        raise HookError("the container asked for no cache image")
    config = load_config(state.bundle)
    view = BindView.of(config)
    container_path = cache_path_of(state, config, view)
    owner = host_owner(config)
    host = visible_gpus(config, env)
    gpus = tuple(f"{g.backend}:{g.arch}" for g in host.gpus)

    opts = registry_options(env)
    remaining = max(1.0, deadline - time.monotonic())
    resolved = resolve(image, env, opts, pull=pull_allowed(env), timeout=remaining)
    store = Store(default_root(env))
    verdict = store.verdict(resolved.digest, host)
    warm = True
    if verdict is None:
        stored = store.get(resolved.digest)
        if stored is None:
            warm = False
            stored = store.fill(resolved, opts, timeout=max(1.0, deadline - time.monotonic()))

        from tcv.compat import check_entries

        checked = check_entries(stored.entries, host)
        verdict = store.keep_verdict(stored, host, checked.compatible, checked.incompatible)
    keys = list(verdict.compatible)
    skipped = verdict.incompatible
    if not keys:
        return InjectReport(
            image=image,
            digest=resolved.digest,
            container_path=container_path,
            host_path="",
            gpus=gpus,
            skipped=skipped,
            store_warm=warm,
            seconds=time.monotonic() - started,
            notes=("nothing in the image fits the container's GPUs",),
        )

    from tcv.hook.spare import Spares, SpareSpec, move_in, same_filesystem, spares_wanted
    from tcv.install import install_kernels

    wanted = spares_wanted(env)
    spec = SpareSpec.of(resolved.digest, keys, container_path, owner)
    spares = Spares(store.root / "spares")
    refill = False
    installed: list[str] = []
    from_spare = 0
    with open_in_container(view, container_path, create=True, owner=owner) as dest:
        # A kernel directory already there is left alone (installs never replace one
        # without --force, and Triton writes its entries atomically): a restart on a
        # kept volume then costs a directory listing, not a copy and a comparison.
        there = set(os.listdir(dest.path))
        present = [k for k in keys if k in there]
        todo = [k for k in keys if k not in there]
        # A spare helps only where a rename reaches: not an overlay rootfs, whose
        # st_dev is its own. There, every start copies and no spare is made.
        if todo and wanted and same_filesystem(dest.fd, store.root):
            refill = True
            try:
                spares.prepare(spec)
                claimed = spares.claim(spec.key)
            except OSError as err:  # the copy below still works
                log.debug("no spare for %s: %s", container_path, err)
                claimed = None
            if claimed is not None:
                try:
                    moved = move_in(claimed, todo, dest.path, owner)
                finally:
                    spares.discard(claimed)
                installed += moved.moved
                from_spare = len(moved.moved)
                present += moved.present
                todo = moved.missing
                if moved.error is not None and moved.error.errno == errno.EXDEV:
                    # Same filesystem, another mount: no rename will ever reach
                    # this cache, so no more spares are made for it.
                    refill = False
        if todo:
            result = install_kernels(
                verdict.cache_root,
                todo,
                dest.path,
                target_root=container_path,
                owner=owner,
            )
            installed += result.installed
            present += [*result.present, *result.differing]
        host_path = dest.host_path
    notes: tuple[str, ...] = ()
    if refill:
        from tcv.hook.spare import keeper_delay, keeper_idle, request_refill

        try:
            pid = request_refill(store.root, spec.key, wanted, keeper_idle(env), keeper_delay(env))
        except OSError as err:
            notes = (f"cannot start the spare refill: {err.strerror or err}",)
        else:
            notes = (
                "spare refill asked of the running keeper"
                if pid is None
                else f"spare refill by a new keeper, pid {pid}",
            )
    return InjectReport(
        image=image,
        digest=resolved.digest,
        container_path=container_path,
        host_path=host_path,
        gpus=gpus,
        installed=tuple(installed),
        present=tuple(sorted(present)),
        skipped=skipped,
        store_warm=warm,
        from_spare=from_spare,
        seconds=time.monotonic() - started,
        notes=notes,
    )
