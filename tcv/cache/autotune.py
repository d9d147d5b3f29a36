"""Autotuning results in a Triton cache, and the GPU model they were measured on.

Triton 3.x ``@triton.autotune(..., cache_results=True)`` (or
``TRITON_CACHE_AUTOTUNING=1``) stores the timings of every config it
benchmarked in the cache directory, under a key of their own:
``runtime/autotuner.py`` ``check_disk_cache`` hashes the Triton key, the
backend, the function, the tuning key and the configs, and writes
``<KEY>/<fn name[:150]>.autotune.json`` through ``get_cache_manager(...).put``,
holding ``{"key": <tuning key>, "configs_timings": [[config.__dict__,
timings], ...]}``. On a hit it reads ``json.load(f)["configs_timings"]`` and
calls ``Config(**config)`` for each pair — a malformed file crashes the
workload, so each file is checked before it is packed and before it is
installed.

A best config measured on one GPU model is not valid on another, so an image
records the model (the device name as the driver reports it,
``cuDeviceGetName``/``hipDeviceGetName``) in the
``cache.triton.image/autotune-device`` label, and extraction installs the
results only where a visible GPU has that name.

Pure, apart from :func:`host_device`'s caller handing in the host's GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tcv.cache.kernel import FileInfo
from tcv.cache.metadata import AUTOTUNE_SUFFIX
from tcv.errors import UsageError
from tcv.gpu.model import Gpu, HostGpus

LABEL_DEVICE = "cache.triton.image/autotune-device"
LABEL_COUNT = "cache.triton.image/autotune-count"
MANIFEST_KEY = "autotune"  # the manifest.json section; older readers ignore it

DEVICE_MAX = 128  # "NVIDIA H100 80GB HBM3" is 21; cuDeviceGetName's buffer is 256
COUNT_MAX = 1_000_000
FILE_MAX = 16 << 20  # one config's timings is a few dozen bytes
_DEVICE = re.compile(r"[\x20-\x7e]+")  # printable ASCII, as the drivers report names
# Only the drivers report the device name; udev and KFD give the PCI database's
# product name ("GH100 [H100 SXM5 80GB]") and a --gpu SPEC none at all.
_NAMED_SOURCES = ("cuda", "hip")

UNKNOWN_NAME = "unknown device name"
NO_GPU_CHECK = "not installed with --no-gpu-check: the GPU model is not checked"
_EXAMPLE = '--autotune-device "NVIDIA H100 80GB HBM3"'


@dataclass(frozen=True)
class AutotuneEntry:
    """One ``<KEY>/`` directory holding only ``*.autotune.json`` files."""

    key: str
    files: dict[str, FileInfo] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def is_autotune_dir(names: Iterable[str]) -> bool:
    """A directory whose files are all ``*.autotune.json`` (at least one)."""
    names = list(names)
    return bool(names) and all(is_autotune_file(n) for n in names)


def is_autotune_file(name: str) -> bool:
    return name.endswith(AUTOTUNE_SUFFIX) and len(name) > len(AUTOTUNE_SUFFIX)


def results_problem(doc: object) -> str | None:
    """Why a decoded ``*.autotune.json`` would break Triton's reader, or None.

    Triton indexes ``["configs_timings"]`` and builds ``Config(**config)`` from
    each ``[config, timings]`` pair (runtime/autotuner.py ``check_disk_cache``).
    """
    if not isinstance(doc, dict):
        return "is not a JSON object"
    pairs = doc.get("configs_timings")
    if not isinstance(pairs, list):
        return "has no configs_timings list"
    for i, pair in enumerate(pairs):
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], dict):
            return f"configs_timings[{i}] is not a [config, timings] pair"
        if not all(isinstance(k, str) and k.isidentifier() for k in pair[0]):
            return f"configs_timings[{i}] has a config field that is not a name"
        timings = pair[1]
        values = timings if isinstance(timings, list) else [timings]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return f"configs_timings[{i}] has timings that are not numbers"
    return None


# ---------------------------------------------------------------- device names


def valid_device(text: object) -> str | None:
    """``text`` as a device name when it is one (printable ASCII, at most
    :data:`DEVICE_MAX` characters, no surrounding blanks), else None."""
    if not isinstance(text, str) or len(text) > DEVICE_MAX:
        return None
    if not _DEVICE.fullmatch(text) or text != text.strip():
        return None
    return text


def check_device(text: str) -> str:
    """``--autotune-device NAME``, validated (UsageError, exit 3)."""
    name = valid_device(text.strip()) if isinstance(text, str) else None
    if name is None:
        raise UsageError(
            f"--autotune-device {text[: DEVICE_MAX + 8]!r} is not a GPU device name",
            f"give the name the driver reports, printable ASCII of at most {DEVICE_MAX} "
            f"characters, e.g. {_EXAMPLE} (nvidia-smi -L, rocm-smi --showproductname)",
        )
    return name


def gpu_device(gpu: Gpu) -> str | None:
    """The device name ``gpu`` reports, or None when no driver named it."""
    if gpu.source not in _NAMED_SOURCES:
        return None
    return valid_device(gpu.name.strip())


def host_device(host: HostGpus) -> tuple[str | None, str]:
    """(the one GPU model of ``host``, or None, and why not)."""
    if not host.gpus:
        return None, "this host has no GPU that TCV can see"
    names = [gpu_device(g) for g in host.gpus]
    if any(n is None for n in names):
        return None, "no driver names this host's GPU (a --gpu SPEC, or no driver library)"
    models = sorted(set(n for n in names if n is not None))
    if len(models) > 1:
        return None, f"this host has {len(models)} GPU models ({', '.join(models)})"
    return models[0], ""


def undetermined(why: str) -> str:
    return f"cannot tell which GPU model the autotune results were measured on: {why}"


DEVICE_HINT = f"pass {_EXAMPLE}, the model they were measured on"


def mismatch(recorded: str, gpus: Sequence[Gpu]) -> str | None:
    """None when one of ``gpus`` is the ``recorded`` model, else the skip reason."""
    names = [gpu_device(g) for g in gpus]
    if recorded in names:
        return None
    known = sorted(set(n for n in names if n is not None))
    if not known:
        return f"measured on {recorded}; {UNKNOWN_NAME} for this host's GPU"
    return f"measured on {recorded}, not on this host's {', '.join(known)}"


# ---------------------------------------------------------------- image side


def labels(device: str, entries: Sequence[AutotuneEntry]) -> dict[str, str]:
    return {LABEL_DEVICE: device, LABEL_COUNT: str(len(entries))}


@dataclass(frozen=True)
class Recorded:
    """What an image's labels say about its autotune results: the device (None
    when absent or not a valid name), the count, and why a label was ignored."""

    device: str | None
    count: int | None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"device": self.device, "count": self.count}
        if self.problem:
            doc["problem"] = self.problem
        return doc


def read_labels(image_labels: Mapping[str, str]) -> Recorded | None:
    """The autotune labels of an image (labels of hostile images too: bounded
    and validated), or None when it has neither."""
    raw_device = image_labels.get(LABEL_DEVICE)
    raw_count = image_labels.get(LABEL_COUNT)
    if raw_device is None and raw_count is None:
        return None
    problems = []
    device = valid_device(raw_device)
    if device is None:
        problems.append(f"{LABEL_DEVICE} is not a device name")
    count = None
    if (
        isinstance(raw_count, str)
        and raw_count.isascii()
        and raw_count.isdigit()
        and len(raw_count) <= 7
    ):
        count = int(raw_count)
    if count is None or count > COUNT_MAX:
        count = None
        problems.append(f"{LABEL_COUNT} is not a count")
    return Recorded(device, count, "; ".join(problems) or None)


def manifest_section(device: str, entries: Sequence[AutotuneEntry]) -> dict[str, Any]:
    """The manifest's ``autotune`` section: the device and each entry's files."""
    return {
        "device": device,
        "entries": [
            {
                "key": e.key,
                "files": {
                    n: {"size": f.size, "sha256": f.sha256} for n, f in sorted(e.files.items())
                },
            }
            for e in sorted(entries, key=lambda e: e.key)
        ],
    }


class SectionError(ValueError):
    """The manifest's autotune section cannot be read; the message says why."""


def parse_section(doc: object) -> list[AutotuneEntry]:
    """The entries of a decoded manifest's ``autotune`` section ([] when absent)."""
    if not isinstance(doc, Mapping) or doc.get(MANIFEST_KEY) is None:
        return []
    section = doc[MANIFEST_KEY]
    items = section.get("entries") if isinstance(section, Mapping) else None
    if not isinstance(items, list) or len(items) > COUNT_MAX:
        raise SectionError("the manifest's autotune section has no entries list")
    out = []
    for i, item in enumerate(items):
        key = item.get("key") if isinstance(item, Mapping) else None
        files = item.get("files") if isinstance(item, Mapping) else None
        if not isinstance(key, str) or not isinstance(files, Mapping) or not files:
            raise SectionError(f"autotune entry {i} of the manifest has no key or files")
        infos = {}
        for name, info in files.items():
            size = info.get("size") if isinstance(info, Mapping) else None
            sha = info.get("sha256") if isinstance(info, Mapping) else None
            if not isinstance(sha, str) or not isinstance(size, int) or isinstance(size, bool):
                raise SectionError(f"autotune entry {key!r}: file {name!r} has no size or sha256")
            if not 0 <= size <= FILE_MAX:
                raise SectionError(f"autotune entry {key!r}: {name!r} has the size {size}")
            infos[str(name)] = FileInfo(size=size, sha256=sha)
        out.append(AutotuneEntry(key, infos))
    return out
