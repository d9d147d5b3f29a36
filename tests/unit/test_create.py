"""create: target checks, the scan's refusals, and the buildah flow (faked
with pytest-subprocess) including cleanup on failure and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tcv.create import create_image, image_title, resolve_target, scan_for_create
from tcv.errors import CreateError, ImageNotFoundError, UsageError
from tcv.tools.registry import RegistryOptions

ID = "ab" * 32
DIGEST = "sha256:" + "cd" * 32
PUSHED = "sha256:" + "ef" * 32


@pytest.mark.parametrize(
    ("image", "push", "local", "title", "push_to"),
    [
        pytest.param(
            "quay.io/example/triton-kernel",
            False,
            "quay.io/example/triton-kernel",
            "triton-kernel",
            None,
            id="seed-form",
        ),
        pytest.param(
            "127.0.0.1:5000/a/b:v1",
            True,
            "127.0.0.1:5000/a/b:v1",
            "b",
            "docker://127.0.0.1:5000/a/b:v1",
            id="push-with-port",
        ),
        pytest.param(
            "docker://quay.io/x/y:2",
            True,
            "quay.io/x/y:2",
            "y",
            "docker://quay.io/x/y:2",
            id="docker-transport",
        ),
        pytest.param(
            "containers-storage:localhost/k:1",
            False,
            "localhost/k:1",
            "k",
            None,
            id="local-storage",
        ),
    ],
)
def test_resolve_target(image, push, local, title, push_to):
    target = resolve_target(image, push=push)
    assert (target.local, target.title, target.push_to) == (local, title, push_to)


@pytest.mark.parametrize(
    ("image", "push", "needle"),
    [
        pytest.param("Quay.io/Bad Name", False, "invalid image reference", id="invalid"),
        pytest.param("quay.io/x/y@sha256:" + "a" * 64, False, "give a tag", id="digest"),
        pytest.param("oci:/tmp/layout:1", False, "local storage and registries", id="oci-dir"),
        pytest.param("containers-storage:x", True, "containers-storage is local", id="push-local"),
        pytest.param("", False, "no image given", id="empty"),
    ],
)
def test_resolve_target_refuses(image, push, needle):
    with pytest.raises(UsageError) as info:
        resolve_target(image, push=push)
    assert needle in info.value.line()


@pytest.mark.parametrize(
    ("ref", "title"),
    [
        pytest.param("quay.io/a/b:1", "b", id="tag"),
        pytest.param("localhost:5000/a", "a", id="port"),
        pytest.param("x@sha256:" + "0" * 64, "x", id="digest"),
    ],
)
def test_image_title(ref, title):
    assert image_title(ref) == title


def test_scan_refuses_an_empty_cache(tmp_path):
    with pytest.raises(CreateError, match="no Triton kernels") as info:
        scan_for_create(tmp_path)
    assert info.value.exit_code == 2


def test_scan_names_what_was_skipped_when_nothing_is_a_kernel(tmp_path):
    (tmp_path / "lock").write_text("")
    with pytest.raises(CreateError, match="skipped lock"):
        scan_for_create(tmp_path)


def test_scan_missing_dir_is_bad_usage(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        scan_for_create(tmp_path / "nope")


@pytest.fixture
def staging(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "staging"
    monkeypatch.setenv("TCV_STAGING_ROOT", str(root))
    return root


def _flag(process, name: str) -> Path:
    arg = next(a for a in process.args if str(a).startswith(f"--{name}="))
    return Path(str(arg).split("=", 1)[1])


class FakeBuildah:
    """Registers the buildah calls of a create; records what each got."""

    def __init__(self, fp):
        self.fp = fp
        self.layer_names: list[str] = []
        self.labels: dict[str, str] = {}

    def from_(self, **kw):
        self.fp.register([self.fp.program("buildah"), "from", self.fp.any()], **kw)

    def add(self, **kw):
        def look(process):
            import tarfile

            with tarfile.open(process.args[-2]) as tar:
                self.layer_names = tar.getnames()

        kw.setdefault("callback", look)
        self.fp.register([self.fp.program("buildah"), "add", self.fp.any()], **kw)

    def config(self, **kw):
        def look(process):
            for a in process.args[2:-1]:
                k, v = str(a).removeprefix("--label=").split("=", 1)
                self.labels[k] = v

        kw.setdefault("callback", look)
        self.fp.register([self.fp.program("buildah"), "config", self.fp.any()], **kw)

    def commit(self, **kw):
        def write(process):
            _flag(process, "iidfile").write_text(f"sha256:{ID}")

        kw.setdefault("callback", write)
        self.fp.register([self.fp.program("buildah"), "commit", self.fp.any()], **kw)

    def inspect(self):
        self.fp.register(
            [self.fp.program("buildah"), "inspect", self.fp.any()], stdout=DIGEST + "\n"
        )

    def push(self, **kw):
        def write(process):
            _flag(process, "digestfile").write_text(PUSHED)

        kw.setdefault("callback", write)
        self.fp.register([self.fp.program("buildah"), "push", self.fp.any()], **kw)

    def rm(self):
        self.fp.register([self.fp.program("buildah"), "rm", self.fp.any()])

    def calls(self) -> list[str]:
        return [str(c[1]) for c in self.fp.calls]


@pytest.fixture
def fake(fp):
    return FakeBuildah(fp)


def test_create_runs_the_buildah_steps_in_order(fake, caches_dir, staging):
    fake.from_()
    fake.add()
    fake.config()
    fake.commit()
    fake.inspect()
    result = create_image(caches_dir / "triton-3.9", "quay.io/example/triton-kernel")
    assert fake.calls() == ["from", "add", "config", "commit", "inspect"]
    assert result.to_json() == {
        "image": "quay.io/example/triton-kernel",
        "digest": DIGEST,
        "id": ID,
        "entries": 7,
        "bytes": result.bytes,
        "pushed": False,
    }
    assert result.bytes > 0
    assert "io.triton.manifest/manifest.json" in fake.layer_names
    assert fake.labels["org.opencontainers.image.title"] == "triton-kernel"
    assert fake.labels["cache.triton.image/entry-count"] == "7"
    assert json.loads(fake.labels["cache.triton.image/summary"])["targets"]
    assert list(staging.iterdir()) == []


def test_create_pushes_and_reports_the_registry_digest(fake, caches_dir, staging):
    fake.from_()
    fake.add()
    fake.config()
    fake.commit()
    fake.inspect()
    fake.push()
    result = create_image(
        caches_dir / "triton-3.9",
        "r.example/x:1",
        push=True,
        registry=RegistryOptions(tls_verify=False),
    )
    assert (result.digest, result.pushed) == (PUSHED, True)
    push_call = next(c for c in fake.fp.calls if c[1] == "push")
    assert "--tls-verify=false" in push_call
    assert push_call[-2:] == ["r.example/x:1", "docker://r.example/x:1"]


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param("add", id="add"),
        pytest.param("config", id="config"),
        pytest.param("commit", id="commit"),
    ],
)
def test_failed_step_removes_the_container_and_staging(fake, caches_dir, staging, failing):
    fake.from_()
    for step in ("add", "config", "commit"):
        if step == failing:
            getattr(fake, step)(returncode=125, stderr="Error: disk full\n", callback=None)
            break
        getattr(fake, step)()
    fake.rm()
    with pytest.raises(CreateError, match="disk full") as info:
        create_image(caches_dir / "triton-3.9", "localhost/x")
    assert info.value.exit_code == 2
    assert fake.calls()[-1] == "rm"
    assert list(staging.iterdir()) == []


def test_ctrl_c_removes_the_container_and_staging(fake, caches_dir, staging):
    def interrupt(process):
        # What Ctrl-C does: SIGINT to the process, KeyboardInterrupt in the main thread.
        os.kill(os.getpid(), signal.SIGINT)

    fake.from_()
    fake.add(callback=interrupt)
    fake.rm()
    with pytest.raises(KeyboardInterrupt):
        create_image(caches_dir / "triton-3.9", "localhost/x")
    assert fake.calls() == ["from", "add", "rm"]
    rm_call = fake.fp.calls[-1]
    from_call = fake.fp.calls[0]
    assert rm_call[-1] == from_call[from_call.index("--name") + 1]
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize(
    ("stderr", "error", "needle"),
    [
        pytest.param(
            'Error: pinging container registry r.example: Get "https://r.example/v2/": '
            "dial tcp 10.0.0.1:443: connect: connection refused\n",
            ImageNotFoundError,
            "cannot reach registry r.example: connect: connection refused",
            id="refused",
        ),
        pytest.param(
            "Error: http: server gave HTTP response to HTTPS client\n",
            ImageNotFoundError,
            "--tls-verify=false",
            id="plain-http",
        ),
        pytest.param(
            "Error: unauthorized: authentication required\n",
            CreateError,
            "podman login r.example",
            id="unauthorized",
        ),
    ],
)
def test_push_failures_are_classified(fake, caches_dir, staging, stderr, error, needle):
    fake.from_()
    fake.add()
    fake.config()
    fake.commit()
    fake.inspect()
    fake.push(returncode=125, stderr=stderr, callback=None)
    with pytest.raises(error) as info:
        create_image(caches_dir / "triton-3.9", "r.example/x:1", push=True)
    assert type(info.value) is error
    assert needle in info.value.line()
    assert "buildah push r.example/x:1" in info.value.line()  # the built image is kept


def test_unreadable_copy_never_reaches_buildah(fp, tmp_path, caches_dir, staging):
    """A cache that changes under us fails before any buildah call."""
    cache = tmp_path / "cache"
    shutil.copytree(caches_dir / "triton-3.9", cache)
    (cache / "lock").write_text("")
    fake = FakeBuildah(fp)
    fake.from_()
    fake.add()
    fake.config()
    fake.commit()
    fake.inspect()
    result = create_image(cache, "localhost/x")
    assert result.skipped == [{"path": "lock", "reason": result.skipped[0]["reason"]}]
