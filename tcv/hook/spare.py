"""Spares: private copies of a container's kernels made ahead of time (SPEC §7).

A warm start that copies its kernels creates ~8 files per kernel. Hard links
from the store would be cheaper, but a container running as root could then
write into files the store shares with every other container. A *spare* is a
private copy made before it is needed, for one tuple (image digest, the set of
kernel keys that fit, the container-side cache path, the host owner): group
files already name the container-side path, files already belong to the
container's user. When the destination is on the store's filesystem, a start
claims a spare (one ``rename``: exactly one claimer wins), renames each kernel
directory into the destination (atomic per kernel, never replacing one that
is there), and starts a detached process that makes the next spare.

Layout under ``<store>/spares/``::

    <tuple>/spare.json            the tuple; its mtime is the tuple's last use
    <tuple>/refill.lock           held by the one refill running for the tuple
    <tuple>/building-<id>/        a refill in progress (a crashed one is swept)
    <tuple>/ready-<id>/<KEY>/     a complete spare, ready to be claimed
    <tuple>/claimed-<pid>-<id>/   claimed by the hook ``pid``, being moved out
    <tuple>/trash-<id>/           what a claimed spare left over, swept
    trash-<id>/                   a whole tuple being removed
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tcv.hook.state import HookError

log = logging.getLogger(__name__)

SPARES_ENV = "TCV_HOOK_SPARES"
DEFAULT_SPARES = 2  # two starts at once both find one
MAX_SPARES = 8
SPEC_FILE = "spare.json"
LOCK_FILE = "refill.lock"
UNUSED_SECONDS = 7 * 24 * 3600  # a tuple not used for a week is removed
CLAIM_STALE_SECONDS = 24 * 3600  # a claimed spare whose hook pid lives on (reused pid)
REFILL_BOUND = 600.0  # a refill never runs longer than this
MIN_FREE_FRACTION = 0.05  # never fill the store's filesystem beyond 95 % for a spare
FILE_OVERHEAD = 4096  # a file takes at least a block

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1  # renameat2(2), Linux 3.15+
_TUPLE_LEN = 32
_HEX = frozenset("0123456789abcdef")


def is_tuple_name(name: str) -> bool:
    """A tuple's directory name: :data:`_TUPLE_LEN` lowercase hex digits."""
    return len(name) == _TUPLE_LEN and set(name) <= _HEX


def spares_wanted(env: Mapping[str, str]) -> int:
    """How many spares to keep per tuple (``$TCV_HOOK_SPARES``, 0 turns them off)."""
    raw = env.get(SPARES_ENV, "").strip()
    if not raw:
        return DEFAULT_SPARES
    try:
        wanted = int(raw)
    except ValueError:
        raise HookError(
            f"{SPARES_ENV}={raw!r} is not a number",
            f"give how many spares to keep, 0 to {MAX_SPARES} (tcv hook install --spares N)",
        ) from None
    return max(0, min(wanted, MAX_SPARES))


@dataclass(frozen=True)
class SpareSpec:
    """What a spare holds: the kernels ``keys`` of the image ``digest``, rendered for
    ``container_path`` and owned by the host ids ``owner``."""

    digest: str
    keys: tuple[str, ...]
    container_path: str
    owner: tuple[int, int]

    @classmethod
    def of(
        cls, digest: str, keys: Iterable[str], container_path: str, owner: Sequence[int]
    ) -> SpareSpec:
        return cls(digest, tuple(sorted(set(keys))), container_path, (int(owner[0]), int(owner[1])))

    def document(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "keys": list(self.keys),
            "container_path": self.container_path,
            "owner": list(self.owner),
        }

    @property
    def key(self) -> str:
        """The tuple's directory name: a hash of the canonical document."""
        text = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:_TUPLE_LEN]

    @classmethod
    def from_document(cls, doc: object) -> SpareSpec:
        from tcv.hook.store import digest_dirname

        try:
            assert isinstance(doc, dict)
            owner = doc["owner"]
            spec = cls.of(
                str(doc["digest"]), [str(k) for k in doc["keys"]], str(doc["container_path"]), owner
            )
            digest_dirname(spec.digest)  # raises HookError for a malformed digest
        except (AssertionError, KeyError, TypeError, ValueError, IndexError, HookError):
            raise HookError(f"not a spare description: {str(doc)[:80]}") from None
        return spec


def spare_key(digest: str, keys: Iterable[str], container_path: str, owner: Sequence[int]) -> str:
    """The directory name of the tuple (image digest, fitting keys, container path, owner)."""
    return SpareSpec.of(digest, keys, container_path, owner).key


def has_room(free: int, total: int, need: int) -> bool:
    """Whether ``need`` bytes fit and leave :data:`MIN_FREE_FRACTION` of the filesystem free."""
    return free - need >= total * MIN_FREE_FRACTION


def spare_bytes(entries: Iterable[object], keys: Iterable[str]) -> int:
    """Disk use of one spare of ``keys``, from the stored manifest's file sizes."""
    wanted = set(keys)
    total = 0
    for entry in entries:
        if getattr(entry, "key", None) in wanted:
            for info in getattr(entry, "files", {}).values():
                total += max(int(info.size), 0) + FILE_OVERHEAD
            total += FILE_OVERHEAD
    return total


def same_filesystem(fd: int, path: Path) -> bool:
    """Whether the directory open as ``fd`` is on the filesystem of ``path`` (so a
    rename can move from one to the other)."""
    try:
        return os.fstat(fd).st_dev == os.stat(path).st_dev
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_libc: ctypes.CDLL | None = None


def rename_noreplace(src_dfd: int, src: str, dst_dfd: int, dst: str) -> None:
    """``renameat2(RENAME_NOREPLACE)``: a plain rename would replace an empty
    directory at ``dst``. A filesystem without the flag raises EXDEV, so the
    caller copies instead."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    rc = _libc.renameat2(src_dfd, os.fsencode(src), dst_dfd, os.fsencode(dst), _RENAME_NOREPLACE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL):
            err = errno.EXDEV
        raise OSError(err, os.strerror(err), dst)


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive lock on ``path``; yields False when ``blocking`` is off and
    another process holds it. Retries when the file was replaced while waiting (a
    sweep removes a tuple's lock file with the tuple)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the tuple's directory went away
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield True
                return
        finally:
            os.close(fd)


@dataclass
class Moved:
    """What :func:`move_in` did per key: ``moved`` in, ``present`` (a directory was
    already there and kept), ``missing`` (not moved: the caller copies them)."""

    moved: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: OSError | None = None  # why the moving stopped early, if it did


def move_in(claimed: Path, keys: Iterable[str], dest: Path, owner: tuple[int, int] | None) -> Moved:
    """Rename ``claimed/<key>`` to ``dest/<key>`` for each key, under the lock
    that installs into ``dest`` take (``tcv.install.dest_lock``). A key already
    in ``dest`` is never replaced; once a rename fails otherwise (EXDEV: another
    mount of the same filesystem), the rest are reported missing."""
    from tcv.install import dest_lock, is_valid_key

    result = Moved()
    todo = list(dict.fromkeys(keys))
    for key in todo:
        if not is_valid_key(key):
            raise HookError(f"refusing to move a kernel with the unsafe key {key!r}")
    sfd = os.open(claimed, _DIR_FLAGS)
    try:
        dfd = os.open(dest, _DIR_FLAGS & ~os.O_NOFOLLOW)  # dest may be /proc/self/fd/N
        try:
            with dest_lock(dfd, owner):
                for i, key in enumerate(todo):
                    try:
                        rename_noreplace(sfd, key, dfd, key)
                    except OSError as err:
                        if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                            result.present.append(key)
                        elif err.errno == errno.ENOENT:
                            result.missing.append(key)
                        else:
                            # EXDEV (another mount of the same filesystem) or a
                            # failure: the caller copies the rest, or says why not.
                            result.missing.extend(todo[i:])
                            result.error = err
                            break
                    else:
                        result.moved.append(key)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    return result


class Spares:
    """The spares under ``root`` (``<store>/spares``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def tuple_dir(self, key: str) -> Path:
        if not is_tuple_name(key):
            raise HookError(f"not a spare tuple name: {key!r}")
        return self.root / key

    def prepare(self, spec: SpareSpec) -> Path:
        """The tuple's directory with its ``spare.json``, made once; marks it used."""
        d = self.tuple_dir(spec.key)
        spec_file = d / SPEC_FILE
        try:
            os.utime(spec_file)
            return d
        except FileNotFoundError:
            pass
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = d / f".{SPEC_FILE}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(spec.document()))
        os.replace(tmp, spec_file)
        return d

    def spec(self, key: str) -> SpareSpec | None:
        try:
            return SpareSpec.from_document(
                json.loads((self.tuple_dir(key) / SPEC_FILE).read_bytes())
            )
        except (OSError, ValueError, HookError):
            return None

    def _names(self, key: str, prefix: str) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.tuple_dir(key)) if n.startswith(prefix))
        except FileNotFoundError:
            return []

    def ready(self, key: str) -> list[str]:
        return self._names(key, "ready-")

    def claim(self, key: str) -> Path | None:
        """Take one ready spare for this process: renamed to a private name, so of
        several claimers of one spare exactly one wins. None when none is ready."""
        d = self.tuple_dir(key)
        for name in self.ready(key):
            claimed = d / f"claimed-{os.getpid()}-{uuid.uuid4().hex}"
            try:
                os.rename(d / name, claimed)
            except FileNotFoundError:
                continue  # another start took it first
            with contextlib.suppress(OSError):
                os.utime(d / SPEC_FILE)
            return claimed
        return None

    def discard(self, claimed: Path) -> None:
        """Done with a claimed spare: gone when empty, else set aside as trash that
        the next refill removes (the container start does not wait for it). Never
        fails: what stays behind as ``claimed-<pid>-*`` is swept once that pid is gone."""
        try:
            os.rmdir(claimed)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                return
        with contextlib.suppress(OSError):
            os.rename(claimed, claimed.parent / f"trash-{uuid.uuid4().hex}")

    @contextlib.contextmanager
    def refill_lock(self, key: str, *, blocking: bool = True) -> Iterator[bool]:
        with _flock(self.tuple_dir(key) / LOCK_FILE, blocking=blocking) as got:
            yield got

    def build(self, spec: SpareSpec, source_root: Path) -> Path:
        """Make one spare: a private copy of the kernels, rendered and owned as the
        container needs, renamed to ``ready-*`` when complete."""
        from tcv.install import LOCK_NAME, install_kernels

        d = self.tuple_dir(spec.key)
        work = d / f"building-{uuid.uuid4().hex}"
        os.mkdir(work, 0o700)
        try:
            install_kernels(
                source_root, spec.keys, work, target_root=spec.container_path, owner=spec.owner
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(work / LOCK_NAME)
            ready = d / f"ready-{uuid.uuid4().hex}"
            os.rename(work, ready)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return ready

    def sweep(
        self,
        *,
        held: str | None = None,
        live_images: set[str] | None = None,
        now: float | None = None,
    ) -> list[str]:
        """Remove what no one will use: trash, refills that died (``building-*`` of a
        tuple whose refill lock is free), spares claimed by hooks that died, and whole
        tuples unused for :data:`UNUSED_SECONDS` or whose image left the store
        (``live_images``: the directory names under ``<store>/images``).
        ``held``: the tuple whose refill lock the caller holds. Returns what went."""
        now = time.time() if now is None else now
        removed: list[str] = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return removed
        for name in names:
            if name.startswith("trash-"):
                if _remove(self.root / name):
                    removed.append(name)
            elif is_tuple_name(name):
                if held == name:
                    removed += self._sweep_tuple(name, now, live_images, drop=False)
                else:
                    with self.refill_lock(name, blocking=False) as got:
                        if got:
                            removed += self._sweep_tuple(name, now, live_images, drop=True)
        return removed

    def _sweep_tuple(
        self, key: str, now: float, live_images: set[str] | None, *, drop: bool
    ) -> list[str]:
        from tcv.hook.store import digest_dirname

        d = self.tuple_dir(key)
        removed: list[str] = []
        spec = self.spec(key)
        try:
            last = os.stat(d / SPEC_FILE).st_mtime
        except FileNotFoundError:
            last = 0.0
        unused = (
            spec is None
            or now - last > UNUSED_SECONDS
            or (live_images is not None and digest_dirname(spec.digest) not in live_images)
        )
        if drop and unused:
            # Take every ready spare the way a start claims one: a start racing with
            # this sweep either claimed it first (and keeps it) or finds none.
            for name in self.ready(key):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(d / name, d / f"trash-{uuid.uuid4().hex}")
        for name in sorted(os.listdir(d)):
            path = d / name
            if name.startswith(("trash-", "building-")):
                gone = _remove(path)
            elif name.startswith("claimed-"):
                pid = name.split("-")[1]
                try:
                    age = now - path.lstat().st_ctime
                except FileNotFoundError:
                    continue
                dead = not pid.isdigit() or not pid_alive(int(pid))
                gone = (dead or age > CLAIM_STALE_SECONDS) and _remove(path)
            else:
                continue
            if gone:
                removed.append(f"{key}/{name}")
        if drop and unused and not [n for n in os.listdir(d) if n.startswith("claimed-")]:
            trash = self.root / f"trash-{uuid.uuid4().hex}"
            with contextlib.suppress(OSError):
                os.rename(d, trash)
                _remove(trash)
                removed.append(key)
        return removed


def refill(store_root: Path, key: str, *, wanted: int) -> list[Path]:
    """Bring the tuple ``key`` up to ``wanted`` ready spares (after a sweep); one
    refill per tuple at a time. Returns the spares made."""
    from tcv.hook.store import Store

    spares = Spares(Path(store_root) / "spares")
    made: list[Path] = []
    with spares.refill_lock(key) as got:
        if not got:
            return made  # the tuple was swept away meanwhile
        store = Store(Path(store_root))
        try:
            live = set(os.listdir(store.images))
        except FileNotFoundError:
            live = set()
        spares.sweep(held=key, live_images=live)
        spec = spares.spec(key)
        if spec is None or spec.key != key:
            return made
        stored = store.get(spec.digest)
        if stored is None:
            return made
        need = spare_bytes(stored.entries, spec.keys)
        while len(spares.ready(key)) < wanted:
            fs = os.statvfs(spares.tuple_dir(key))
            if not has_room(fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize, need):
                log.warning(
                    "no spare made for %s: %d bytes would leave less than %d%% of %s free",
                    spec.container_path,
                    need,
                    int(MIN_FREE_FRACTION * 100),
                    spares.root,
                )
                break
            made.append(spares.build(spec, stored.cache_root))
    return made


# --- the refill process -------------------------------------------------------------------
#
# conmon is a child subreaper: a process the hook leaves behind becomes conmon's
# child, and conmon, once the container has exited, waits for all its children
# before it exits itself (conmon src/ctr_exit.c do_exit_command: waitpid(-1)
# until ECHILD). podman waits for conmon's exit up to its poll interval
# (libpod WaitForExit), so a short-lived container whose hook left a refill
# running returns ~0.1 s later. Hence one refill process per store, the
# *keeper*: it serves the requests of later starts through a FIFO and stays
# for a while when idle, so only the start that launched it pays that wait.

KEEPER_FIFO = "keeper.fifo"
KEEPER_LOCK = "keeper.lock"
KEEPER_IDLE_ENV = "TCV_HOOK_KEEPER_IDLE"
DEFAULT_KEEPER_IDLE = 60.0  # seconds a keeper waits for the next request
KEEPER_DELAY_ENV = "TCV_HOOK_KEEPER_DELAY"
DEFAULT_KEEPER_DELAY = 2.0  # seconds between a request and its refill

REFILL_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from tcv.hook.spare import refill_main; sys.exit(refill_main(sys.argv[2:]))"
)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return max(0.0, float(env.get(name, "") or default))
    except ValueError:
        return default


def keeper_idle(env: Mapping[str, str]) -> float:
    """How long an idle keeper stays (``$TCV_HOOK_KEEPER_IDLE`` seconds; 0: it exits
    as soon as its requests are served)."""
    return _seconds(env, KEEPER_IDLE_ENV, DEFAULT_KEEPER_IDLE)


def keeper_delay(env: Mapping[str, str]) -> float:
    """How long after a request its refill starts (``$TCV_HOOK_KEEPER_DELAY`` seconds)."""
    return _seconds(env, KEEPER_DELAY_ENV, DEFAULT_KEEPER_DELAY)


def refill_argv(
    store_root: Path, key: str, wanted: int, idle: float, delay: float = 0.0
) -> list[str]:
    """The refill process's command: this Python, with the ``tcv`` this hook runs."""
    import sys

    import tcv

    package_root = str(Path(tcv.__file__).resolve().parent.parent)
    return [
        sys.executable, "-c", REFILL_CODE, package_root, str(store_root), key, str(wanted),
        f"{idle:g}", f"{delay:g}",
    ]  # fmt: skip


def spawn_refill(store_root: Path, key: str, wanted: int, idle: float, delay: float = 0.0) -> int:
    """Start the refill process detached and return its pid without waiting.

    Not through ``tcv.runner.run``, which waits: this process must outlive the
    hook. It gets a session of its own and /dev/null for stdin/stdout/stderr, and
    no other descriptor, because runc waits until every holder of the hook's
    stdout/stderr pipes has closed them (SPEC §7)."""
    import subprocess

    proc = subprocess.Popen(
        refill_argv(store_root, key, wanted, idle, delay),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
        cwd="/",
    )
    return proc.pid


def _request_line(key: str, wanted: int) -> bytes:
    return f"{key} {wanted}\n".encode()


def send_request(spares_root: Path, key: str, wanted: int) -> bool:
    """Hand a refill request to the running keeper; False when none listens."""
    try:
        fd = os.open(
            Path(spares_root) / KEEPER_FIFO,
            os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
        )
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENXIO):  # no FIFO, or no one reads it
            return False
        raise
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        os.write(fd, _request_line(key, wanted))  # one line < PIPE_BUF: written whole
    except BlockingIOError:
        return True  # the FIFO is full: the keeper has work queued and refills anyway
    except BrokenPipeError:
        return False  # the keeper left meanwhile
    finally:
        os.close(fd)
    return True


def request_refill(
    store_root: Path, key: str, wanted: int, idle: float, delay: float = 0.0
) -> int | None:
    """Ask the store's keeper to refill ``key``; start one when none runs.
    Returns the pid of the process started, None when a running keeper took it."""
    if send_request(Path(store_root) / "spares", key, wanted):
        return None
    return spawn_refill(store_root, key, wanted, idle, delay)


def parse_requests(data: bytes) -> tuple[dict[str, int], bytes]:
    """The complete ``KEY WANTED`` lines in ``data`` (the last one per key wins) and
    the incomplete rest. Malformed lines are dropped."""
    lines = data.split(b"\n")
    rest = lines.pop()
    requests: dict[str, int] = {}
    for line in lines:
        parts = line.decode(errors="replace").split()
        if len(parts) == 2 and is_tuple_name(parts[0]):
            with contextlib.suppress(ValueError):
                requests[parts[0]] = max(0, min(int(parts[1]), MAX_SPARES))
    return requests, rest


def _drain(fd: int, rest: bytes, pending: dict[str, int]) -> bytes:
    data = rest
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    requests, rest = parse_requests(data)
    pending.update(requests)
    return rest[-256:]  # a request line is ~40 bytes: longer is no request


def keep(  # type: ignore[no-untyped-def]
    store_root: Path, key: str, wanted: int, idle: float, on_error, delay: float = 0.0
) -> int:
    """Be the store's keeper, or hand the request to the one that is. Returns the
    refills this process did."""
    spares = Spares(Path(store_root) / "spares")
    spares.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    deadline = time.monotonic() + REFILL_BOUND
    while True:
        with _flock(spares.root / KEEPER_LOCK, blocking=False) as got:
            if got:
                return _serve(spares, key, wanted, idle, delay, on_error)
        if send_request(spares.root, key, wanted):
            return 0
        if time.monotonic() > deadline:
            raise HookError("no spare keeper took the request in time")
        # The keeper is between its lock and its FIFO, or leaving: ask again soon.
        time.sleep(0.05)


def _serve(  # type: ignore[no-untyped-def]
    spares: Spares, key: str, wanted: int, idle: float, delay: float, on_error
) -> int:
    """Serve ``key`` and every request that comes through the FIFO until idle for
    ``idle`` seconds; a refill starts ``delay`` seconds after the request."""
    import select

    from tcv.hook.main import time_bound

    store_root = spares.root.parent
    fifo = spares.root / KEEPER_FIFO
    with contextlib.suppress(FileExistsError):
        os.mkfifo(fifo, 0o600)
    # O_RDWR: the FIFO always has a writer, so a read never sees end-of-file.
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    done = 0
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise HookError(f"{fifo} is not a FIFO", "remove it; the next start makes one")
        pending = {key: wanted}
        rest = b""
        leaving = busy = False
        while True:
            rest = _drain(fd, rest, pending)
            if pending:
                if delay > 0 and not busy:
                    # Let the start that asked finish its own filesystem work first
                    # (the container's setup, podman's fsyncs): a refill writes
                    # thousands of files, and a journal commit carries them all.
                    time.sleep(delay)
                    rest = _drain(fd, rest, pending)
                busy = True
                tuple_key = next(iter(pending))
                try:
                    with time_bound(REFILL_BOUND):
                        refill(store_root, tuple_key, wanted=pending.pop(tuple_key))
                    done += 1
                except Exception as err:  # one tuple's failure: serve the others
                    on_error(tuple_key, err)
                continue
            busy = False
            if leaving:
                return done
            if idle > 0 and select.select([fd], [], [], idle)[0]:
                continue
            # Idle: take the FIFO away, so that new requests start a new keeper (which
            # waits for this one's lock), then serve what was written before that. A
            # start that opened the FIFO before and writes after the last read loses
            # its request: the next start of that kind copies and asks again.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(fifo)
            leaving = True
    finally:
        os.close(fd)


def refill_main(argv: Sequence[str]) -> int:
    """The refill process: ``STORE KEY WANTED IDLE DELAY``; logs where the hook logs."""
    from tcv.errors import TcvError
    from tcv.hook.main import setup_logging

    with contextlib.suppress(OSError):
        os.nice(10)  # behind the containers that are starting
    try:
        logger = setup_logging(os.environ)
    except OSError:
        logger = log
    store_root, key, wanted = Path(argv[0]), argv[1], int(argv[2])
    idle, delay = float(argv[3]), float(argv[4])

    def on_error(tuple_key: str, err: Exception) -> None:
        text = err.line() if isinstance(err, TcvError) else f"{type(err).__name__}: {err}"
        logger.warning("spare %s: refill failed: %s", tuple_key, text)

    started = time.monotonic()
    try:
        done = keep(store_root, key, wanted, idle, on_error, delay)
    except Exception as err:
        on_error(key, err)
        return 1
    logger.debug("spare keeper: %d refill(s) in %.3fs", done, time.monotonic() - started)
    return 0
