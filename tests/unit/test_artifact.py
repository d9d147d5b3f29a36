"""OCI artifacts: the manifest, the layout, where one may be written (tcv.image.artifact)."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile

import pytest

from tcv.errors import UsageError
from tcv.image.artifact import (
    ARTIFACT_TYPE,
    EMPTY_CONFIG_TYPE,
    LAYER_TYPE,
    artifact_annotations,
    artifact_destination,
    is_artifact,
    render_manifest,
    write_layout,
)
from tcv.image.manifest import LABEL_ENTRY_COUNT, LABEL_SUMMARY, LABEL_VARIANT


def test_manifest_is_an_oci_1_1_artifact():
    doc = json.loads(render_manifest("sha256:" + "a" * 64, 10, {LABEL_ENTRY_COUNT: "3"}))
    assert doc["artifactType"] == ARTIFACT_TYPE
    assert doc["config"]["mediaType"] == EMPTY_CONFIG_TYPE and doc["config"]["size"] == 2
    assert doc["config"]["digest"] == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert [layer["mediaType"] for layer in doc["layers"]] == [LAYER_TYPE]
    assert doc["annotations"] == {LABEL_ENTRY_COUNT: "3"}
    assert is_artifact(doc)


@pytest.mark.parametrize(
    ("manifest", "want"),
    [
        pytest.param({"artifactType": "x/y", "config": {}}, True, id="artifact-type"),
        pytest.param({"config": {"mediaType": EMPTY_CONFIG_TYPE}}, True, id="empty-config"),
        pytest.param(
            {"config": {"mediaType": "application/vnd.oci.image.config.v1+json"}},
            False,
            id="image",
        ),
    ],
)
def test_is_artifact(manifest, want):
    assert is_artifact(manifest) is want


def test_annotations_drop_the_image_variant():
    ann = artifact_annotations({LABEL_SUMMARY: "{}", LABEL_VARIANT: "multi"})
    assert LABEL_VARIANT not in ann and ann[LABEL_SUMMARY] == "{}"


def test_layout_is_reproducible_and_self_consistent(tmp_path):
    tar = tmp_path / "layer.tar"
    with tarfile.open(tar, "w") as t:
        info = tarfile.TarInfo("io.triton.cache")
        info.type = tarfile.DIRTYPE
        t.addfile(info)
    digests = []
    for n in (1, 2):
        layout = tmp_path / f"l{n}"
        digests.append(write_layout(layout, tar, {LABEL_ENTRY_COUNT: "0"}, "t"))
        index = json.loads((layout / "index.json").read_text())
        (entry,) = index["manifests"]
        assert entry["digest"] == digests[-1]
        raw = (layout / "blobs/sha256" / entry["digest"].split(":")[1]).read_bytes()
        layer = json.loads(raw)["layers"][0]
        blob = (layout / "blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
        assert gzip.decompress(blob) == tar.read_bytes()
        assert not list((layout / "blobs/sha256").glob("*.partial"))
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    ("image", "push", "want"),
    [
        pytest.param("r.example/x:1", True, "docker://r.example/x:1", id="registry"),
        pytest.param("oci:/tmp/l:v1", False, "oci:/tmp/l:v1", id="layout"),
        pytest.param("oci:/tmp/l", False, "oci:/tmp/l:latest", id="layout-no-tag"),
    ],
)
def test_destinations(image, push, want):
    assert artifact_destination(image, push=push)[0] == want


@pytest.mark.parametrize(
    ("image", "push"),
    [
        pytest.param("r.example/x:1", False, id="registry-without-push"),
        pytest.param("containers-storage:x", False, id="local-storage"),
        pytest.param("oci:/tmp/l", True, id="push-a-layout"),
    ],
)
def test_refused_destinations_say_what_to_do(image, push):
    with pytest.raises(UsageError) as err:
        artifact_destination(image, push=push)
    assert err.value.hint
