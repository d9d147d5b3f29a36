"""Image names resolved as podman resolves them (pure: local names and
registries.conf given)."""

from __future__ import annotations

import pytest

from tcv.errors import UsageError
from tcv.image.names import RegistriesConf, read_registries_conf, resolve, split_name
from tcv.image.ref import CONTAINERS_STORAGE, DOCKER, ImageRef

LOCAL = ["localhost/tcv-demo/vector-add:latest", "quay.io/org/kernels:v1", "localhost/k:v2"]
NONE = RegistriesConf()
ONE = RegistriesConf(search=("docker.io",))
TWO = RegistriesConf(search=("quay.io", "docker.io"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("tcv-demo/vector-add", (CONTAINERS_STORAGE, LOCAL[0]), id="short-local"),
        pytest.param("tcv-demo/vector-add:latest", (CONTAINERS_STORAGE, LOCAL[0]), id="short-tag"),
        pytest.param("k:v2", (CONTAINERS_STORAGE, "localhost/k:v2"), id="short-other-tag"),
        pytest.param("kernels:v1", (CONTAINERS_STORAGE, LOCAL[1]), id="short-from-a-registry"),
        pytest.param(
            "localhost/tcv-demo/vector-add:latest", (CONTAINERS_STORAGE, LOCAL[0]), id="localhost"
        ),
        pytest.param(
            "localhost/not-here",
            (CONTAINERS_STORAGE, "localhost/not-here:latest"),
            id="localhost-is-never-a-registry",
        ),
        pytest.param(
            "containers-storage:tcv-demo/vector-add",
            (CONTAINERS_STORAGE, LOCAL[0]),
            id="containers-storage-short",
        ),
        pytest.param("quay.io/org/kernels:v1", (DOCKER, "quay.io/org/kernels:v1"), id="qualified"),
        pytest.param(
            "localhost:5000/a/b:1", (DOCKER, "localhost:5000/a/b:1"), id="localhost-with-port"
        ),
        pytest.param("oci:/layout:t", ("oci", "/layout:t"), id="other-transport"),
    ],
)
def test_resolve(text, expected):
    assert resolve(text, LOCAL, TWO) == ImageRef(*expected)


def test_one_search_registry_is_used_for_a_short_name_not_local():
    assert resolve("vllm-kernels:1", LOCAL, ONE) == ImageRef(
        DOCKER, "docker.io/library/vllm-kernels:1"
    )
    conf = RegistriesConf(search=("quay.io",))
    assert resolve("org/k", LOCAL, conf) == ImageRef(DOCKER, "quay.io/org/k")


def test_aliases_come_before_search_registries():
    conf = RegistriesConf(search=("docker.io",), aliases={"kern": "quay.io/org/kern"})
    assert resolve("kern:3", [], conf) == ImageRef(DOCKER, "quay.io/org/kern:3")


@pytest.mark.parametrize("conf", [NONE, TWO], ids=["no-search", "two-search"])
def test_an_ambiguous_short_name_says_what_to_write(conf):
    with pytest.raises(UsageError) as info:
        resolve("elsewhere/k:1", LOCAL, conf)
    line = info.value.line()
    assert "short name that is not in local storage" in line
    assert "quay.io/ORG/elsewhere/k" in line


def test_push_of_a_short_name_names_where_it_would_go():
    assert resolve("k:v2", LOCAL, ONE, for_push=True) == ImageRef(DOCKER, "docker.io/library/k:v2")
    with pytest.raises(UsageError, match="names no registry to push to"):
        resolve("k:v2", LOCAL, NONE, for_push=True)


def test_split_name():
    assert split_name("a/b:1") == (None, "a/b", "1", None)
    assert split_name("127.0.0.1:5000/a/b") == ("127.0.0.1:5000", "a/b", None, None)
    assert split_name("localhost/x@sha256:ab") == ("localhost", "x", None, "sha256:ab")


def test_read_registries_conf(tmp_path):
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["quay.io"]\n[aliases]\n"k" = "quay.io/o/k"\n')
    got = read_registries_conf({"CONTAINERS_REGISTRIES_CONF": str(conf)})
    assert got == RegistriesConf(("quay.io",), {"k": "quay.io/o/k"})
    conf.write_text("this is [ not toml")
    assert read_registries_conf({"CONTAINERS_REGISTRIES_CONF": str(conf)}) == RegistriesConf()
