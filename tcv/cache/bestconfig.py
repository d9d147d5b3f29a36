"""Inductor's own autotuning results, ``<inductor cache dir>/<xx>/<name>.best_config``. Pure.

Inductor writes each generated kernel module through
``torch/_inductor/codecache.py`` ``get_path(basename, ext)``: ``subdir =
os.path.join(cache_dir(), basename[1:3])`` and ``path = os.path.join(subdir,
f"{basename}.{extension}")``, where ``basename`` is ``"c"`` and the lowercase
base32 of a sha256 (``code_hash``). The module's ``cached_autotune``
(``runtime/triton_heuristics.py``) keeps the config the autotuner chose beside
it:

* up to torch 2.5: ``cache_filename = os.path.splitext(filename)[0] +
  ".best_config"`` (``triton_heuristics.py`` ``cached_autotune``, later
  ``runtime/autotune_cache.py`` ``AutotuneCache._setup_local_cache``) — the
  module's stem;
* newer releases: ``cache_filename = f"{dirname}/{cache_key}.best_config"``
  with ``cache_key`` the sha256 hex of ``f"{os.path.basename(filename)}:
  {cache_key_tag}"`` (``autotune_cache.py`` ``AutotuneCache._prepare_key``).

Either way a plain file name in ``<xx>/``. The file is the JSON object
``AutotuneCache.save`` writes: ``{**config.kwargs, "num_warps", "num_stages",
"configs_hash", "found_by_coordesc", "time_taken_ms"}`` (newer releases add
fields such as ``triton_cache_hash``; the oldest wrote only the kwargs and
``configs_hash``). ``_load_cached_autotuning`` reads it back: a configs_hash
that differs is a miss, but with ``coordinate_descent_tuning`` and
``found_by_coordesc`` true it ``pop``\\ s ``num_warps`` and ``num_stages``
without a default — a file lacking them crashes the compile, so each file is
checked before it is packed and before it is installed.

In the image they live under :data:`TREE` inside the cache tree, a name no
Triton KEY can take (KEYs are base32 or hex, :func:`tcv.install.is_valid_key`
allows no dot), and the manifest's ``autotune`` section lists them under
:data:`SECTION_KEY` like the Triton results: ``[{"key": "<xx>", "files":
{name: {size, sha256}}}]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tcv.cache import autotune
from tcv.cache.autotune import AutotuneEntry

SUFFIX = ".best_config"
TREE = "inductor.best_config"  # io.triton.cache/inductor.best_config/<xx>/<name>
SECTION_KEY = "best_configs"
FILE_MAX = 64 << 10  # Inductor's are about 200 bytes
COUNT_MAX = 100_000
TOTAL_MAX = 64 << 20  # they are packed from memory
DEPTH_MAX = 4  # a flat object; kwargs values are numbers or strings

# codecache: basename[1:3] of "c" + lowercase base32; digits kept for older hashes.
_SUBDIR = re.compile(r"^[a-z0-9]{2}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")

SKIP_WORKLOAD = "Inductor autotuning results are installed with --for inductor"
DIFFERING = "a different best_config is already installed there — --force replaces it"


def is_subdir(name: str) -> bool:
    """``<xx>``: the two-character directory Inductor writes modules into."""
    return bool(_SUBDIR.match(name))


def is_file_name(name: str) -> bool:
    """A plain ``<name>.best_config`` file name (no separator, no leading dot)."""
    return bool(_NAME.match(name)) and name.endswith(SUFFIX) and len(name) > len(SUFFIX)


def ident(subdir: str, name: str) -> str:
    """How a file is named in reports: ``<xx>/<name>``."""
    return f"{subdir}/{name}"


def config_problem(doc: object) -> str | None:
    """Why a decoded ``*.best_config`` would break Inductor's reader, or None."""
    if not isinstance(doc, dict):
        return "is not a JSON object"
    for field in ("num_warps", "num_stages"):
        value = doc.get(field)
        if field in doc and (not isinstance(value, int) or isinstance(value, bool)):
            return f"has a {field} that is not an integer"
    if doc.get("found_by_coordesc") and not ("num_warps" in doc and "num_stages" in doc):
        return "is found_by_coordesc without num_warps and num_stages"
    if "configs_hash" in doc and not isinstance(doc["configs_hash"], str):
        return "has a configs_hash that is not a string"
    return None


def count(entries: Sequence[AutotuneEntry]) -> int:
    """How many files: each counts as one result in the autotune-count label."""
    return sum(len(e.files) for e in entries)


def manifest_items(entries: Sequence[AutotuneEntry]) -> list[dict[str, Any]]:
    """The manifest's ``autotune.best_configs`` list."""
    section = autotune.manifest_section("", entries)
    return list(section["entries"])


def parse_items(doc: object) -> list[AutotuneEntry]:
    """The best_config directories a decoded manifest lists ([] when none);
    :class:`tcv.cache.autotune.SectionError` when the list is malformed.
    Names are not checked here: the caller skips the unsafe ones with a reason."""
    section = doc.get(autotune.MANIFEST_KEY) if isinstance(doc, dict) else None
    items = section.get(SECTION_KEY) if isinstance(section, dict) else None
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > COUNT_MAX:
        raise autotune.SectionError("the manifest's best_configs list is malformed")
    entries = autotune.parse_section({autotune.MANIFEST_KEY: {"entries": items}})
    for e in entries:
        for name, info in e.files.items():
            if info.size > FILE_MAX:
                raise autotune.SectionError(
                    f"best_config {e.key}/{name} has the size {info.size} (at most {FILE_MAX})"
                )
    return entries
