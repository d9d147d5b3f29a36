"""Image names resolved the way podman resolves them.

``tcv -c -i NAME`` stores ``localhost/NAME``, as buildah does; reading it back by
the name ``podman images`` shows (``NAME``, ``localhost/NAME:latest``) or by
``containers-storage:NAME`` must find that image, not ask a registry. The rules,
as containers/image and podman apply them (facts, written here from their
documented behaviour):

- ``localhost/...`` is never a registry: it names local storage;
- a short name (no registry part) is first looked up in local storage, under
  ``localhost/`` and under any registry; then the ``[aliases]`` of
  ``registries.conf``; then ``unqualified-search-registries`` — with exactly one,
  that one (``docker.io`` adds ``library/`` to one-component names); with none or
  several, it is ambiguous and TCV asks for a fully qualified name (it never
  prompts, as podman does not without a terminal);
- a fully qualified name is a registry reference.

:func:`resolve` is pure: the local names and the registries configuration are
given; :func:`local_image_names` and :func:`read_registries_conf` read them.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tcv.errors import TcvError, UsageError
from tcv.image.ref import CONTAINERS_STORAGE, DOCKER, ImageRef, parse_image_ref

log = logging.getLogger(__name__)

LOCALHOST = "localhost"
DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class RegistriesConf:
    search: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)


def split_name(name: str) -> tuple[str | None, str, str | None, str | None]:
    """(registry or None, repository path, tag, digest) of a bare reference."""
    rest, _, digest = name.partition("@")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == LOCALHOST):
        return first, remainder, tag, digest or None
    return None, rest, tag, digest or None


def _with_tag(repo: str, tag: str | None, digest: str | None) -> str:
    if digest:
        return f"{repo}@{digest}"
    return f"{repo}:{tag or DEFAULT_TAG}"


def _local_match(repo: str, tag: str | None, local: Iterable[str]) -> str | None:
    """The local image whose name ends in ``/REPO:TAG``; ``localhost/`` first."""
    want = f"{repo}:{tag or DEFAULT_TAG}"
    hits = sorted(n for n in local if n == f"{LOCALHOST}/{want}" or n.endswith("/" + want))
    hits.sort(key=lambda n: not n.startswith(f"{LOCALHOST}/"))
    return hits[0] if hits else None


def resolve(
    text: str, local: Sequence[str], conf: RegistriesConf, *, for_push: bool = False
) -> ImageRef:
    """The image ``text`` names (see the module docstring); UsageError when a
    short name cannot be resolved without guessing."""
    ref = parse_image_ref(text)
    if ref.transport == CONTAINERS_STORAGE:
        registry, repo, tag, digest = split_name(ref.name)
        if registry is None and not repo.startswith(("sha256:",)) and len(repo) != 64:
            hit = _local_match(repo, tag, local)
            if hit:
                return ImageRef(CONTAINERS_STORAGE, hit)
        return ref
    if ref.transport != DOCKER:
        return ref
    registry, repo, tag, digest = split_name(ref.name)
    if registry == LOCALHOST:
        return ImageRef(CONTAINERS_STORAGE, _with_tag(f"{LOCALHOST}/{repo}", tag, digest))
    if registry is not None:
        return ref
    if not for_push and not digest:
        hit = _local_match(repo, tag, local)
        if hit:
            return ImageRef(CONTAINERS_STORAGE, hit)
    alias = conf.aliases.get(repo)
    if alias:
        return parse_image_ref(_with_tag(alias, tag, digest) if (tag or digest) else alias)
    if len(conf.search) == 1:
        domain = conf.search[0]
        path = f"library/{repo}" if domain == "docker.io" and "/" not in repo else repo
        full = f"{domain}/{path}" + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
        return parse_image_ref(full)
    where = (
        f"registries.conf searches {', '.join(conf.search)}"
        if conf.search
        else "registries.conf names no unqualified-search registry"
    )
    if for_push:
        raise UsageError(
            f"{text!r} names no registry to push to ({where})",
            f"write the registry, e.g. quay.io/ORG/{repo}, or leave out --push to keep "
            f"it in local storage as localhost/{repo}",
        )
    raise UsageError(
        f"{text!r} is a short name that is not in local storage, and {where}",
        f"write the full name, e.g. quay.io/ORG/{repo}, or containers-storage:NAME for a "
        "local image",
    )


# ---------------------------------------------------------------- reading them


def local_image_names(*, timeout: float = 30.0) -> list[str]:
    """Every name (``registry/repo:tag``) in local containers storage; empty when
    buildah cannot list it (then nothing resolves locally, as without an image)."""
    from tcv.tools.runner import run

    try:
        result = run(["buildah", "images", "--json"], what="list local images", timeout=timeout)
    except TcvError as err:
        log.debug("cannot list local images: %s", err)
        return []
    try:
        data = json.loads(result.stdout or "[]")
    except (ValueError, RecursionError):
        return []
    names: list[str] = []
    for image in data if isinstance(data, list) else []:
        for name in (image.get("names") or []) if isinstance(image, dict) else []:
            if isinstance(name, str):
                names.append(name)
    return names


def registries_conf_files(env: Mapping[str, str]) -> list[Path]:
    """The registries.conf files in the order containers/image reads them."""
    if env.get("CONTAINERS_REGISTRIES_CONF"):
        return [Path(env["CONTAINERS_REGISTRIES_CONF"])]
    home = env.get("HOME")
    user = Path(home, ".config/containers/registries.conf") if home and os.geteuid() else None
    main = user if user is not None and user.is_file() else Path("/etc/containers/registries.conf")
    drop_in = main.parent / "registries.conf.d"
    extra = sorted(drop_in.glob("*.conf")) if drop_in.is_dir() else []
    return [main, *extra]


def read_registries_conf(env: Mapping[str, str] = os.environ) -> RegistriesConf:
    """Search registries and short-name aliases; later files override earlier ones."""
    search: tuple[str, ...] = ()
    aliases: dict[str, str] = {}
    for path in registries_conf_files(env):
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, ValueError) as err:
            log.debug("ignoring %s: %s", path, err)
            continue
        found = data.get("unqualified-search-registries")
        if isinstance(found, list):
            search = tuple(str(r) for r in found)
        table = data.get("aliases")
        if isinstance(table, dict):
            aliases.update({str(k): str(v) for k, v in table.items()})
    return RegistriesConf(search, aliases)


def resolve_image(text: str, *, for_push: bool = False) -> ImageRef:
    """:func:`resolve` with this host's local storage and registries.conf. Local
    storage is only listed for names that need it (short or ``localhost/``)."""
    ref = parse_image_ref(text)
    if ref.transport not in (DOCKER, CONTAINERS_STORAGE):
        return ref
    registry = split_name(ref.name)[0]
    if ref.transport == DOCKER and registry not in (None, LOCALHOST):
        return ref
    local = [] if for_push or registry == LOCALHOST else local_image_names()
    resolved = resolve(text, local, read_registries_conf(), for_push=for_push)
    if resolved != ref:
        log.info("%s resolves to %s", text, resolved.skopeo())
    return resolved
