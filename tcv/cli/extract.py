"""``tcv -e -i IMAGE``: install the image's kernels that fit this host (docs/spec.md §2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tcv.cli.base import sigterm_as_interrupt
from tcv.errors import EXIT_INCOMPATIBLE, EXIT_OK, UsageError
from tcv.extract import ExtractReport, extract_image
from tcv.image.names import resolve_image
from tcv.output import render_json, render_table


def run_extract(app: Any) -> int:
    """Run ``tcv -e`` with the switches of the top-level ``Tcv`` application."""
    from tcv.cache.scan import default_cache_dir
    from tcv.compat import consumer_triton_version
    from tcv.gpu.discover import host_gpus
    from tcv.progress import for_output

    if not app.image:
        raise UsageError(
            "extracting needs an image", "pass -i IMAGE, e.g. tcv -e -i quay.io/example/kernels"
        )
    if app.max_size is not None and app.max_size <= 0:
        raise UsageError("--max-size must be a positive number of bytes")
    if app.no_gpu_check and app.gpu_specs:
        raise UsageError("--no-gpu-check and --gpu contradict each other", "pass only one")
    ref = resolve_image(app.image)
    workload = str(getattr(app, "workload", None) or "triton").lower()
    if workload == "triton":
        dest = Path(app.directory).expanduser() if app.directory else default_cache_dir(os.environ)
        # Group files name absolute paths: a relative DEST would make every kernel miss
        # as soon as Triton runs from another directory.
        dest = Path(os.path.abspath(dest))
    else:
        dest = _workload_base(workload, app.directory)
    opts = app.registry_options()
    host = None
    if not app.no_gpu_check:
        host = host_gpus(app.gpu_specs or None, app.cuda_driver, env=os.environ)
    triton_version = consumer_triton_version(app.triton_version)
    with sigterm_as_interrupt():
        report = extract_image(
            ref,
            opts,
            dest,
            host=host,
            triton_version=triton_version,
            force=bool(app.force),
            max_size=app.max_size,
            progress=for_output(bool(app.json)),
            placements=None if workload == "triton" else _planner(workload, dest, host),
            inductor_dir=dest if workload == "inductor" else None,
        )
    if app.json:
        print(render_json(report.to_json()))
    else:
        print(render_report(report, verbose=bool(app.verbose)))
    return EXIT_INCOMPATIBLE if report.nothing_fits else EXIT_OK


def _workload_base(workload: str, directory: str | None) -> Path:
    import getpass

    from tcv.placement import base_dir

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return base_dir(workload, directory, os.environ, user=user, home=os.path.expanduser("~"))


def _planner(workload: str, base: Path, host: Any) -> Any:
    """``--for``: the directories to install into, from the image's layout label."""
    from tcv.cache.layout import parse_label
    from tcv.image.manifest import LABEL_LAYOUT
    from tcv.placement import plan

    def placements(desc: Any) -> Any:
        return plan(workload, base, host, parse_label(desc.labels.get(LABEL_LAYOUT)))

    return placements


def render_report(report: ExtractReport, *, verbose: bool = False) -> str:
    """For people: one row per target (what was installed, present, skipped),
    then each distinct skip reason once with its count, then the summary line.
    ``verbose`` shows the per-kernel table instead (``--json`` always has it)."""
    lines = []
    if verbose:
        rows = _kernel_rows(report)
        if rows:
            lines.append(render_table(["KEY", "KERNEL", "TARGET", "RESULT", "REASON"], rows))
            lines.append("")
    else:
        lines.extend(_target_summary(report))
    counts = (
        f"{len(report.installed) + len(report.replaced)} installed, "
        f"{len(report.present)} already present, {len(report.skipped)} skipped"
    )
    for d in report.destinations:
        gpu = "" if d["gpu"] is None else f" (GPU {d['gpu']})"
        lines.append(
            f"  {d['dest']}{gpu}: {len(d['installed'])} installed, "
            f"{len(d['present'])} already present"
        )
    lines.extend(autotune_lines(report.autotune))
    lines.append(f"{report.image} ({report.digest or 'no digest'}) -> {report.dest}: {counts}")
    if report.nothing_fits:
        lines.append("nothing in the image fits this host — see the reasons above")
    return "\n".join(lines)


def autotune_lines(doc: dict[str, Any] | None) -> list[str]:
    """The image's autotuning results: what was installed, and each skip reason once."""
    if doc is None:
        return []
    device = doc.get("device") or "an unnamed GPU model"
    lines = [
        f"autotune: {len(doc['installed'])} installed, {len(doc['present'])} already present, "
        f"{len(doc['skipped'])} skipped (measured on {device})"
    ]
    reasons: dict[str, int] = {}
    for item in doc["skipped"]:
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {n:>5}  {reason}")
    return lines


def _target_summary(report: ExtractReport) -> list[str]:
    per_target: dict[str, list[int]] = {}
    reasons: dict[str, int] = {}
    for status, keys in ((0, report.installed), (0, report.replaced), (1, report.present)):
        for key in keys:
            per_target.setdefault(_target(report, key) or "-", [0, 0, 0])[status] += 1
    for key, reason in report.skipped:
        per_target.setdefault(_target(report, key) or "-", [0, 0, 0])[2] += 1
        reasons[reason] = reasons.get(reason, 0) + 1
    if not per_target:
        return []
    rows = [[t, *counts] for t, counts in sorted(per_target.items())]
    lines = [render_table(["TARGET", "INSTALLED", "PRESENT", "SKIPPED"], rows)]
    if reasons:
        lines.append("")
        lines.append("skipped:")
        for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {n:>5}  {reason}")
    lines.append("")
    return lines


def _kernel_rows(report: ExtractReport) -> list[list[Any]]:
    rows = []
    for status, keys in (
        ("installed", report.installed),
        ("replaced", report.replaced),
        ("present", report.present),
    ):
        for key in sorted(keys):
            rows.append(_row(report, key, status, None))
    for key, reason in report.skipped:
        rows.append(_row(report, key, "skipped", reason))
    return rows


def _target(report: ExtractReport, key: str) -> str | None:
    entry = report.entries.get(key)
    if entry is None or not entry.backend:
        return None
    text = f"{entry.backend}:{entry.arch}"
    return text + f":{entry.warp_size}" if entry.warp_size is not None else text


def _row(report: ExtractReport, key: str, status: str, reason: str | None) -> list[Any]:
    entry = report.entries.get(key)
    return [key, entry.name if entry else None, _target(report, key), status, reason]
