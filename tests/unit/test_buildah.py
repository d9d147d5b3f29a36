"""buildah argv builders (by value) and calls (through the runner, faked with
pytest-subprocess)."""

from __future__ import annotations

import pytest

from tcv.errors import CreateError, ToolError
from tcv.tools import buildah
from tcv.tools.registry import RegistryOptions


def test_from_scratch_argv_names_the_container():
    assert buildah.from_scratch_argv("tcv-create-1") == [
        "buildah",
        "from",
        "--quiet",
        "--name",
        "tcv-create-1",
        "scratch",
    ]


def test_container_names_are_fresh_and_prefixed():
    a, b = buildah.container_name(), buildah.container_name()
    assert a != b
    assert a.startswith(buildah.CONTAINER_PREFIX)


def test_add_argv_unpacks_at_root():
    assert buildah.add_argv("c", "/tmp/.tcv/x/layer.tar") == [
        "buildah",
        "add",
        "--quiet",
        "c",
        "/tmp/.tcv/x/layer.tar",
        "/",
    ]


def test_config_argv_keeps_json_values_whole():
    labels = {"b": '{"targets":[{"arch":"90","warp_size":32}]}', "a": "x=y,z"}
    assert buildah.config_argv("c", labels) == [
        "buildah",
        "config",
        "--label=a=x=y,z",
        '--label=b={"targets":[{"arch":"90","warp_size":32}]}',
        "c",
    ]


@pytest.mark.parametrize(
    ("fmt", "timestamp"),
    [pytest.param("oci", 0, id="oci"), pytest.param("docker", 1_700_000_000, id="docker")],
)
def test_commit_argv_is_reproducible(fmt, timestamp):
    argv = buildah.commit_argv(
        "c", "quay.io/x/y:1", image_format=fmt, timestamp=timestamp, iidfile="/s/iid"
    )
    assert argv == [
        "buildah",
        "commit",
        "--quiet",
        f"--format={fmt}",
        f"--timestamp={timestamp}",
        "--omit-history",
        "--identity-label=false",
        "--iidfile=/s/iid",
        "--rm",
        "c",
        "quay.io/x/y:1",
    ]


def test_commit_argv_refuses_unknown_formats():
    with pytest.raises(ValueError, match="zip"):
        buildah.commit_argv("c", "x", image_format="zip")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(RegistryOptions(), ["--tls-verify=true"], id="defaults"),
        pytest.param(
            RegistryOptions(tls_verify=False, authfile="/a.json", creds="u:p"),
            ["--tls-verify=false", "--authfile=/a.json", "--creds=u:p"],
            id="all",
        ),
    ],
)
def test_push_argv(options, expected):
    assert buildah.push_argv("r/x:1", "docker://r/x:1", options, digestfile="/s/d") == [
        "buildah",
        "push",
        "--quiet",
        *expected,
        "--digestfile=/s/d",
        "r/x:1",
        "docker://r/x:1",
    ]


def test_commit_reads_the_image_id_from_the_iidfile(fp, tmp_path):
    iid = tmp_path / "iid"

    def write_iid(process):
        iid.write_text("sha256:" + "ab" * 32)

    fp.register([fp.program("buildah"), "commit", fp.any()], stdout="ignored\n", callback=write_iid)
    assert buildah.commit("c", "x", iidfile=iid) == "ab" * 32


def test_push_returns_the_registry_digest(fp, tmp_path):
    digestfile = tmp_path / "digest"

    def write_digest(process):
        digestfile.write_text("sha256:" + "cd" * 32 + "\n")

    fp.register([fp.program("buildah"), "push", fp.any()], callback=write_digest)
    assert buildah.push("r/x", "docker://r/x", RegistryOptions(), digestfile=digestfile) == (
        "sha256:" + "cd" * 32
    )


def test_failed_step_raises_tool_error_with_stderr(fp):
    fp.register(
        [fp.program("buildah"), "add", fp.any()],
        returncode=125,
        stderr="Error: no space left on device\n",
    )
    with pytest.raises(ToolError) as info:
        buildah.add("c", "/s/layer.tar")
    assert "no space left on device" in info.value.message
    assert info.value.message.startswith("cannot add the cache layer")


def test_remove_container_never_raises(fp):
    fp.register(
        [fp.program("buildah"), "rm", "gone"], returncode=125, stderr="Error: container not known\n"
    )
    result = buildah.remove_container("gone")
    assert result is not None and result.returncode == 125


def test_require_buildah_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CreateError, match="buildah is not installed") as info:
        buildah.require_buildah()
    assert info.value.exit_code == 2
    assert "apt-get install buildah" in info.value.line()


def test_image_digest_reads_local_storage(fp):
    fp.register(
        [fp.program("buildah"), "inspect", "--type=image", "--format={{.FromImageDigest}}", "x"],
        stdout="sha256:" + "ef" * 32 + "\n",
    )
    assert buildah.image_digest("x") == "sha256:" + "ef" * 32
