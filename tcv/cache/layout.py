"""Where a workload keeps its Triton kernels: plain Triton, Inductor, vLLM. Pure.

Triton reads one cache root, ``<root>/<KEY>/`` (runtime/cache.py). The
ecosystem nests such roots deeper:

* **Inductor** (torch.compile) sets no ``TRITON_CACHE_DIR`` of its own but, when
  it is unset, points Triton at ``cache_dir()/triton/<device index>`` — one root
  per device (PyTorch ``torch/_inductor/runtime/cache_dir_utils.py``
  ``triton_cache_dir``).
* **vLLM** (the generation on torch ≤ 2.7, ``InductorAdaptor``) sets
  ``TRITON_CACHE_DIR`` to
  ``$VLLM_CACHE_ROOT/torch_compile_cache/<hash>/rank_<r>_<dp>/triton_cache``,
  next to ``inductor_cache/`` (vLLM ``compilation/compiler_interface.py``).
  The generation on torch ≥ 2.8 (``InductorStandaloneAdaptor``) saves each
  compiled artifact at ``…/rank_<r>_<dp>/<prefix>/<artifact>``; with
  ``VLLM_COMPILE_CACHE_SAVE_FORMAT=unpacked`` that is a directory laid out like
  an Inductor cache, its kernels under ``triton/<i>/`` (the default ``binary``
  format is one file that TCV cannot look into).

:func:`detect` takes the relative paths of the directories under what the user
named (the shell in :mod:`tcv.cache.scan` lists them, never descending into a
kernel directory) and says which layout it is and where its roots are;
:func:`select` applies ``--from``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tcv.errors import UsageError

TRITON = "triton"
INDUCTOR = "inductor"
VLLM = "vllm"
KINDS = (TRITON, INDUCTOR, VLLM)

_NAMES = {TRITON: "Triton", INDUCTOR: "Inductor", VLLM: "vLLM"}
_RANK = re.compile(r"^rank_\d+_\d+$")
_DEVICE = re.compile(r"^\d+$")

# How deep the shell looks: $VLLM_CACHE_ROOT/torch_compile_cache/<hash>/
# rank_0_0/triton_cache/<KEY> is 5 levels, an unpacked artifact's
# …/rank_0_0/<prefix>/<artifact>/triton/<i>/<KEY> 8.
MAX_DEPTH = 9


@dataclass(frozen=True)
class Root:
    """One Triton cache root inside the layout: ``path`` relative to the
    directory given ("" for that directory itself); ``device`` the Inductor
    device index when the path ends in ``triton/<i>``."""

    path: str
    device: int | None = None

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "device": self.device}


@dataclass(frozen=True)
class Layout:
    kind: str
    roots: tuple[Root, ...]

    @property
    def nested(self) -> bool:
        return any(r.path for r in self.roots)

    def describe(self, base: str) -> str:
        """``this is a vLLM cache: kernels in BASE/…/rank_0_0/triton_cache``."""
        where = [f"{base.rstrip('/')}/{r.path}" if r.path else base for r in self.roots]
        shown = ", ".join(where[:3])
        if len(where) > 3:
            shown += f" and {len(where) - 3} more"
        return f"this is {_article(self.kind)} {_NAMES[self.kind]} cache: kernels in {shown}"

    def label(self) -> str:
        """The ``cache.triton.image/layout`` label: compact JSON of kind and roots."""
        doc = {"kind": self.kind, "roots": [r.to_json() for r in self.roots]}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def _article(kind: str) -> str:
    return "an" if kind == INDUCTOR else "a"


def parse_label(text: str | None) -> Layout | None:
    """The layout an image recorded, or None when absent or unreadable."""
    if not text:
        return None
    try:
        doc = json.loads(text)
        kind = doc["kind"]
        roots = tuple(
            Root(str(r["path"]), int(r["device"]) if r.get("device") is not None else None)
            for r in doc["roots"]
        )
    except (ValueError, TypeError, KeyError):
        return None
    if kind not in KINDS or any(not _safe(r.path) for r in roots):
        return None
    return Layout(kind, roots)


def _safe(path: str) -> bool:
    parts = path.split("/") if path else []
    return not path.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def classify(path: str) -> Root | None:
    """The root ``path`` is in a known layout, with its kind, else None."""
    parts = path.split("/") if path else []
    if len(parts) >= 2 and parts[-1] == "triton_cache" and _RANK.match(parts[-2]):
        return Root(path)
    if len(parts) >= 2 and parts[-2] == "triton" and _DEVICE.match(parts[-1]):
        return Root(path, int(parts[-1]))
    return None


def _kind_of(root: Root) -> str:
    parts = root.path.split("/") if root.path else []
    if any(_RANK.match(p) or p == "torch_compile_cache" for p in parts):
        return VLLM
    if root.device is not None:
        return INDUCTOR
    return TRITON


def roots_in(dirs: Iterable[str], is_key: Callable[[str], bool]) -> list[str]:
    """The directories among ``dirs`` (relative paths) that hold at least one
    subdirectory named like a Triton KEY (``is_key(name)``)."""
    found = set()
    for d in dirs:
        parent, _, name = d.rpartition("/")
        if is_key(name):
            found.add(parent)
    return sorted(found)


def detect(dirs: Iterable[str], is_key: Callable[[str], bool]) -> Layout:
    """The layout of a directory whose subdirectories are ``dirs``.

    Kernels directly in it: a Triton cache, whatever else lies deeper. Else the
    nested roots of known layouts (vLLM wins over Inductor, since a vLLM tree
    may hold Inductor's too); else any nested root at all (someone pointed at a
    parent of the cache); else an (empty) Triton cache.
    """
    candidates = roots_in(dirs, is_key)
    if "" in candidates:
        return Layout(TRITON, (Root(""),))
    known = [r for r in (classify(c) for c in candidates) if r is not None]
    if known:
        kinds = {_kind_of(r) for r in known}
        kind = VLLM if VLLM in kinds else INDUCTOR if INDUCTOR in kinds else TRITON
        return Layout(kind, tuple(r for r in known if _kind_of(r) == kind))
    if candidates:
        return Layout(TRITON, tuple(Root(c) for c in candidates))
    return Layout(TRITON, (Root(""),))


def select(found: Layout, wanted: str | None, base: str) -> Layout:
    """Apply ``--from``: None keeps what :func:`detect` found; ``triton`` packs
    the directory itself; ``inductor``/``vllm`` insist on that layout's roots
    and refuse (exit 3) when there are none."""
    if wanted is None:
        return found
    if wanted not in KINDS:
        raise UsageError(f"unknown layout {wanted!r}", "use --from triton, inductor or vllm")
    if wanted == TRITON:
        return Layout(TRITON, (Root(""),))
    if found.kind == wanted:
        return found
    expected = {
        INDUCTOR: f"{base}/triton/<device index>/<KEY>/",
        VLLM: f"{base}/…/rank_<r>_<dp>/triton_cache/<KEY>/",
    }[wanted]
    seen = found.describe(base) if found.nested else f"{base} is not one"
    raise UsageError(
        f"no {_NAMES[wanted]} cache in {base}: expected {expected} ({seen})",
        "give the cache directory of that workload, or drop --from to detect it",
    )
