"""Fleet images: grouping by target, child names, index entries (tcv.image.fleet)."""

from __future__ import annotations

import json

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.fleet import (
    ANNOTATION_TARGET,
    child_name,
    group_by_target,
    index_entries,
    is_index,
)
from tcv.image.manifest import LABEL_ENTRY_COUNT, LABEL_SUMMARY, parse_summary
from tcv.tools.buildah import manifest_annotate_argv, manifest_push_argv
from tcv.tools.registry import RegistryOptions


@pytest.fixture
def groups(caches_dir):
    return group_by_target(scan_cache(caches_dir / "triton-3.9").entries)


def test_kernels_are_grouped_by_target_in_sorted_order(groups):
    assert [g.label for g in groups] == [
        "cuda:100:32:3.9.0",
        "cuda:80:32:3.9.0",
        "cuda:90:32:3.9.0",
        "hip:gfx1100:32:3.9.0",
        "hip:gfx942:64:3.9.0",
    ]
    assert [len(g.entries) for g in groups] == [1, 1, 2, 1, 2]
    for g in groups:
        assert {(e.backend, e.arch, e.warp_size) for e in g.entries} == {
            (g.target.backend, g.target.arch, g.target.warp_size)
        }


def test_annotations_carry_the_groups_own_summary(groups):
    ann = groups[2].annotations()
    assert ann[ANNOTATION_TARGET] == "cuda:90:32:3.9.0"
    (target,) = parse_summary(ann[LABEL_SUMMARY])
    assert (target.backend, target.arch, target.entries) == ("cuda", "90", 2)
    assert ann[LABEL_ENTRY_COUNT] == "2"


@pytest.mark.parametrize(
    ("index", "want"),
    [
        pytest.param("r.example/x:1", "r.example/x:1-cuda-90-32-3.9.0", id="tag"),
        pytest.param("r.example:5000/x", "r.example:5000/x:cuda-90-32-3.9.0", id="port-no-tag"),
        pytest.param("localhost/x", "localhost/x:cuda-90-32-3.9.0", id="bare"),
    ],
)
def test_child_names_are_valid_tags(groups, index, want):
    assert child_name(index, groups[2]) == want


def test_annotation_values_are_one_csv_field_each():
    argv = manifest_annotate_argv("l", "sha256:ab", {"b": '{"x":1,"y":2}', "a": "cuda:90"})
    assert argv[3:5] == ["--annotation=a=cuda:90", '--annotation="b={""x"":1,""y"":2}"']
    assert argv[-2:] == ["l", "sha256:ab"]


def test_manifest_push_is_an_oci_index_with_every_image():
    argv = manifest_push_argv("l", "docker://r/x:1", RegistryOptions(), digestfile="d")
    assert "--all" in argv and "--format=oci" in argv and argv[-2:] == ["l", "docker://r/x:1"]


def test_index_entries_read_annotations():
    raw = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": "sha256:aa", "annotations": {ANNOTATION_TARGET: "cuda:90:32:3.9.0"}},
            {"digest": "sha256:bb"},
            "junk",
        ],
    }
    assert is_index(raw)
    got = index_entries(json.loads(json.dumps(raw)))
    assert [(e.digest, e.target) for e in got] == [
        ("sha256:aa", "cuda:90:32:3.9.0"),
        ("sha256:bb", None),
    ]
    assert not is_index({"schemaVersion": 2, "layers": []})


# ---------------------------------------------------------------- reading an index


def _index(groups) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": f"sha256:{i:064x}", "annotations": g.annotations()}
            for i, g in enumerate(groups)
        ],
    }


def test_an_index_is_described_by_its_entries(groups):
    from tcv.image.describe import describe_index
    from tcv.image.ref import parse_image_ref

    desc = describe_index(parse_image_ref("q.io/x:1"), "sha256:" + "f" * 64, _index(groups))
    assert desc is not None and desc.kind == "index"
    assert len(desc.entries) == 5 and len(desc.targets or []) == 5
    assert desc.entry_count == 7
    assert str(desc.entries[2].ref) == f"q.io/x@sha256:{2:064x}"
    doc = desc.to_json()
    assert doc["kind"] == "index" and len(doc["manifests"]) == 5


def test_where_the_kernels_go_is_taken_when_every_entry_agrees(groups):
    """A fleet image of a vLLM tree or for a read-only mount: the layout and
    mount-path annotations of the entries become the index's labels."""
    from tcv.image.describe import describe_index
    from tcv.image.fleet import SHARED_LABELS
    from tcv.image.ref import parse_image_ref

    index = _index(groups)
    shared = dict(zip(SHARED_LABELS, ['{"kind": "vllm"}', "/triton-cache"], strict=True))
    for m in index["manifests"]:
        m["annotations"].update(shared)
    desc = describe_index(parse_image_ref("q.io/x:1"), "", index)
    assert desc is not None
    assert {k: desc.labels.get(k) for k in SHARED_LABELS} == shared
    index["manifests"][0]["annotations"][SHARED_LABELS[1]] = "/elsewhere"
    desc = describe_index(parse_image_ref("q.io/x:1"), "", index)
    assert desc is not None and SHARED_LABELS[1] not in desc.labels
    assert desc.labels[SHARED_LABELS[0]] == shared[SHARED_LABELS[0]]


def test_a_platform_index_without_summaries_is_read_as_an_image():
    from tcv.image.describe import describe_index
    from tcv.image.ref import parse_image_ref

    plain = {"manifests": [{"digest": "sha256:" + "a" * 64, "platform": {"os": "linux"}}]}
    assert describe_index(parse_image_ref("q.io/x:1"), "", plain) is None


@pytest.mark.parametrize(
    ("gpus", "want"),
    [
        pytest.param([("cuda", "90", 32)], ["cuda:90:32:3.9.0"], id="h100"),
        pytest.param(
            [("cuda", "90", 32), ("hip", "gfx942", 64)],
            ["cuda:90:32:3.9.0", "hip:gfx942:64:3.9.0"],
            id="mixed",
        ),
    ],
)
def test_entries_are_chosen_by_the_hosts_gpus(groups, gpus, want):
    from tcv.gpu.model import Gpu, HostGpus
    from tcv.image.describe import choose_entries, describe_index
    from tcv.image.ref import parse_image_ref

    desc = describe_index(parse_image_ref("q.io/x:1"), "", _index(groups))
    host = HostGpus(tuple(Gpu(i, *g) for i, g in enumerate(gpus)), (13, 4))
    chosen = choose_entries(desc, host, "3.9.0")
    assert [e.labels[ANNOTATION_TARGET] for e in chosen] == want


def test_no_fitting_entry_is_exit_4_naming_every_target(groups):
    from tcv.errors import IncompatibleError
    from tcv.gpu.model import Gpu, HostGpus
    from tcv.image.describe import choose_entries, describe_index
    from tcv.image.ref import parse_image_ref

    desc = describe_index(parse_image_ref("q.io/x:1"), "", _index(groups))
    with pytest.raises(IncompatibleError) as err:
        choose_entries(desc, HostGpus((Gpu(0, "cuda", "75", 32),), (12, 4)), None)
    assert err.value.exit_code == 4
    assert "hip:gfx1100:32" in err.value.line() and "cuda:80:32" in err.value.line()
