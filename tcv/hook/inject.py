"""The injection flow for one container (docs/spec.md §7).

1. ``config.json``: rootfs, mounts, environment, user, id mappings, devices;
2. the container's Triton cache path and the host directory behind it;
3. the GPUs the container was given and the Triton in its rootfs, through the
   compatibility rules;
4. the image from the host-side store (filled on first use);
5. the rendered view of the fitting kernels for (digest, kernels, path, owner),
   rendered once under the image's lock (``view.py``);
6. an overlay at the cache path in the container's mount namespace, the view
   as its lower layer (``nsmount.py``): the upper layer is the volume or bind
   source when the cache path is on one (what Triton writes stays there),
   else a per-container directory in the store (``upper.py``), removed at
   ``poststop``.

A volume that already holds every fitting kernel is left as it is
("present"). Where no overlay can be made (the volume and the store on
different mounts, a kernel that refuses it), the kernels are copied
("copied").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from tcv.hook.idmap import host_owner
from tcv.hook.paths import (
    BindView,
    container_cache_dir,
    container_user,
    open_in_container,
    passwd_home,
)
from tcv.hook.settings import HookSettings, in_user_namespace
from tcv.hook.state import ANNOTATION_FOR, ContainerConfig, HookError, Mount, State, load_config
from tcv.hook.store import Store, resolve

log = logging.getLogger(__name__)


MOUNTED, PRESENT, COPIED, NONE = "mounted", "present", "copied", "none"


@dataclass
class Progress:
    """How far a start got: what the time-bound message reports."""

    phase: str = "starting"
    store_warm: bool = True
    delivered: int = 0


PROGRESS = Progress()


@dataclass(frozen=True)
class InjectReport:
    image: str
    digest: str
    container_path: str
    host_path: str
    gpus: tuple[str, ...]
    delivery: str = NONE
    keys: tuple[str, ...] = ()
    present: int = 0
    skipped: tuple[tuple[str, str], ...] = ()
    triton: str | None = None
    store_warm: bool = True
    view_rendered: bool = False
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def line(self) -> str:
        """The one info line per start (the key list is logged at debug level)."""
        where = self.container_path + (f" (host {self.host_path})" if self.host_path else "")
        never = sum(1 for _, r in self.skipped if "never be hit" in r)
        text = (
            f"{self.image} ({self.digest}) at {where} for {', '.join(self.gpus) or 'no GPU'}: "
            f"delivery {self.delivery}, {len(self.keys)} kernel(s)"
            + (f" ({self.present} already there)" if self.present else "")
            + f", {len(self.skipped) - never} not for these GPUs, "
            f"{never} never hit by Triton {self.triton or '(unknown)'}; "
            f"view {'rendered' if self.view_rendered else 'reused'}, "
            f"store {'warm' if self.store_warm else 'filled'}; {self.seconds:.3f}s"
        )
        if self.skipped:
            reasons = sorted({reason for _, reason in self.skipped})
            text += "; left out because " + " | ".join(reasons[:3])
        return text + "".join(f"; {n}" for n in self.notes)


def image_passwd(view: BindView) -> str | None:
    """The image's ``/etc/passwd``, read inside the root (never through a link
    that leaves it)."""
    try:
        with open_in_container(view, "/etc") as etc:
            fd = os.open("passwd", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=etc.fd)
    except (HookError, OSError):
        return None
    with os.fdopen(fd, "r", errors="replace") as f:
        return f.read(1 << 20)


def image_home(view: BindView, uid: int) -> str | None:
    """The home of ``uid`` from the image's ``/etc/passwd``."""
    passwd = image_passwd(view)
    return passwd_home(passwd, uid) if passwd is not None else None


def cache_path_of(state: State, config: ContainerConfig, view: BindView) -> str:
    annotations = {**config.annotations, **state.annotations}
    home = config.env.get("HOME", "").strip() or image_home(view, config.uid)
    if not home:
        home = "/root" if config.uid == 0 else "/"
    user = None
    if annotations.get(ANNOTATION_FOR, "").strip():
        user = container_user(config.env, image_passwd(view), config.uid)
    return container_cache_dir(annotations, config.env, home, user)


def visible_gpus(config: ContainerConfig, env: Mapping[str, str], settings: HookSettings):
    """The host's GPUs (the override in the hook's own environment, else detection)
    narrowed to those the container was given."""
    from tcv.gpu.discover import host_gpus, select_visible

    host = host_gpus(None, settings.cuda_driver, env=env)
    return select_visible(host, list(config.devices), config.env.get("NVIDIA_VISIBLE_DEVICES"))


def covering_mount(view: BindView, host_path: str) -> Mount | None:
    """The bind mount (volume or bind) whose host source holds ``host_path``, the
    deepest one; None when the path is in the container's own rootfs."""
    best: Mount | None = None
    for mount in view.binds.values():
        src = mount.source.rstrip("/") or "/"
        inside = host_path == src or host_path.startswith(src + "/")
        if inside and (best is None or len(src) > len(best.source.rstrip("/"))):
            best = mount
    return best


def mount_id(path: str | os.PathLike[str]) -> int | None:
    """The id of the mount ``path`` is on (``/proc/self/fdinfo``: an overlay's
    upper and work directories must be on one mount)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return None


def _verdict(store: Store, resolved, host, triton: str | None, opts, deadline: float):
    verdict = store.verdict(resolved.digest, host, triton)
    if verdict is not None:
        return verdict
    stored = store.get(resolved.digest)
    if stored is None:
        PROGRESS.store_warm = False
        PROGRESS.phase = "filling the store (first use of the image)"
        stored = store.fill(resolved, opts, timeout=max(1.0, deadline - time.monotonic()))
    from tcv.compat import check_entries

    checked = check_entries(stored.entries, host, triton_version=triton)
    return store.keep_verdict(stored, host, checked.compatible, checked.incompatible, triton)


def _view(store: Store, spec, resolved, opts, deadline: float):
    """The view for ``spec``: found, or rendered once under the image's lock
    (re-checked after taking it: another start may have rendered it meanwhile)."""
    from tcv.hook.view import find_view, render_view

    view = find_view(store.root, spec)
    if view is not None:
        return view, False
    PROGRESS.phase = "waiting for the image's lock"
    with store.locked(spec.digest):
        view = find_view(store.root, spec)
        if view is not None:
            return view, False
        PROGRESS.phase = "rendering the view"
        stored = store.get(spec.digest)
        if stored is None:  # pruned since the verdict was kept
            PROGRESS.store_warm = False
            PROGRESS.phase = "filling the store (first use of the image)"
            stored = store.fill_locked(
                resolved, opts, timeout=max(1.0, deadline - time.monotonic())
            )
        PROGRESS.phase = "rendering the view"
        return render_view(store.root, spec, stored.cache_root), True


def inject(
    state: State,
    env: Mapping[str, str],
    *,
    deadline: float,
    settings: HookSettings | None = None,
) -> InjectReport:
    """Give ``state``'s container the kernels it can use; raise HookError on failure.
    ``env``: the hook's environment (GPU overrides, skopeo's); ``settings``: what
    it says (read from ``env`` when not given)."""
    from tcv.hook import upper
    from tcv.hook.triton import container_triton
    from tcv.hook.view import ViewSpec, touch

    started = time.monotonic()
    settings = settings or HookSettings.from_env(env)
    image = state.image
    if image is None:
        raise HookError("the container asked for no cache image")
    PROGRESS.phase = "reading the container's configuration"
    config = load_config(state.bundle)
    bview = BindView.of(config)
    container_path = cache_path_of(state, config, bview)
    owner = host_owner(config)
    host = visible_gpus(config, env, settings)
    gpus = tuple(f"{g.backend}:{g.arch}" for g in host.gpus)
    found = container_triton(bview, config.env)
    triton = found.version.split("+", 1)[0] if found else None
    if found:
        log.debug("container Triton %s (%s)", found.version, found.where)

    PROGRESS.phase = "resolving the cache image"
    opts = settings.registry_options()
    remaining = max(1.0, deadline - time.monotonic())
    resolved = resolve(image, env, opts, pull=settings.pull_allowed(), timeout=remaining)
    store = Store(settings.store_root)
    verdict = _verdict(store, resolved, host, triton, opts, deadline)
    keys = tuple(verdict.compatible)
    report = InjectReport(
        image=image,
        digest=resolved.digest,
        container_path=container_path,
        host_path="",
        gpus=gpus,
        skipped=verdict.incompatible,
        triton=triton,
        store_warm=PROGRESS.store_warm,
    )
    if not keys:
        return _done(report, started, notes=("nothing in the image fits the container",))

    PROGRESS.phase = "opening the cache path"
    with open_in_container(bview, container_path, create=True, owner=owner) as dest:
        host_path = dest.host_path
        on = covering_mount(bview, host_path)
        there = set(os.listdir(dest.path)) if on is not None else set()
    present = sum(1 for k in keys if k in there)
    report = _replace(report, keys=keys, host_path=host_path if on else "", present=present)
    if on is not None and present == len(keys):
        # A kept volume that holds them all: nothing to do.
        return _done(report, started, delivery=PRESENT)

    spec = ViewSpec.of(resolved.digest, keys, container_path, owner)
    view, rendered = _view(store, spec, resolved, opts, deadline)
    report = _replace(report, view_rendered=rendered, store_warm=PROGRESS.store_warm)
    touch(view)

    writable_volume = on is not None and "ro" not in on.options
    cid = upper.check_id(state.id)
    start = upper.process_start(state.pid) if state.pid else None
    notes: list[str] = []
    if start is not None:
        PROGRESS.phase = "mounting the view"
        with store.locked(spec.digest, shared=True):  # no prune removes the view meanwhile
            folder = upper.write_record(
                store.root, upper.Record(cid, state.pid or 0, start, view.key, spec.digest)
            )
        try:
            up, work = upper.make_layer_dirs(folder, owner, upper=not writable_volume)
            if writable_volume and mount_id(host_path) != mount_id(work):
                raise HookError(
                    f"the volume behind {container_path} and the store {store.root} are on "
                    "different mounts, and an overlay's upper and work directories must share one"
                )
            from tcv.hook.nsmount import OverlayPlan, mount_overlay

            plan = OverlayPlan(
                rootfs=str(config.root),
                container_path=container_path,
                lowers=(str(view.tree),),
                upper=host_path if writable_volume else str(up),
                work=str(work),
                keep_target_below=not writable_volume,
                userxattr=in_user_namespace(),
            )
            mount_overlay(state.pid or 0, plan)
        except HookError as err:
            upper.remove_container(store.root, cid)
            notes.append(f"no overlay ({err.line()})")
            log.debug("no overlay for %s: %s", cid, err.line())
        else:
            swept = upper.sweep(store.root)  # containers whose stop was never seen
            if swept:
                log.debug("removed the upper layers of gone containers %s", ", ".join(swept))
            _keep_under_cap(store, settings.store_max)
            return _done(report, started, delivery=MOUNTED)
    else:
        notes.append("no container process to mount in")
    # The fallback: a copy, into the volume or the rootfs.
    PROGRESS.phase = "copying the kernels"
    from tcv.install import install_kernels

    with open_in_container(bview, container_path, create=True, owner=owner) as dest:
        result = install_kernels(
            view.tree, keys, dest.path, target_root=container_path, owner=owner
        )
    PROGRESS.delivered = len(result.installed)
    return _done(
        _replace(report, present=len(result.present) + len(result.differing)),
        started,
        delivery=COPIED,
        notes=tuple(notes),
    )


def _replace(report: InjectReport, **kw: object) -> InjectReport:
    import dataclasses

    return dataclasses.replace(report, **kw)  # type: ignore[arg-type]


def _done(
    report: InjectReport, started: float, *, delivery: str = NONE, notes: tuple[str, ...] = ()
) -> InjectReport:
    if delivery in (MOUNTED, PRESENT):
        PROGRESS.delivered = len(report.keys)
    return _replace(
        report,
        delivery=delivery,
        seconds=time.monotonic() - started,
        notes=report.notes + notes,
    )


def _keep_under_cap(store: Store, text: str) -> None:
    """Prune the store down to ``$TCV_HOOK_STORE_MAX`` (LRU), after this start is
    served; never fails the start."""
    if not text:
        return
    from tcv.hook.lru import parse_size
    from tcv.hook.prune import prune

    try:
        removed = prune(store, max_size=parse_size(text))
    except (ValueError, OSError, HookError) as err:
        log.warning("cannot keep the store %s under %s: %s", store.root, text, err)
        return
    if removed:
        log.info("store over %s: removed %s", text, ", ".join(e.name for e in removed))


def poststop(state: State, settings: HookSettings) -> list[str]:
    """Remove the container's upper layer, and those of containers that no longer
    exist; the names removed."""
    from tcv.hook import upper

    root = settings.store_root
    removed = []
    if state.id and upper.remove_container(root, upper.check_id(state.id)):
        removed.append(state.id)
    removed += upper.sweep(root)
    return removed
