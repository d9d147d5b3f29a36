"""Images as the earlier Go tools lay them out, and reading images as they do.

The Go tools (thunderbolt, TKDK ``tcv``, MCU/GKM ``mcv``) generated a
Dockerfile (``FROM scratch``, ``LABEL``, ``COPY <cache> ./io.triton.cache``)
and built it with docker/buildah in Docker format. Their manifest is the older
bare array without ``key``/``files``; their summary label carries ``arch`` as a
string and ``warp_size`` as an integer. :func:`build_gostyle_image` makes such
an image from a real Triton cache, reading the cache's metadata files directly
(not through TCV's model, which is what the test puts to work on the result).

:func:`fetch_image` reads any image from a registry the way a Go reader does:
manifest, config and layer blobs as stored (``skopeo copy ... dir:``, which
keeps media types and digests unchanged).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _metadata(entry: Path) -> dict[str, Any] | None:
    for f in sorted(entry.glob("*.json")):
        if f.name.startswith("__grp__") or f.name.endswith(".autotune.json"):
            continue
        return json.loads(f.read_text())
    return None


def gostyle_manifest(cache: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(bare-array manifest, summary label document) of a Triton 3.x cache."""
    items: list[dict[str, Any]] = []
    targets: dict[tuple[str, str, int], int] = {}
    for entry in sorted(p for p in cache.iterdir() if p.is_dir()):
        meta = _metadata(entry)
        if meta is None or not isinstance(meta.get("target"), dict):
            continue
        t = meta["target"]
        backend, arch, warp = t["backend"], str(t["arch"]), int(t["warp_size"])
        items.append(
            {
                "hash": meta["hash"],
                "name": meta["name"],
                "backend": backend,
                "arch": arch,
                "warp_size": warp,
                "num_warps": meta.get("num_warps"),
                "num_stages": meta.get("num_stages"),
                "debug": meta.get("debug"),
                "triton_version": meta.get("triton_version"),
                "ptx_version": meta.get("ptx_version"),
            }
        )
        targets[(backend, arch, warp)] = targets.get((backend, arch, warp), 0) + 1
    summary = {
        "targets": [{"backend": b, "arch": a, "warp_size": w} for (b, a, w) in sorted(targets)]
    }
    return items, summary


def build_gostyle_image(cache: Path, image: str, workdir: Path) -> dict[str, str]:
    """Build ``image`` (Docker format, local storage) like the Go tools; return its labels."""
    ctx = workdir / "gostyle-context"
    shutil.copytree(cache, ctx / "cache")
    items, summary = gostyle_manifest(cache)
    (ctx / "manifest").mkdir()
    (ctx / "manifest" / "manifest.json").write_text(json.dumps(items))
    labels = {
        "org.opencontainers.image.title": image.rsplit("/", 1)[-1].split(":", 1)[0],
        "cache.triton.image/summary": json.dumps(summary),
        "cache.triton.image/entry-count": str(len(items)),
        "cache.triton.image/variant": "multi",
    }
    lines = ["FROM scratch"]
    lines += [f"LABEL {k}={json.dumps(v)}" for k, v in labels.items()]
    lines += ["COPY ./cache ./io.triton.cache", "COPY ./manifest ./io.triton.manifest"]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    subprocess.run(
        ["buildah", "bud", "--quiet", "--format", "docker", "-f", "Dockerfile", "-t", image, "."],
        cwd=ctx,
        check=True,
        capture_output=True,
    )
    return labels


@dataclass
class FetchedImage:
    manifest: dict[str, Any]
    config: dict[str, Any]
    blobs: Path

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self.manifest["layers"])

    def layer_path(self, index: int = 0) -> Path:
        return self.blobs / self.layers[index]["digest"].split(":", 1)[1]

    def layer_members(self, index: int = 0) -> list[tarfile.TarInfo]:
        with self.open_layer(index) as tar:
            return tar.getmembers()

    def open_layer(self, index: int = 0) -> tarfile.TarFile:
        path = self.layer_path(index)
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        if gz:
            return tarfile.open(fileobj=gzip.open(path), mode="r:")
        return tarfile.open(path, mode="r:")


def fetch_image(source: str, dest: Path, *, tls_verify: bool = False) -> FetchedImage:
    """Copy ``source`` (e.g. ``docker://127.0.0.1:5000/x:1``) into a ``dir:``
    layout and load its manifest and config."""
    argv = ["skopeo", "copy", "--quiet"]
    if source.startswith("docker://"):
        argv.append(f"--src-tls-verify={'true' if tls_verify else 'false'}")
    subprocess.run([*argv, source, f"dir:{dest}"], check=True, capture_output=True)
    manifest = json.loads((dest / "manifest.json").read_text())
    config = json.loads((dest / manifest["config"]["digest"].split(":", 1)[1]).read_text())
    return FetchedImage(manifest=manifest, config=config, blobs=dest)
