"""Which Triton the container will run, read from its rootfs without executing
anything from the image (docs/spec.md §5, §7).

Looked for in the usual install places: ``<prefix>/lib*/python3*/{site,dist}-packages``
for the prefixes ``/usr``, ``/usr/local``, ``/opt/conda``, ``/opt/venv`` and
those the container's ``VIRTUAL_ENV``/``CONDA_PREFIX`` name, and each
``PYTHONPATH`` entry. A ``triton-*.dist-info/METADATA`` (or the
``pytorch_triton*`` builds') gives the version; else ``triton/__init__.py``'s
``__version__`` line. Several different versions, or none: unknown, and no
kernel is left out for its version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tcv.hook.paths import BindView, open_in_container
from tcv.hook.state import HookError

PREFIXES = ("/usr", "/usr/local", "/opt/conda", "/opt/venv")
# Distribution names as wheels spell them in the dist-info directory (PEP 427: "-" -> "_").
DIST_PREFIXES = ("triton-", "pytorch_triton-", "pytorch_triton_rocm-", "pytorch_triton_xpu-")
_INIT_VERSION = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.M)
_MAX_READ = 1 << 20


@dataclass(frozen=True)
class Found:
    version: str
    where: str


def metadata_version(text: str) -> str | None:
    """``Version:`` from a core-metadata header (the part before the first blank line)."""
    for line in text.splitlines():
        if not line.strip():
            break
        name, _, value = line.partition(":")
        if name.strip().lower() == "version" and value.strip():
            return value.strip()
    return None


def init_version(text: str) -> str | None:
    m = _INIT_VERSION.search(text)
    return m.group(1) if m else None


def is_triton_dist_info(name: str) -> bool:
    return name.endswith(".dist-info") and name.startswith(DIST_PREFIXES)


def choose(found: Iterable[Found]) -> Found | None:
    """The one Triton found, or None when none or several different ones."""
    versions: dict[str, Found] = {}
    for f in found:
        versions.setdefault(f.version.split("+", 1)[0], f)
    return next(iter(versions.values())) if len(versions) == 1 else None


def site_dirs(env: Mapping[str, str]) -> list[str]:
    """The install prefixes to look for site directories under (container paths)."""
    prefixes = list(PREFIXES)
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = env.get(name, "").strip()
        if value.startswith("/") and value not in prefixes:
            prefixes.append(value)
    return prefixes


def _listdir(view: BindView, path: str) -> list[str]:
    try:
        with open_in_container(view, path) as d:
            return os.listdir(d.path)
    except (HookError, OSError):
        return []


def _read(view: BindView, directory: str, name: str) -> str | None:
    try:
        with open_in_container(view, directory) as d:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d.fd)
    except (HookError, OSError):
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(_MAX_READ).decode(errors="replace")


def _in_site(view: BindView, site: str) -> list[Found]:
    out = []
    names = _listdir(view, site)
    for name in names:
        if is_triton_dist_info(name):
            text = _read(view, f"{site}/{name}", "METADATA")
            version = metadata_version(text) if text else None
            if version:
                out.append(Found(version, f"{site}/{name}"))
    if not out and "triton" in names:
        text = _read(view, f"{site}/triton", "__init__.py")
        version = init_version(text) if text else None
        if version:
            out.append(Found(version, f"{site}/triton/__init__.py"))
    return out


def container_triton(view: BindView, env: Mapping[str, str]) -> Found | None:
    """The Triton in the container's filesystem, or None when unknown."""
    found: list[Found] = []
    for prefix in site_dirs(env):
        for lib in ("lib", "lib64"):
            base = f"{prefix}/{lib}"
            for py in _listdir(view, base):
                if py.startswith("python3"):
                    for kind in ("site-packages", "dist-packages"):
                        found += _in_site(view, f"{base}/{py}/{kind}")
    for entry in env.get("PYTHONPATH", "").split(":"):
        if entry.startswith("/"):
            found += _in_site(view, entry.rstrip("/") or "/")
    return choose(found)
