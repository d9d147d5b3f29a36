"""Crafting cache images by hand: honest ones, hostile ones, Go-tool-shaped ones.

Layers are tars written here with ``tarfile`` (so a test can put anything in
them: ``../`` names, absolute paths, links out of the root, device nodes,
setuid bits), compressed as asked, and wrapped into an image in skopeo's
``dir:`` layout (manifest.json + blobs named by digest + version), which keeps
the manifest byte for byte — Docker or OCI media types alike. ``skopeo copy``
then puts it into a registry or any other transport.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

CACHE_DIR = "io.triton.cache"
MANIFEST_PATH = "io.triton.manifest/manifest.json"


@dataclass
class Member:
    """One tar entry, any type the tar format allows."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    mode: int = 0o644
    devmajor: int = 0
    devminor: int = 0


def reg(name: str, data: bytes = b"x", mode: int = 0o644) -> Member:
    return Member(name, data, tarfile.REGTYPE, mode=mode)


def directory(name: str, mode: int = 0o755) -> Member:
    return Member(name, b"", tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Member:
    return Member(name, b"", tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Member:
    return Member(name, b"", tarfile.LNKTYPE, linkname=target)


def chardev(name: str) -> Member:
    return Member(name, b"", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)


def fifo(name: str) -> Member:
    return Member(name, b"", tarfile.FIFOTYPE, mode=0o644)


def tar_bytes(members: Iterable[Member]) -> bytes:
    """A PAX tar of ``members`` in the order given, uid/gid 0, mtime 0."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.mode = m.mode
            info.mtime = 0
            info.linkname = m.linkname
            info.devmajor = m.devmajor
            info.devminor = m.devminor
            if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(m.data)
                tf.addfile(info, io.BytesIO(m.data))
            else:
                tf.addfile(info)
    return buf.getvalue()


# What `skopeo inspect --raw` prints for an ordinary image, for faked skopeo calls.
IMAGE_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [],
    }
)


def compress(raw: bytes, media_type: str) -> bytes:
    if media_type.endswith("gzip"):
        return gzip.compress(raw, mtime=0)
    if media_type.endswith("zstd"):
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def cache_members(
    cache_root: Path, keys: Iterable[str] | None = None, manifest: object = None
) -> list[Member]:
    """The layer members of docs/spec.md §3 for the kernel dirs of ``cache_root``
    (all, or ``keys``), plus ``manifest`` as ``io.triton.manifest/manifest.json``."""
    chosen = (
        sorted(keys)
        if keys is not None
        else sorted(p.name for p in cache_root.iterdir() if p.is_dir())
    )
    out = [directory(CACHE_DIR)]
    for key in chosen:
        out.append(directory(f"{CACHE_DIR}/{key}"))
        for f in sorted((cache_root / key).iterdir()):
            out.append(reg(f"{CACHE_DIR}/{key}/{f.name}", f.read_bytes()))
    if manifest is not None:
        out.append(directory("io.triton.manifest"))
        out.append(reg(MANIFEST_PATH, json.dumps(manifest).encode()))
    return out


@dataclass
class Layer:
    members: list[Member]
    media_type: str = OCI_GZIP
    raw: bytes | None = None  # the tar itself, when not made from members

    def tar(self) -> bytes:
        return self.raw if self.raw is not None else tar_bytes(self.members)


@dataclass
class CraftedImage:
    path: Path  # a dir: layout
    manifest_digest: str
    layer_digests: list[str] = field(default_factory=list)
    config_digest: str = ""

    def ref(self) -> str:
        return f"dir:{self.path}"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_image(
    path: Path,
    layers: list[Layer],
    labels: Mapping[str, str],
    *,
    docker: bool = False,
    runnable: Mapping[str, object] | None = None,
) -> CraftedImage:
    """Write ``layers`` + a config carrying ``labels`` as a ``dir:`` image;
    ``runnable`` adds config fields of an application image (Cmd, Env, ...)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "version").write_text("Directory Transport Version: 1.1\n")
    layer_descs, diff_ids, digests = [], [], []
    for layer in layers:
        raw = layer.tar()
        blob = compress(raw, layer.media_type)
        digest = _sha(blob)
        (path / digest.split(":", 1)[1]).write_bytes(blob)
        layer_descs.append({"mediaType": layer.media_type, "digest": digest, "size": len(blob)})
        diff_ids.append(_sha(raw))
        digests.append(digest)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": dict(labels), **(runnable or {})},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "tests/harness/hostile.py"} for _ in layers],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = _sha(config_bytes)
    (path / config_digest.split(":", 1)[1]).write_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": layer_descs,
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    (path / "manifest.json").write_bytes(manifest_bytes)
    return CraftedImage(path, _sha(manifest_bytes), digests, config_digest)


def skopeo_copy(src: str, dest: str, *extra: str) -> None:
    """``skopeo copy`` for the harness (plain HTTP to the test registry)."""
    argv = ["skopeo", "copy", "-q", *extra]
    if src.startswith("docker://"):
        argv.append("--src-tls-verify=false")
    if dest.startswith("docker://"):
        argv.append("--dest-tls-verify=false")
    subprocess.run([*argv, src, dest], check=True, capture_output=True)


def push(image: CraftedImage, registry_ref: str) -> str:
    """Push a crafted image to ``registry_ref`` (bare); returns the bare reference.

    skopeo may rewrite the manifest on the way (it gzips uncompressed layers for
    a registry), so ``image`` is updated with what the registry really holds."""
    skopeo_copy(image.ref(), f"docker://{registry_ref}")
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry_ref}"],
        check=True,
        capture_output=True,
    ).stdout
    manifest = json.loads(raw)
    image.manifest_digest = _sha(raw)
    image.layer_digests = [layer["digest"] for layer in manifest["layers"]]
    image.config_digest = manifest["config"]["digest"]
    return registry_ref


def run_tcv(
    *args: str,
    staging: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
):
    """The installed ``tcv`` console script, with its own staging root."""
    import os
    import sys

    tcv = Path(sys.executable).with_name("tcv")
    return subprocess.run(
        [str(tcv), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TCV_STAGING_ROOT": str(staging), **(env or {})},
        timeout=timeout,
        cwd=cwd,
    )


# A simulated H100 whose driver supports the PTX ISA 9.4 of the 3.9 fixtures.
H100 = ("--gpu", "cuda:90", "--cuda-driver", "13.4")


def extract_json(ref: str, dest: Path, staging: Path, *extra: str) -> dict:
    """``tcv -e`` of ``ref`` into ``dest`` on the simulated H100; its JSON report."""
    proc = run_tcv(
        "-e",
        "-i",
        ref,
        "--tls-verify=false",
        "-d",
        str(dest),
        *H100,
        "--json",
        *extra,
        staging=staging,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def snapshot(root: Path) -> dict[str, object]:
    """Every path under ``root`` with its bytes (files), target (links) or "dir"."""
    import os

    out: dict[str, object] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = p.read_bytes()
    return out


def to_oci_layout(image: CraftedImage, dest: Path, tag: str = "t") -> str:
    """The crafted image as an OCI image layout, byte for byte (``skopeo copy``
    would recompress an uncompressed layer); returns the ``oci:DIR:TAG`` ref."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for f in image.path.iterdir():
        if f.name not in ("manifest.json", "version"):
            (blobs / f.name).write_bytes(f.read_bytes())
    raw = (image.path / "manifest.json").read_bytes()
    (blobs / _sha(raw).split(":", 1)[1]).write_bytes(raw)
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": json.loads(raw)["mediaType"],
                "digest": _sha(raw),
                "size": len(raw),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))
    return f"oci:{dest}:{tag}"
