"""Real podman + runc for the hook's end-to-end tests (and its benchmark).

podman runs here only with runc and explicit ulimits (ENVIRONMENT.md), so the
harness writes a containers.conf and points ``CONTAINERS_CONF`` at it for
every podman/buildah call it makes. There is no base image to pull: a busybox
image is made from the host's static busybox with buildah. Cache images are
made by the real ``tcv -c``. Everything created is removed again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sh

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""

REPO = Path(__file__).resolve().parents[2]


def write_containers_conf(path: Path, extra_annotations: Sequence[str] = ()) -> Path:
    text = CONTAINERS_CONF
    if extra_annotations:
        listed = ", ".join(json.dumps(a) for a in extra_annotations)
        text = text.replace("[containers]\n", f"[containers]\nannotations = [{listed}]\n")
    path.write_text(text)
    return path


@dataclass
class Podman:
    """podman/buildah bound to one containers.conf; remembers what it made."""

    conf: Path
    hooks_dir: Path | None = None
    images: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def podman(self, *args: str, **kw: object) -> str:
        return str(sh.podman(*args, _env=self.env, **kw))

    def buildah(self, *args: str, **kw: object) -> str:
        return str(sh.buildah(*args, _env=self.env, **kw))

    # --- images -------------------------------------------------------------------------

    def make_busybox(self, name: str) -> str:
        """A busybox base image: static busybox + its applet links."""
        ctr = self.buildah("from", "scratch").strip()
        try:
            mnt = Path(self.buildah("mount", ctr).strip())
            (mnt / "bin").mkdir()
            shutil.copy2("/bin/busybox", mnt / "bin" / "busybox")
            self.buildah("umount", ctr)
            self.buildah("run", ctr, "/bin/busybox", "--install", "-s", "/bin")
            self.buildah("commit", "-q", ctr, name)
        finally:
            self.buildah("rm", ctr)
        self.images.append(name)
        return name

    def derive(self, base: str, name: str, script: str) -> str:
        """An image made from ``base`` by running ``script`` (busybox sh) in it."""
        ctr = self.buildah("from", base).strip()
        try:
            self.buildah("run", ctr, "/bin/sh", "-c", script)
            self.buildah("commit", "-q", ctr, name)
        finally:
            self.buildah("rm", ctr)
        self.images.append(name)
        return name

    def make_cache_image(self, cache: Path, name: str) -> str:
        """A cache image made by ``tcv -c`` (the real command) from the Triton cache ``cache``."""
        tcv("-c", "-i", name, "-d", str(cache), _env=self.env)
        self.images.append(name)
        return name

    def remove_image(self, name: str) -> None:
        self.podman("rmi", "-f", name, _ok_code=[0, 1, 2])
        if name in self.images:
            self.images.remove(name)

    # --- volumes and containers ---------------------------------------------------------

    def volume(self, name: str | None = None) -> str:
        name = name or f"tcv-test-{uuid.uuid4().hex[:10]}"
        self.podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def volume_path(self, name: str) -> Path:
        return Path(self.podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).strip())

    def run_argv(
        self,
        image: str,
        command: Sequence[str],
        *,
        annotations: dict[str, str] | None = None,
        volumes: Sequence[str] = (),
        env: dict[str, str] | None = None,
        user: str | None = None,
        extra: Sequence[str] = (),
    ) -> list[str]:
        argv: list[str] = []
        if self.hooks_dir is not None:
            argv += ["--hooks-dir", str(self.hooks_dir)]
        argv += ["run", "--rm"]
        for key, value in (annotations or {}).items():
            argv += ["--annotation", f"{key}={value}"]
        for v in volumes:
            argv += ["-v", v]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        if user is not None:
            argv += ["--user", user]
        argv += [*extra, image, *command]
        return argv

    def run(self, image: str, command: Sequence[str], **kw: object) -> RunResult:
        """``podman run --rm``; returns exit code and output, never raises on failure."""
        argv = self.run_argv(image, command, **kw)  # type: ignore[arg-type]
        proc = sh.podman(*argv, _env=self.env, _ok_code=list(range(256)), _return_cmd=True)
        return RunResult(argv, proc.exit_code, str(proc), proc.stderr.decode(errors="replace"))

    def start(self, image: str, command: Sequence[str], **kw: object) -> sh.RunningCommand:
        """Start ``podman run`` in the background; ``.wait()`` on the result."""
        argv = self.run_argv(image, command, **kw)  # type: ignore[arg-type]
        return sh.podman(*argv, _env=self.env, _bg=True, _ok_code=list(range(256)))

    def cleanup(self) -> None:
        for name in list(self.images):
            self.remove_image(name)
        for vol in self.volumes:
            self.podman("volume", "rm", "-f", vol, _ok_code=[0, 1, 2])
        self.volumes.clear()


@dataclass(frozen=True)
class RunResult:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str


def tcv(*args: str, _env: dict[str, str] | None = None) -> str:
    """The real ``tcv`` command, from this checkout, with this Python."""
    env = {**(_env or os.environ), "PYTHONPATH": str(REPO)}
    run = sh.Command(sys.executable)
    return str(run("-c", "from tcv.cli.app import main; main()", *args, _env=env, _cwd=str(REPO)))


def make_big_cache(fixture: Path, dest: Path, kernels: int, index: list[dict]) -> list[str]:
    """A Triton cache of the fixture's entries plus ``kernels`` copies of its cuda:90
    entries under fresh keys (base32 of a sha256, as Triton 3.3+ names them); returns
    the keys that fit cuda:90 (the oracle)."""
    import base64
    import hashlib

    fitting = [e for e in index if (e["backend"], e["arch"], e["warp_size"]) == ("cuda", "90", 32)]
    shutil.copytree(fixture, dest)
    keys = [str(e["key"]) for e in fitting]
    for i in range(kernels):
        src = fitting[i % len(fitting)]
        digest = hashlib.sha256(f"big-{i}".encode()).digest()
        key = base64.b32encode(digest).decode().rstrip("=")
        shutil.copytree(fixture / str(src["key"]), dest / key)
        keys.append(key)
    return sorted(keys)


def tree_digest(root: Path) -> str:
    """A hash of a directory tree: names, types, modes, owners and contents."""
    import hashlib

    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            st = path.lstat()
            h.update(f"{path.relative_to(root)}|{st.st_mode}|{st.st_uid}|{st.st_gid}\n".encode())
            if path.is_file() and not path.is_symlink():
                h.update(path.read_bytes())
    return h.hexdigest()


def hook_pids(store: Path) -> list[int]:
    """Processes of the hook still alive (their command line runs tcv-hook)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if any(a.endswith(b"tcv-hook") for a in argv):
            pids.append(int(name))
    return pids


def install_hook(hooks_dir: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    """``tcv hook install --hooks-dir DIR ARGS...`` as a real command; the JSON path.
    ``env``: settings without a switch, added to the JSON's environment."""
    tcv("hook", "install", "--hooks-dir", str(hooks_dir), *args)
    path = hooks_dir / "tcv.json"
    if env:
        config = json.loads(path.read_text())
        config["hook"]["env"] += [f"{k}={v}" for k, v in env.items()]
        path.write_text(json.dumps(config))
    return path


@contextmanager
def podman_session(workdir: Path | None = None) -> Iterator[Podman]:
    """A :class:`Podman` with its own containers.conf, cleaned up afterwards."""
    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="tcv-podman-")) if own else workdir
    assert base is not None
    pod = Podman(conf=write_containers_conf(base / "containers.conf"))
    try:
        yield pod
    finally:
        pod.cleanup()
        if own:
            shutil.rmtree(base, ignore_errors=True)
