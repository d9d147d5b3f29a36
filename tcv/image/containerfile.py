"""The ``--context-only`` build context (docs/spec.md §6): a Containerfile plus files
that any Containerfile builder (buildah, podman, docker, kaniko) turns into
the same cache image ``tcv -c`` builds.

Layout of the context::

    OUT/Containerfile
    OUT/rootfs/io.triton.cache/<KEY>/<files>
    OUT/rootfs/io.triton.manifest/manifest.json

One ``COPY rootfs/ /`` puts both trees into a single layer with every
builder (docker and kaniko make one layer per COPY), so the image has the one
layer of docs/spec.md §3. The files are written with the layer's normal modes (0644,
0755) and the fixed mtime, so a builder that keeps context mtimes gives the
same layer as ``tcv -c``; ``buildah build --timestamp 0`` does in any case.

:func:`render_containerfile` is pure; :func:`write_context` puts a context on
disk atomically (a sibling temp directory renamed into place), never touching
an existing non-empty OUT.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tcv.errors import CreateError, UsageError
from tcv.image.layer import DIR_MODE, FILE_MODE, Member

ROOTFS = "rootfs"
CONTAINERFILE = "Containerfile"


def quote(value: str) -> str:
    """A double-quoted Containerfile word that reads back as ``value``.

    Inside double quotes the builders' word parser takes ``\\`` as an escape
    and expands ``$VAR``; escape both (and the quote itself). A newline would
    end the instruction, so it is refused.
    """
    if "\n" in value or "\r" in value:
        raise CreateError(
            f"cannot write a LABEL holding a line break: {value[:40]!r}",
            "remove line breaks from the image name",
        )
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def render_containerfile(labels: Mapping[str, str], *, image: str | None = None) -> str:
    """The Containerfile text: FROM scratch, one COPY, the docs/spec.md §3 labels."""
    lines = [
        "# A Triton kernel cache image (TCV docs/spec.md §3), from tcv-build --context-only.",
    ]
    if image:
        lines.append(f"# Build it with: buildah build --timestamp 0 -t {image} .")
    lines += [
        "FROM scratch",
        "# One COPY gives one layer with every builder.",
        f"COPY {ROOTFS}/ /",
    ]
    keys = sorted(labels)
    if keys:
        label_lines = [f"{quote(k)}={quote(labels[k])}" for k in keys]
        lines.append("LABEL " + " \\\n      ".join(label_lines))
    return "\n".join(lines) + "\n"


def _write_tree(members: Sequence[Member], rootfs: Path, mtime: int) -> None:
    dirs: list[Path] = []
    rootfs.mkdir(mode=DIR_MODE)
    for m in members:
        dest = rootfs / m.path
        if m.is_dir:
            dest.mkdir(mode=DIR_MODE, exist_ok=True)
            os.chmod(dest, DIR_MODE)
            dirs.append(dest)
            continue
        if m.data is not None:
            dest.write_bytes(m.data)
        else:
            assert m.source is not None
            try:
                shutil.copyfile(m.source, dest)
            except PermissionError:
                raise CreateError(
                    f"cannot read {m.source}: permission denied",
                    "make the cache readable by this user (chmod -R u+rX), or run as its owner",
                ) from None
            size = dest.stat().st_size
            if size != m.size:
                raise CreateError(
                    f"{m.source} changed while packing ({m.size} bytes when scanned, {size} now)",
                    "let the program writing the cache finish, then run again",
                )
        os.chmod(dest, FILE_MODE)
        os.utime(dest, (mtime, mtime), follow_symlinks=False)
    # Directory mtimes last: writing a file into a directory bumps its mtime.
    for d in [*reversed(dirs), rootfs]:
        os.utime(d, (mtime, mtime), follow_symlinks=False)


def write_context(
    out: Path,
    members: Sequence[Member],
    labels: Mapping[str, str],
    *,
    image: str | None = None,
    mtime: int = 0,
) -> Path:
    """Write the build context into ``out`` (new, or an empty directory)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(
            f"{out} already exists and is not an empty directory",
            "give --context-only a new directory; nothing was written",
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(
            f"cannot write the build context: {parent} does not exist", "create it first"
        )
    text = render_containerfile(labels, image=image)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        _write_tree(members, tmp / ROOTFS, mtime)
        (tmp / CONTAINERFILE).write_text(text)
        os.chmod(tmp, DIR_MODE)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as err:
        raise CreateError(
            f"cannot write the build context to {out}: {err.strerror or err}",
            "check free space and permissions there",
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
