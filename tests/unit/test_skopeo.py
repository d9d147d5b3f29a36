"""skopeo calls: argv, parsing, and the exit codes of failures (faked skopeo)."""

from __future__ import annotations

import json

import pytest

from tcv.errors import EXIT_EXTRACT, EXIT_NOT_FOUND, ExtractError, ImageNotFoundError
from tcv.image.ref import parse_image_ref
from tcv.tools import skopeo
from tcv.tools.registry import RegistryOptions

INSPECT = {
    "Name": "127.0.0.1:5000/k",
    "Digest": "sha256:" + "a" * 64,
    "Labels": {"cache.triton.image/entry-count": "3"},
    "Layers": ["sha256:" + "b" * 64],
}


def fatal(msg: str) -> str:
    return f'time="2026-01-01T00:00:00Z" level=fatal msg="{msg}"\n'


def test_inspect_reads_digest_labels_layers(fp):
    fp.register(
        [
            fp.program("skopeo"),
            "inspect",
            "--no-tags",
            "--tls-verify=false",
            "docker://127.0.0.1:5000/k",
        ],
        stdout=json.dumps(INSPECT),
    )
    info = skopeo.inspect(parse_image_ref("127.0.0.1:5000/k"), RegistryOptions(tls_verify=False))
    assert info.digest == INSPECT["Digest"]
    assert info.labels == {"cache.triton.image/entry-count": "3"}
    assert info.layers == ("sha256:" + "b" * 64,)


def test_credentials_go_to_the_registry_transport_only(fp):
    opts = RegistryOptions(authfile="/a.json", creds="u:p")
    fp.register(
        [
            fp.program("skopeo"),
            "inspect",
            "--no-tags",
            "--tls-verify=true",
            "--authfile=/a.json",
            "--creds=u:p",
            "docker://q.io/x",
        ],
        stdout=json.dumps(INSPECT),
    )
    fp.register(
        [fp.program("skopeo"), "inspect", "--no-tags", "oci:/layout:t"], stdout=json.dumps(INSPECT)
    )
    skopeo.inspect(parse_image_ref("q.io/x"), opts)
    skopeo.inspect(parse_image_ref("oci:/layout:t"), opts)


@pytest.mark.parametrize(
    ("stderr", "needle", "hint"),
    [
        pytest.param(
            fatal(
                'Error parsing image name \\"docker://127.0.0.1:1/x\\": pinging container '
                'registry 127.0.0.1:1: Get \\"https://127.0.0.1:1/v2/\\": dial tcp '
                "127.0.0.1:1: connect: connection refused"
            ),
            "cannot reach registry q.io for q.io/x: connect: connection refused",
            "check that q.io is the right address",
            id="unreachable",
        ),
        pytest.param(
            fatal(
                "pinging container registry nowhere.example: dial tcp: lookup "
                "nowhere.example: no such host"
            ),
            "cannot reach registry q.io for q.io/x: lookup nowhere.example: no such host",
            "registry is up",
            id="unknown-host-is-not-not-found",
        ),
        pytest.param(
            fatal("reading manifest latest in q.io/x: manifest unknown"),
            "q.io/x is not in registry q.io: reading manifest latest in q.io/x: manifest unknown",
            "check the repository and tag",
            id="not-found",
        ),
        pytest.param(
            fatal("pinging: http: server gave HTTP response to HTTPS client"),
            "the registry answers plain HTTP",
            "--tls-verify=false",
            id="plain-http",
        ),
        pytest.param(
            fatal(
                'pinging container registry q.io: Get \\"https://q.io/v2/\\": '
                "x509: certificate signed by unknown authority"
            ),
            "cannot verify the TLS certificate of registry q.io for q.io/x: "
            "x509: certificate signed by unknown authority",
            "/etc/containers/certs.d/q.io/ca.crt, pass --cert-dir DIR",
            id="tls-untrusted",
        ),
        pytest.param(
            fatal("reading manifest: unauthorized: authentication required"),
            "unauthorized",
            "podman login q.io",
            id="auth",
        ),
    ],
)
def test_inspect_failures_are_exit_5_with_a_hint(fp, stderr, needle, hint):
    fp.register([fp.program("skopeo"), "inspect", fp.any()], returncode=1, stderr=stderr)
    with pytest.raises(ImageNotFoundError) as info:
        skopeo.inspect(parse_image_ref("q.io/x"), RegistryOptions())
    assert info.value.exit_code == EXIT_NOT_FOUND
    assert needle in info.value.message
    assert "level=fatal" not in info.value.line()
    assert hint in (info.value.hint or "")


def test_tls_hint_puts_the_safe_fix_before_turning_verification_off(fp):
    fp.register(
        [fp.program("skopeo"), "inspect", fp.any()],
        returncode=1,
        stderr=fatal("x509: certificate signed by unknown authority"),
    )
    with pytest.raises(ImageNotFoundError) as info:
        skopeo.inspect(parse_image_ref("q.io/x"), RegistryOptions())
    hint = info.value.hint or ""
    assert hint.index("--cert-dir") < hint.index("--tls-verify=false")


def test_cert_dir_and_retries_reach_skopeo(fp):
    opts = RegistryOptions(cert_dir="/certs", retry_times=4)
    fp.register(
        [
            fp.program("skopeo"),
            "inspect",
            "--no-tags",
            "--tls-verify=true",
            "--cert-dir=/certs",
            "--retry-times=4",
            "docker://q.io/x",
        ],
        stdout=json.dumps(INSPECT),
    )
    skopeo.inspect(parse_image_ref("q.io/x"), opts)


def test_garbage_output_is_an_extract_error(fp):
    fp.register([fp.program("skopeo"), "inspect", fp.any()], stdout="not json")
    with pytest.raises(ExtractError, match="printed no JSON"):
        skopeo.inspect(parse_image_ref("q.io/x"), RegistryOptions())


def test_copy_writes_a_dir_layout(fp, tmp_path):
    dest = tmp_path / "image"
    fp.register(
        [
            fp.program("skopeo"),
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "docker://q.io/x@sha256:" + "a" * 64,
            f"dir:{dest}",
        ],
    )
    ref = parse_image_ref("q.io/x:1").pinned("sha256:" + "a" * 64)
    assert skopeo.copy_to_dir(ref, RegistryOptions(tls_verify=False), dest) == dest


@pytest.mark.parametrize(
    ("stderr", "error", "code"),
    [
        pytest.param(fatal("manifest unknown"), ImageNotFoundError, EXIT_NOT_FOUND, id="gone"),
        pytest.param(
            fatal("writing blob: no space left on device"), ExtractError, EXIT_EXTRACT, id="nospace"
        ),
    ],
)
def test_copy_failures(fp, tmp_path, stderr, error, code):
    fp.register([fp.program("skopeo"), "copy", fp.any()], returncode=1, stderr=stderr)
    with pytest.raises(error) as info:
        skopeo.copy_to_dir(parse_image_ref("q.io/x"), RegistryOptions(), tmp_path / "i")
    assert info.value.exit_code == code


def test_blob_path_refuses_odd_digests(tmp_path):
    assert skopeo.blob_path(tmp_path, "sha256:" + "c" * 64) == tmp_path / ("c" * 64)
    for bad in ("sha256:../../etc/passwd", "md5:abc", "sha256:" + "C" * 64):
        with pytest.raises(ExtractError, match="bad digest"):
            skopeo.blob_path(tmp_path, bad)


def test_message_without_logrus_decoration():
    assert skopeo.skopeo_message("plain failure\n") == "plain failure"
    assert skopeo.skopeo_message("") == "skopeo failed"
