"""``tcv -e -i IMAGE``: install the image's kernels that fit this host (SPEC §2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tcv.cli.base import sigterm_as_interrupt
from tcv.errors import EXIT_INCOMPATIBLE, EXIT_OK, UsageError
from tcv.extract import ExtractReport, extract_image
from tcv.imageref import parse_image_ref
from tcv.output import render_json, render_table


def run_extract(app: Any) -> int:
    """Run ``tcv -e`` with the switches of the top-level ``Tcv`` application."""
    from tcv.cache import default_cache_dir
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
    ref = parse_image_ref(app.image)
    dest = Path(app.directory).expanduser() if app.directory else default_cache_dir(os.environ)
    # Group files name absolute paths: a relative DEST would make every kernel miss
    # as soon as Triton runs from another directory.
    dest = Path(os.path.abspath(dest))
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
        )
    print(render_json(report.to_json()) if app.json else render_report(report))
    return EXIT_INCOMPATIBLE if report.nothing_fits else EXIT_OK


def render_report(report: ExtractReport) -> str:
    """The table for people: one row per kernel, then one summary line."""
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
    lines = []
    if rows:
        lines.append(render_table(["KEY", "KERNEL", "TARGET", "RESULT", "REASON"], rows))
        lines.append("")
    counts = (
        f"{len(report.installed) + len(report.replaced)} installed, "
        f"{len(report.present)} already present, {len(report.skipped)} skipped"
    )
    lines.append(f"{report.image} ({report.digest or 'no digest'}) -> {report.dest}: {counts}")
    if report.nothing_fits:
        lines.append("nothing in the image fits this host — see the reasons above")
    return "\n".join(lines)


def _row(report: ExtractReport, key: str, status: str, reason: str | None) -> list[Any]:
    entry = report.entries.get(key)
    target = None
    if entry is not None and entry.backend:
        target = f"{entry.backend}:{entry.arch}"
        if entry.warp_size is not None:
            target += f":{entry.warp_size}"
    return [key, entry.name if entry else None, target, status, reason]
