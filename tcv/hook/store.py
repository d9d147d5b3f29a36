"""The hook's host-side store of validated, unpacked cache images (docs/spec.md §7).

Layout under the store root (``$TCV_STORE``; root: ``/var/lib/tcv/store``;
rootless: ``$XDG_DATA_HOME/tcv/store``)::

    images/<algo>-<hex>/store.json   the image's labels and manifest
    images/<algo>-<hex>/<cache>/...   its validated kernel directories
    images/<algo>-<hex>/verdicts/*.json  which kernels fit, per set of GPUs and Triton
    images/<algo>-<hex>/used          its mtime is the image's last use (LRU)
    views/<key>/...                   rendered read-only views (view.py)
    containers/<id>/...               per-container upper layers (upper.py)
    locks/<algo>-<hex>.lock           one fill or render at a time per image
    tmp/fill-*/, tmp/view-*/          fills and renders in progress (renamed into place)

Keyed by the manifest digest of the image as the host holds it. A container
start with a warm store costs a digest look-up (the local image index, no
subprocess), the verdict for the container's GPUs (kept per set of GPUs, so
the manifest is read once) and the mount of a rendered view. A fill happens once
per image: under a lock, into a temporary directory renamed into place, so
concurrent starts either fill it or wait and reuse it, and a reader never
sees half an image.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tcv import fs
from tcv.hook.state import HookError

if TYPE_CHECKING:
    from tcv.cache.kernel import KernelEntry
    from tcv.gpu.model import HostGpus

log = logging.getLogger(__name__)

STORE_FILE = "store.json"
STALE_FILL_SECONDS = 24 * 3600
VERDICTS = "verdicts"

_TRANSPORTS = ("containers-storage:", "docker://", "oci:", "oci-archive:", "docker-archive:")
_LOCAL_ONLY = ("oci:", "oci-archive:", "docker-archive:")


def digest_dirname(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if not algo.isalnum() or not hexpart.isalnum():
        raise HookError(f"bad image digest {digest!r}")
    return f"{algo}-{hexpart}"


# --- which image: the local image index ---------------------------------------------------


def split_transport(ref: str) -> tuple[str, str]:
    """``("containers-storage:", "localhost/x")`` for ``containers-storage:localhost/x``;
    a bare name has transport ``""`` (a registry name, looked up locally first)."""
    for transport in _TRANSPORTS:
        if ref.startswith(transport):
            return transport, ref[len(transport) :]
    return "", ref


def name_candidates(name: str) -> list[str]:
    """The fully qualified names local storage may hold ``name`` under, as podman
    normalises them (docker.io/library/ for bare names, ``:latest`` when untagged)."""
    if "@" in name:
        return [name]
    last = name.rsplit("/", 1)[-1]
    tagged = name if ":" in last else f"{name}:latest"
    first = tagged.split("/", 1)[0]
    if "/" in tagged and ("." in first or ":" in first or first == "localhost"):
        return [tagged]
    library = tagged if "/" in tagged else f"library/{tagged}"
    return [f"localhost/{tagged}", f"docker.io/{library}"]


def find_in_index(images: list[dict[str, object]], name: str) -> str | None:
    """The manifest digest of ``name`` in a containers-storage ``images.json`` list."""
    if "@" in name:
        wanted = name.split("@", 1)[1]
        for image in images:
            digests = image.get("digests") or [image.get("digest")]
            if wanted in digests:  # type: ignore[operator]
                return wanted
        return None
    for candidate in name_candidates(name):
        for image in images:
            if candidate in (image.get("names") or ()):  # type: ignore[operator]
                digest = image.get("digest")
                return str(digest) if digest else None
    return None


def rootless(env: Mapping[str, str]) -> bool:
    """Whether containers-storage is the user's: run by a user, or in the user
    namespace of rootless podman (``_CONTAINERS_USERNS_CONFIGURED``, as
    containers/storage pkg/unshare ``IsRootless`` reads it)."""
    return os.geteuid() != 0 or bool(env.get("_CONTAINERS_USERNS_CONFIGURED"))


def _storage_conf(path: Path) -> dict[str, object] | None:
    import tomllib

    try:
        data = tomllib.loads(path.read_text()).get("storage", {})
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def storage_index_paths(env: Mapping[str, str]) -> list[Path]:
    """The ``images.json`` files of the host's containers-storage (storage.conf's
    graphroot and driver; containers-storage.conf(5)), the user's when rootless."""
    system = Path(env.get("CONTAINERS_STORAGE_CONF") or "/etc/containers/storage.conf")
    graphroot, driver = "/var/lib/containers/storage", ""
    conf = _storage_conf(system)
    key = "graphroot"
    if rootless(env) and env.get("HOME"):
        config_home = env.get("XDG_CONFIG_HOME") or os.path.join(env["HOME"], ".config")
        data_home = env.get("XDG_DATA_HOME") or os.path.join(env["HOME"], ".local", "share")
        graphroot = os.path.join(data_home, "containers", "storage")
        user = None
        if not env.get("CONTAINERS_STORAGE_CONF"):
            user = _storage_conf(Path(config_home) / "containers" / "storage.conf")
        if user is not None:
            conf = user
        else:
            key = "rootless_storage_path"  # the system file's setting for users
    if conf:
        graphroot = str(conf.get(key) or graphroot)
        driver = str(conf.get("driver") or "")
    drivers = [driver] if driver else ["overlay", "vfs", "btrfs", "zfs"]
    return [Path(graphroot) / f"{d}-images" / "images.json" for d in drivers]


def local_digest(name: str, env: Mapping[str, str]) -> str | None:
    """The digest of ``name`` in local storage, read from the storage's image index.

    A fast path (no subprocess): None when the index cannot tell, and the caller
    asks skopeo. The index is replaced atomically by containers/storage, so a
    read without its lock sees a whole file."""
    for path in storage_index_paths(env):
        try:
            images = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(images, list):
            found = find_in_index(images, name)
            if found:
                return found
    return None


def inspect_digest(ref: str, opts: object, timeout: float) -> str | None:
    """The manifest digest of ``ref`` (a transport reference) by ``skopeo inspect
    --raw``; None when the image does not exist there."""
    from tcv.errors import ToolError
    from tcv.tools.runner import run

    argv = ["skopeo", "inspect", "--raw"]
    if ref.startswith("docker://"):
        argv += opts.args()  # type: ignore[attr-defined]
    try:
        result = run([*argv, ref], timeout=timeout, what=f"inspect {ref}")
    except ToolError as err:
        log.debug("skopeo inspect %s: %s", ref, err.line())
        if err.returncode is None:  # not installed or timed out: not "absent"
            raise HookError(err.line()) from None
        return None
    return "sha256:" + hashlib.sha256(result.stdout.encode()).hexdigest()


# --- the store -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredImage:
    digest: str
    image: str
    dir: Path
    cache_root: Path
    entries: tuple[KernelEntry, ...]
    labels: Mapping[str, str]


@dataclass(frozen=True)
class StoredVerdict:
    """Which kernels of a stored image fit one set of GPUs (``check_entries``),
    kept so that a warm start never parses the manifest again."""

    cache_root: Path
    compatible: tuple[str, ...]
    incompatible: tuple[tuple[str, str], ...]


def verdict_key(host: HostGpus, triton: str | None = None) -> str:
    """The name of the verdict for ``host`` and the consuming Triton: what the rules
    read of them (each GPU's index, backend, arch and warp size; the CUDA driver
    version; the Triton version), and the rules' own version, so that an update of
    tcv never reuses an old verdict."""
    import tcv

    try:
        rules = os.stat(Path(tcv.__file__).parent / "compat.py").st_mtime_ns
    except OSError:
        rules = 0
    doc = [
        tcv.__version__,
        rules,
        [[g.index, g.backend, g.arch, g.warp_size] for g in host.gpus],
        list(host.cuda_driver) if host.cuda_driver else None,
        *([triton] if triton else []),
    ]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Resolved:
    """Which image a reference names: the reference to fetch it from and its digest."""

    source: str
    digest: str
    local: bool


def guard_private(path: Path) -> None:
    """The store's directories hold code that containers run: they must be real
    directories of this user, writable by nobody else. A directory of ours that
    is group- or world-writable (made before, by hand) is tightened; one that is
    a link or belongs to another user is refused."""
    st = os.lstat(path)
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise HookError(f"the store path {path} is not a directory (a link?)")
    if st.st_uid != os.geteuid():
        raise HookError(
            f"the store directory {path} belongs to uid {st.st_uid}, not to this user",
            "give the hook a store of its own (tcv hook install --store DIR)",
        )
    if st.st_mode & 0o022:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def images(self) -> Path:
        return self.root / "images"

    def _ensure(self) -> None:
        for sub in (self.root, self.images, self.root / "locks", self.root / "tmp"):
            sub.mkdir(mode=0o700, parents=True, exist_ok=True)
            guard_private(sub)

    def get(self, digest: str) -> StoredImage | None:
        """The stored image with this digest, or None when it has not been filled."""
        path = self.images / digest_dirname(digest)
        try:
            record = json.loads((path / STORE_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise HookError(
                f"the store entry {path} is damaged: {err}",
                f"remove {path}; the next container start fills it again",
            ) from None
        from tcv.image.manifest import parse_manifest

        return StoredImage(
            digest=digest,
            image=str(record.get("image", "")),
            dir=path,
            cache_root=path / record["cache"],
            entries=tuple(parse_manifest(record["manifest"])),
            labels=dict(record.get("labels") or {}),
        )

    def verdict(
        self, digest: str, host: HostGpus, triton: str | None = None
    ) -> StoredVerdict | None:
        """The kept verdict of the stored image ``digest`` for ``host``, or None."""
        name = f"{verdict_key(host, triton)}.json"
        path = self.images / digest_dirname(digest) / VERDICTS / name
        try:
            doc = json.loads(path.read_bytes())
            return StoredVerdict(
                cache_root=self.images / digest_dirname(digest) / str(doc["cache"]),
                compatible=tuple(str(k) for k in doc["compatible"]),
                incompatible=tuple((str(k), str(r)) for k, r in doc["incompatible"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet (or damaged): judged again and rewritten

    def keep_verdict(
        self,
        stored: StoredImage,
        host: HostGpus,
        compatible: list[str],
        incompatible: list[tuple[str, str]],
        triton: str | None = None,
    ) -> StoredVerdict:
        """Keep a verdict beside the stored image (atomically; best effort)."""
        verdict = StoredVerdict(stored.cache_root, tuple(compatible), tuple(incompatible))
        folder = stored.dir / VERDICTS
        doc = {
            "cache": str(stored.cache_root.relative_to(stored.dir)),
            "compatible": list(compatible),
            "incompatible": [list(x) for x in incompatible],
        }
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            fs.write_atomic(folder / f"{verdict_key(host, triton)}.json", json.dumps(doc))
        except OSError as err:
            log.debug("cannot keep the verdict in %s: %s", folder, err)
        return verdict

    def sweep(self, max_age: float = STALE_FILL_SECONDS) -> list[str]:
        """Remove fills that a killed hook left behind (the runtime kills a hook at
        its timeout, so no ``finally`` ran); a fill younger than ``max_age`` may be
        running and is kept."""
        import shutil

        removed: list[str] = []
        now = time.time()
        try:
            names = os.listdir(self.root / "tmp")
        except FileNotFoundError:
            return removed
        for name in names:
            path = self.root / "tmp" / name
            try:
                if now - path.lstat().st_mtime > max_age:
                    shutil.rmtree(path)
                    removed.append(name)
            except OSError:
                continue
        return removed

    @contextlib.contextmanager
    def locked(self, digest: str, *, shared: bool = False) -> Iterator[None]:
        """The image's lock: exclusive to fill, render or remove; shared to start
        using a view (so that no prune removes it meanwhile)."""
        self._ensure()
        lock = self.root / "locks" / f"{digest_dirname(digest)}.lock"
        with fs.lock(fs.open_lock(lock), shared=shared):  # the hook's time bound ends a long wait
            yield

    def fill_locked(
        self, resolved: Resolved, opts: object, *, timeout: float | None = None
    ) -> StoredImage:
        """:meth:`fill` for a caller that holds the image's lock already."""
        existing = self.get(resolved.digest)
        if existing is not None:
            return existing
        return self._fill_locked(resolved, opts, None, timeout)

    def fill(
        self,
        resolved: Resolved,
        opts: object,
        *,
        max_size: int | None = None,
        timeout: float | None = None,
    ) -> StoredImage:
        """Fetch, validate and unpack the image into the store, once."""
        existing = self.get(resolved.digest)
        if existing is not None:
            return existing
        with self.locked(resolved.digest):
            existing = self.get(resolved.digest)  # filled while we waited
            if existing is not None:
                return existing
            return self._fill_locked(resolved, opts, max_size, timeout)

    def _fill_locked(
        self, resolved: Resolved, opts: object, max_size: int | None, timeout: float | None
    ) -> StoredImage:
        import shutil
        import tempfile

        from tcv.image.fetch import fetch_image, fetch_images
        from tcv.image.manifest import build_manifest
        from tcv.image.ref import parse_image_ref

        self.sweep()
        work = Path(tempfile.mkdtemp(prefix="fill-", dir=self.root / "tmp"))
        try:
            ref = parse_image_ref(resolved.source)
            if resolved.local:
                # Local storage holds images (skopeo 1.9 cannot read a list there):
                # one copy, no manifest read first, as the first start needs.
                one = fetch_image(
                    ref,
                    opts,  # type: ignore[arg-type]
                    work,
                    max_size=max_size,
                    timeout=timeout,
                )
                desc, parts = one.description, [one]
            else:
                # The store is shared by containers with different GPUs: of a fleet
                # index every image is kept, and each view takes what its GPUs run.
                desc, parts = fetch_images(
                    ref,
                    opts,  # type: ignore[arg-type]
                    work,
                    max_size=max_size,
                    timeout=timeout,
                )
            cache_root = Path(parts[0].cache_root)
            if len(parts) > 1:
                cache_root = _merge_parts([Path(p.cache_root) for p in parts], work / "cache")
            try:
                rel = cache_root.relative_to(work)
            except ValueError:  # unpacked elsewhere: bring it into the store entry
                shutil.move(str(cache_root), work / "cache")
                rel = Path("cache")
            entries = [e for p in parts for e in p.entries]
            record = {
                "digest": resolved.digest,
                "fetched_digest": (desc.digest if desc else "") or parts[0].digest,
                "image": resolved.source,
                "cache": str(rel),
                "labels": dict(desc.labels if desc and desc.kind == "index" else parts[0].labels),
                "manifest": build_manifest(entries, str(cache_root)),
            }
            fs.write_atomic(work / STORE_FILE, json.dumps(record))
            final = self.images / digest_dirname(resolved.digest)
            try:
                os.rename(work, final)  # atomic: readers see all of it or none
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(work, ignore_errors=True)  # filled by another host process
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log.info("stored %s (%s) in %s", resolved.source, resolved.digest, final)
        stored = self.get(resolved.digest)
        assert stored is not None
        return stored


def _merge_parts(roots: list[Path], into: Path) -> Path:
    """The kernel directories of several unpacked images moved under ``into``
    (one key is in one image of a fleet index; a repeat keeps the first)."""
    into.mkdir(mode=0o700)
    for root in roots:
        for entry in sorted(os.listdir(root)):
            if not (into / entry).exists():
                os.rename(root / entry, into / entry)
    return into


def resolve(
    image: str, env: Mapping[str, str], opts: object, *, pull: bool, timeout: float
) -> Resolved:
    """Which image ``image`` (the annotation value) names and where to fetch it from.

    Local storage first (the host that runs the container holds the image);
    the registry only when the image is not local and ``pull`` allows it."""
    transport, name = split_transport(image)
    if transport in _LOCAL_ONLY:
        digest = inspect_digest(image, opts, timeout)
        if digest is None:
            raise HookError(f"cannot read the cache image {image}", "check the path and the name")
        return Resolved(image, digest, local=True)
    digest = local_digest(name, env)
    if digest is None:
        digest = inspect_digest(f"containers-storage:{name}", opts, timeout)
    if digest is not None:
        return Resolved(f"containers-storage:{name}", digest, local=True)
    if transport == "containers-storage:" or not pull:
        raise HookError(
            f"the cache image {image} is not in local storage",
            f"pull it first (podman pull {name})"
            + ("" if transport else " or install the hook with --pull missing"),
        )
    remote = f"docker://{name}"
    digest = inspect_digest(remote, opts, timeout)
    if digest is None:
        raise HookError(
            f"the cache image {image} is neither in local storage nor in its registry",
            "check the name, the registry and its credentials",
        )
    return Resolved(remote, digest, local=False)
