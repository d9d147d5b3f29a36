"""Fleet images and OCI artifacts against a real registry on 127.0.0.1.

A four-target fleet image (cuda:80, cuda:90, hip:gfx942, hip:gfx1100, one
Triton cache per "CI runner", from the real 3.9 fixtures) is built with
``tcv -c --split-by-target`` and real buildah; the registry's access log then
shows which blobs each host downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tcv.cache.scan import scan_cache
from tcv.image.fleet import ANNOTATION_TARGET
from tcv.image.manifest import LABEL_SUMMARY, parse_summary
from tests.harness import buildah_state
from tests.harness import hostile as h

pytestmark = pytest.mark.integration

# The kernels of the 3.9 fixture, by the target a CI runner would compile for.
RUNNERS = {
    "cuda80": ["W6VCXNA7IKPLDUZGU5PXZXERP624WFBLTUTFIOG34WI5PYPWV5GQ"],
    "cuda90": [
        "4SDXVXBFAHNXZM5UPNFTYK7NXZAF7A5DGE3DQLXW5HXK7GQX2FAA",
        "FHPOL2T7KLQL6PG4W2MQICBWZI4NLZW6B7BZZXIX5XBUHENYXUOA",
    ],
    "gfx942": [
        "CICLSTXG324UF2GRJZBDSSPMY4J5QFIDWDUNIBOC4KTJHQKUJJOQ",
        "PV424ZN5QKVCZ5XQ4QTT3C3ZLDXBFQ5ISZJEIIGC52GDA533YN4Q",
    ],
    "gfx1100": ["2SV4RYKABJEQZHBZ46X6QNMXXPMNP2MXGSXAJ5RVNNC3A3RZTJRQ"],
}
TARGETS = {
    "cuda80": "cuda:80:32:3.9.0",
    "cuda90": "cuda:90:32:3.9.0",
    "gfx942": "hip:gfx942:64:3.9.0",
    "gfx1100": "hip:gfx1100:32:3.9.0",
}
CUDA_DRIVER = ("--cuda-driver", "13.4")  # accepts the fixtures' PTX ISA 9.4
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(autouse=True, scope="module")
def _own_storage(tmp_path_factory):
    with buildah_state.private_storage(tmp_path_factory.mktemp("storage")):
        yield


def runner_caches(fixture: Path, root: Path) -> list[Path]:
    """One cache directory per runner, each with its target's kernels only."""
    dirs = []
    for runner, keys in RUNNERS.items():
        d = root / runner
        d.mkdir(parents=True)
        for key in keys:
            shutil.copytree(fixture / key, d / key)
        dirs.append(d)
    return dirs


def raw(ref: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
    ).stdout


@dataclass
class Fleet:
    ref: str
    digest: str
    index: dict
    # runner -> (child manifest digest, its config digest, its layer digests)
    children: dict[str, tuple[str, str, list[str]]]

    @property
    def repo(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    def layers(self, *runners: str) -> set[str]:
        return {d for r in runners for d in self.children[r][2]}

    def all_layers(self) -> set[str]:
        return self.layers(*self.children)


def build_fleet(registry, dirs: list[Path], staging: Path, tag: str) -> tuple[str, str]:
    ref = registry.ref(f"tcv-it/fleet:{tag}")
    args = ["-c", "--split-by-target", "-i", ref, "--push", "--tls-verify=false", "--json"]
    for d in dirs:
        args += ["-d", str(d)]
    made = h.run_tcv(*args, staging=staging)
    assert made.returncode == 0, made.stderr
    return ref, json.loads(made.stdout)["digest"]


@pytest.fixture(scope="module")
def caches(caches_dir, tmp_path_factory) -> list[Path]:
    return runner_caches(caches_dir / "triton-3.9", tmp_path_factory.mktemp("runners"))


@pytest.fixture(scope="module")
def fleet(registry, caches, tmp_path_factory) -> Fleet:
    staging = tmp_path_factory.mktemp("st")
    ref, digest = build_fleet(registry, caches, staging, uuid.uuid4().hex[:8])
    index_raw = raw(ref)
    index = json.loads(index_raw)
    by_target = {m["annotations"][ANNOTATION_TARGET]: m["digest"] for m in index["manifests"]}
    children = {}
    for runner, target in TARGETS.items():
        child = by_target[target]
        manifest = json.loads(raw(f"{ref.rsplit(':', 1)[0]}@{child}"))
        layers = [layer["digest"] for layer in manifest["layers"]]
        children[runner] = (child, manifest["config"]["digest"], layers)
    return Fleet(ref, digest, index, children)


def served_blobs(registry, before: int, repo: str) -> set[str]:
    path = repo.split("/", 1)[1]
    return {
        str(r["uri"]).rsplit("/", 1)[-1]
        for r in registry.requests()[before:]
        if f"/v2/{path}/blobs/" in str(r["uri"]) and r["method"] == "GET"
    }


def extract(ref: str, dest: Path, staging: Path, *gpus: str):
    args = ["-e", "-i", ref, "--tls-verify=false", "-d", str(dest), "--json", *CUDA_DRIVER]
    for g in gpus:
        args += ["--gpu", g]
    return h.run_tcv(*args, staging=staging)


# ---------------------------------------------------------------- the index


def test_index_entries_carry_target_and_their_own_summary(fleet):
    assert fleet.index["mediaType"] == OCI_INDEX
    assert fleet.digest.startswith("sha256:")
    entries = fleet.index["manifests"]
    assert [m["annotations"][ANNOTATION_TARGET] for m in entries] == sorted(TARGETS.values())
    for m in entries:
        (target,) = parse_summary(m["annotations"][LABEL_SUMMARY])
        assert m["annotations"][ANNOTATION_TARGET].startswith(f"{target.backend}:{target.arch}:")
    # Each image has its own labels, with its own single-target summary.
    info = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            f"docker://{fleet.repo}@{fleet.children['gfx942'][0]}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    labels = json.loads(info.stdout)["Labels"]
    (target,) = parse_summary(labels[LABEL_SUMMARY])
    assert (target.backend, target.arch, target.entries) == ("hip", "gfx942", 2)


def test_the_same_caches_give_the_same_index_digest(registry, caches, fleet, tmp_path):
    _, digest = build_fleet(registry, caches, tmp_path / "st", "again-" + uuid.uuid4().hex[:6])
    assert digest == fleet.digest


def test_tcv_build_makes_the_same_fleet_image(registry, caches, fleet, tmp_path):
    ref = registry.ref(f"tcv-it/fleet:build-{uuid.uuid4().hex[:6]}")
    argv = [*map(str, caches), "-t", ref, "--split-by-target", "--push", "--tls-verify=false"]
    built = subprocess.run(
        [str(Path(sys.executable).with_name("tcv-build")), *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(tmp_path / "st")},
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == fleet.digest


# ---------------------------------------------------------------- hosts


def test_a_cuda90_host_downloads_only_the_cuda90_layer(registry, fleet, tmp_path):
    before = len(registry.requests())
    got = extract(fleet.ref, tmp_path / "dest", tmp_path / "st", "cuda:90")
    assert got.returncode == 0, got.stderr
    assert sorted(json.loads(got.stdout)["installed"]) == sorted(RUNNERS["cuda90"])
    blobs = served_blobs(registry, before, fleet.repo)
    assert blobs & fleet.all_layers() == fleet.layers("cuda90")
    assert blobs - fleet.all_layers() == {fleet.children["cuda90"][1]}


def test_a_mixed_host_downloads_exactly_its_two(registry, fleet, tmp_path):
    before = len(registry.requests())
    got = extract(fleet.ref, tmp_path / "dest", tmp_path / "st", "cuda:90", "hip:gfx942")
    assert got.returncode == 0, got.stderr
    installed = json.loads(got.stdout)["installed"]
    assert sorted(installed) == sorted(RUNNERS["cuda90"] + RUNNERS["gfx942"])
    blobs = served_blobs(registry, before, fleet.repo)
    assert blobs & fleet.all_layers() == fleet.layers("cuda90", "gfx942")


def test_an_unknown_target_reads_the_index_and_nothing_else(registry, fleet, tmp_path):
    before = len(registry.requests())
    dest = tmp_path / "dest"
    got = extract(fleet.ref, dest, tmp_path / "st", "cuda:75")
    assert got.returncode == 4, got.stderr
    (line,) = got.stderr.strip().splitlines()
    assert "nothing in" in line and "cuda:90" in line and "hip:gfx942" in line
    path = fleet.repo.split("/", 1)[1]
    seen = [r for r in registry.requests()[before:] if r["uri"] != "/v2/"]
    assert [(r["method"], r["uri"]) for r in seen] == [
        ("GET", f"/v2/{path}/manifests/{fleet.ref.rsplit(':', 1)[1]}")
    ]
    assert not dest.exists()


def test_check_and_inspect_read_the_index(registry, fleet, tmp_path):
    before = len(registry.requests())
    shown = h.run_tcv("inspect", fleet.ref, "--tls-verify=false", "--json", staging=tmp_path)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["kind"] == "index" and doc["digest"] == fleet.digest
    assert len(doc["manifests"]) == 4
    assert {(t["backend"], t["arch"]) for t in doc["summary"]["targets"]} == {
        ("cuda", "80"),
        ("cuda", "90"),
        ("hip", "gfx942"),
        ("hip", "gfx1100"),
    }
    assert not served_blobs(registry, before, fleet.repo)

    before = len(registry.requests())
    checked = h.run_tcv(
        "check", "-i", fleet.ref, "--tls-verify=false", "--gpu", "hip:gfx1100", "--json",
        staging=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["compatible"] == RUNNERS["gfx1100"]
    blobs = served_blobs(registry, before, fleet.repo)
    assert blobs & fleet.all_layers() == fleet.layers("gfx1100")


def test_a_plain_skopeo_copy_gets_the_first_image(fleet, tmp_path):
    out = tmp_path / "copy"
    h.skopeo_copy(f"docker://{fleet.ref}", f"dir:{out}")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [layer["digest"] for layer in manifest["layers"]] == fleet.children["cuda80"][2]
    # ... and that copy is a complete cache image by itself.
    h.skopeo_copy(f"dir:{out}", f"oci:{tmp_path / 'layout'}:t")
    dest = tmp_path / "dest"
    done = extract(f"oci:{tmp_path / 'layout'}:t", dest, tmp_path / "st", "cuda:80")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["installed"] == RUNNERS["cuda80"]


def test_a_fleet_image_in_an_oci_layout_gives_each_host_its_own(fleet, tmp_path):
    layout = f"oci:{tmp_path / 'layout'}:t"
    h.skopeo_copy(f"docker://{fleet.ref}", layout, "--all")
    got = extract(layout, tmp_path / "dest", tmp_path / "st", "hip:gfx942", "hip:gfx1100")
    assert got.returncode == 0, got.stderr
    installed = json.loads(got.stdout)["installed"]
    assert sorted(installed) == sorted(RUNNERS["gfx942"] + RUNNERS["gfx1100"])


def test_no_gpu_check_installs_every_target(fleet, tmp_path):
    dest = tmp_path / "dest"
    got = h.run_tcv(
        "-e", "-i", fleet.ref, "--tls-verify=false", "-d", str(dest), "--no-gpu-check", "--json",
        staging=tmp_path / "st",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    want = sorted(k for keys in RUNNERS.values() for k in keys)
    assert sorted(json.loads(got.stdout)["installed"]) == want
    assert sorted(e.key for e in scan_cache(dest).entries) == want


# ---------------------------------------------------------------- merging


def test_one_key_with_different_bytes_exits_2_and_pushes_nothing(registry, caches_dir, tmp_path):
    fixture = caches_dir / "triton-3.9"
    a, b = tmp_path / "a", tmp_path / "b"
    key = RUNNERS["cuda90"][0]
    for d in (a, b):
        d.mkdir()
        shutil.copytree(fixture / key, d / key)
    ptx = next((b / key).glob("*.ptx"))
    ptx.write_bytes(ptx.read_bytes() + b"// rebuilt\n")
    staging = tmp_path / "st"
    staging.mkdir()
    state = buildah_state.snapshot(staging)
    before = len(registry.requests())
    repo = f"tcv-it/conflict-{uuid.uuid4().hex[:8]}"
    for extra in ([], ["--split-by-target"]):
        got = h.run_tcv(
            "-c", *extra, "-i", registry.ref(f"{repo}:1"), "-d", str(a), "-d", str(b),
            "--push", "--tls-verify=false", staging=staging,
        )  # fmt: skip
        assert got.returncode == 2, got.stderr
        (line,) = got.stderr.strip().splitlines()
        assert key in line and str(a) in line and str(b) in line and ptx.name in line
    assert not [r for r in registry.requests()[before:] if repo in str(r["uri"])]
    assert buildah_state.snapshot(staging).leftovers(state) == {
        "containers": [],
        "mounts": [],
        "staging": [],
    }
    images = subprocess.run(
        ["buildah", "images", "--format", "{{.Name}}"], capture_output=True, text=True
    ).stdout
    assert repo not in images


def test_the_same_kernel_from_two_runners_is_packed_once(registry, caches_dir, tmp_path):
    fixture = caches_dir / "triton-3.9"
    a = runner_caches(fixture, tmp_path / "a")
    b = runner_caches(fixture, tmp_path / "b")  # a second runner of every target
    ref = registry.ref(f"tcv-it/twice:{uuid.uuid4().hex[:8]}")
    got = h.run_tcv(
        "-c", "-i", ref, *[x for d in a + b for x in ("-d", str(d))], "--push",
        "--tls-verify=false", "--json", staging=tmp_path / "st",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["entries"] == sum(len(k) for k in RUNNERS.values())


# ---------------------------------------------------------------- artifacts


def test_an_artifact_round_trips_through_the_registry_and_a_layout(registry, caches, tmp_path):
    ref = registry.ref(f"tcv-it/artifact:{uuid.uuid4().hex[:8]}")
    args = ["-c", "--format", "artifact", "-i", ref, "--push", "--tls-verify=false", "--json"]
    made = h.run_tcv(*args, *[x for d in caches for x in ("-d", str(d))], staging=tmp_path)
    assert made.returncode == 0, made.stderr
    manifest = json.loads(raw(ref))
    assert manifest["artifactType"] == "application/vnd.triton.cache.v1"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.triton.cache.layer.v1.tar+gzip"
    targets = parse_summary(manifest["annotations"][LABEL_SUMMARY])
    assert {(t.backend, t.arch) for t in targets} == {
        ("cuda", "80"),
        ("cuda", "90"),
        ("hip", "gfx942"),
        ("hip", "gfx1100"),
    }
    assert manifest["annotations"]["cache.triton.image/entry-count"] == "6"

    # The preflight needs the manifest alone: nothing fits → no blob at all.
    repo = ref.rsplit(":", 1)[0]
    before = len(registry.requests())
    none = extract(ref, tmp_path / "none", tmp_path / "st", "cuda:75")
    assert none.returncode == 4, none.stderr
    assert not served_blobs(registry, before, repo)

    got = extract(ref, tmp_path / "d1", tmp_path / "st", "hip:gfx942")
    assert got.returncode == 0, got.stderr
    assert sorted(json.loads(got.stdout)["installed"]) == sorted(RUNNERS["gfx942"])

    layout = f"oci:{tmp_path / 'layout'}:v1"
    h.skopeo_copy(f"docker://{ref}", layout)
    again = extract(layout, tmp_path / "d2", tmp_path / "st", "cuda:90")
    assert again.returncode == 0, again.stderr
    assert sorted(json.loads(again.stdout)["installed"]) == sorted(RUNNERS["cuda90"])


def test_an_artifact_written_as_a_layout_is_reproducible(caches, tmp_path):
    # The layout directory's name is the title annotation: the same in both.
    digests = []
    for n in (1, 2):
        (tmp_path / str(n)).mkdir()
        made = h.run_tcv(
            "-c", "--format", "artifact", "-i", f"oci:{tmp_path / str(n) / 'kernels'}:t",
            "-d", str(caches[1]), "--json", staging=tmp_path,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        digests.append(json.loads(made.stdout)["digest"])
    assert digests[0] == digests[1]


def test_a_thunderbolt_custom_layer_image_extracts(registry, caches_dir, tmp_path):
    fixture = caches_dir / "triton-3.9"
    # thunderbolt's layout: the cache tree only, no manifest file, no summary label,
    # in its own uncompressed layer type.
    members = h.cache_members(fixture, RUNNERS["cuda90"])
    layer = h.Layer(members, media_type="application/cache.triton.content.layer.v1+triton")
    image = h.write_image(tmp_path / "img", [layer], {})
    ref = h.push(image, registry.ref(f"tcv-it/thunderbolt-layer:{uuid.uuid4().hex[:8]}"))
    assert json.loads(raw(ref))["layers"][0]["mediaType"] == layer.media_type
    got = extract(ref, tmp_path / "dest", tmp_path / "st", "cuda:90")
    assert got.returncode == 0, got.stderr
    assert sorted(json.loads(got.stdout)["installed"]) == sorted(RUNNERS["cuda90"])


# ---------------------------------------------------------------- Triton


@pytest.mark.triton
def test_a_kernel_from_the_fleet_is_a_real_triton_hit(registry, caches, tmp_path):
    from tests.integration.test_triton_cache_hit import _compile

    a, b, home = tmp_path / "A", tmp_path / "B", tmp_path / "home"
    first = _compile(a, home)  # the cuda:90 runner of this matrix
    assert first["cache_hit"] is False
    (entry,) = scan_cache(a).entries
    others = [d for d in caches if d.name != "cuda90"]
    ref = registry.ref(f"tcv-it/fleet-hit:{uuid.uuid4().hex[:8]}")
    args = ["-c", "--split-by-target", "-i", ref, "--push", "--tls-verify=false"]
    made = h.run_tcv(*args, "-d", str(a), *[x for d in others for x in ("-d", str(d))],
                     staging=tmp_path / "st")  # fmt: skip
    assert made.returncode == 0, made.stderr
    shutil.rmtree(a)

    got = h.run_tcv(
        "-e", "-i", ref, "--tls-verify=false", "-d", str(b), "--gpu", "cuda:90",
        "--cuda-driver", "13.9", "--json", staging=tmp_path / "st",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["installed"] == [entry.key]
    at_b = _compile(b, home)
    assert at_b["cache_hit"] is True and at_b["hash"] == first["hash"]


# ---------------------------------------------------------------- the hook's store


def test_the_hook_store_keeps_every_image_of_a_fleet_index(fleet, tmp_path):
    from tcv.hook.store import Resolved, Store
    from tcv.tools.registry import RegistryOptions

    store = Store(tmp_path / "store")
    resolved = Resolved(f"docker://{fleet.ref}", fleet.digest, local=False)
    stored = store.fill(resolved, RegistryOptions(tls_verify=False), timeout=120)
    want = sorted(k for keys in RUNNERS.values() for k in keys)
    assert sorted(e.key for e in stored.entries) == want
    assert sorted(p.name for p in stored.cache_root.iterdir()) == want
    assert store.get(fleet.digest) is not None
    assert not list((tmp_path / "store" / "tmp").iterdir())


def test_an_artifact_push_to_an_unreachable_registry_is_one_line(caches, tmp_path):
    """skopeo's failure to copy the built artifact is worded, never a traceback."""
    made = h.run_tcv(
        "-c", "--format", "artifact", "-i", "127.0.0.1:1/tcv-it/artifact:x", "--push",
        "--tls-verify=false", "-d", str(caches[0]), staging=tmp_path,
    )  # fmt: skip
    assert made.returncode == 2, made.stderr
    (line,) = made.stderr.strip().splitlines()
    assert line.startswith("tcv: error: built the artifact but cannot copy it to 127.0.0.1:1/")
    assert "Traceback" not in made.stderr
    assert not list((tmp_path).glob("**/create-*"))  # staging removed
