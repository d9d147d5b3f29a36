"""Image references in the containers transports (docs/spec.md §2)."""

from __future__ import annotations

import pytest

from tcv.errors import EXIT_USAGE, UsageError
from tcv.image.ref import ImageRef, parse_image_ref


@pytest.mark.parametrize(
    ("text", "transport", "name", "skopeo"),
    [
        pytest.param(
            "quay.io/example/triton-kernel",
            "docker",
            "quay.io/example/triton-kernel",
            "docker://quay.io/example/triton-kernel",
            id="bare-registry",
        ),
        pytest.param(
            "docker://quay.io/example/triton-kernel:v1",
            "docker",
            "quay.io/example/triton-kernel:v1",
            "docker://quay.io/example/triton-kernel:v1",
            id="docker-scheme",
        ),
        pytest.param(
            "127.0.0.1:5000/a/b:latest",
            "docker",
            "127.0.0.1:5000/a/b:latest",
            "docker://127.0.0.1:5000/a/b:latest",
            id="host-port",
        ),
        pytest.param(
            "localhost/x@sha256:" + "a" * 64,
            "docker",
            "localhost/x@sha256:" + "a" * 64,
            "docker://localhost/x@sha256:" + "a" * 64,
            id="digest",
        ),
        pytest.param(
            "containers-storage:localhost/k:1",
            "containers-storage",
            "localhost/k:1",
            "containers-storage:localhost/k:1",
            id="containers-storage",
        ),
        pytest.param("oci:/tmp/layout:t", "oci", "/tmp/layout:t", "oci:/tmp/layout:t", id="oci"),
        pytest.param(
            "oci-archive:/tmp/a.tar",
            "oci-archive",
            "/tmp/a.tar",
            "oci-archive:/tmp/a.tar",
            id="oci-archive",
        ),
        pytest.param(
            "docker-archive:/tmp/d.tar",
            "docker-archive",
            "/tmp/d.tar",
            "docker-archive:/tmp/d.tar",
            id="docker-archive",
        ),
    ],
)
def test_parse(text, transport, name, skopeo):
    ref = parse_image_ref(text)
    assert ref == ImageRef(transport, name)
    assert ref.skopeo() == skopeo


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("", "no image given", id="empty"),
        pytest.param("Quay.io/Upper/Case", "invalid image reference", id="upper-case-repo"),
        pytest.param("quay.io/x:bad tag", "invalid image reference", id="space-in-tag"),
        pytest.param("ftp://host/x", "transport 'ftp' is not supported", id="unknown-scheme"),
        pytest.param("docker-daemon:x:1", "transport 'docker-daemon'", id="unsupported-transport"),
        pytest.param("oci:", "names no dir", id="oci-without-dir"),
        pytest.param("docker://", "invalid image reference", id="docker-without-name"),
    ],
)
def test_invalid_is_usage_error(text, needle):
    with pytest.raises(UsageError) as info:
        parse_image_ref(text)
    assert needle in info.value.line()
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("text", "pinned"),
    [
        pytest.param("quay.io/a/b:v1", "quay.io/a/b@sha256:" + "1" * 64, id="tag-dropped"),
        pytest.param("127.0.0.1:5000/a", "127.0.0.1:5000/a@sha256:" + "1" * 64, id="port-kept"),
    ],
)
def test_pinned_registry_ref(text, pinned):
    assert parse_image_ref(text).pinned("sha256:" + "1" * 64).name == pinned


def test_pinned_leaves_local_transports_alone():
    ref = parse_image_ref("oci:/x:t")
    assert ref.pinned("sha256:" + "1" * 64) is ref


def test_str_is_what_the_user_wrote_back():
    assert str(parse_image_ref("docker://q.io/a:1")) == "q.io/a:1"
    assert str(parse_image_ref("oci:/d")) == "oci:/d"


def test_tag_and_digest_go_to_skopeo_as_the_digest():
    """podman takes name:tag@digest (the digest decides); skopeo refuses both."""
    digest = "sha256:" + "a" * 64
    ref = parse_image_ref(f"quay.io/org/k:v1@{digest}")
    assert ref.skopeo() == f"docker://quay.io/org/k@{digest}"
    assert str(ref) == f"quay.io/org/k:v1@{digest}"
    assert ref.pinned(digest).skopeo() == f"docker://quay.io/org/k@{digest}"
