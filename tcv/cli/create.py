"""``tcv -c -i IMAGE -d DIR``: build a cache image from a Triton cache (docs/spec.md §2).

Called by :class:`tcv.cli.app.Tcv` when ``-c`` is given; the switches are
declared there (image, directories, image_format, split_by_target, push,
tls_verify, authfile, creds, include_launchers, json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tcv.cli.base import sigterm_as_interrupt
from tcv.errors import UsageError
from tcv.output import human_bytes, render_json


def render_human(result: Any) -> str:
    """What a person sees after ``tcv -c``: the reference and digest first."""
    digest = result.digest or "- (an image index gets its digest when pushed)"
    lines = [f"layout:  {result.layout}"] if getattr(result, "layout", None) else []
    lines += [
        f"image:   {result.image}",
        f"digest:  {digest}",
        f"kernels: {result.entries} ({human_bytes(result.bytes)})",
    ]
    for t in result.targets:
        lines.append(f"target:  {t['target']} ({t['entries']} kernels) as {t['image']}")
    lines.extend(autotune_lines(result))
    if result.skipped:
        lines.append(f"skipped: {len(result.skipped)} non-kernel paths (tcv scan DIR says why)")
    if getattr(result, "mount_path", None):
        lines.append(f"mount:   group files name {result.mount_path}/<KEY>/ (read-only mount)")
    if result.pushed:
        lines.append(f"pushed:  {result.image}")
    elif result.kind == "artifact":
        lines.append("pushed:  no (an OCI layout; publish with skopeo copy IMAGE docker://...)")
    else:
        lines.append("pushed:  no (in local storage; publish with --push or buildah push)")
    return "\n".join(lines)


def autotune_lines(result: Any) -> list[str]:
    """What happened to the cache's autotuning results."""
    from tcv.cache.scan import AUTOTUNE_HINT

    tuned = getattr(result, "autotune", None)
    if tuned is not None:
        skipped = [f"  skipped {s['path']}: {s['reason']}" for s in tuned.get("skipped", [])]
        if not tuned["entries"]:
            return ["autotune: none in the cache", *skipped]
        return [f"autotune: {tuned['entries']} results, measured on {tuned['device']}", *skipped]
    left = sum(1 for s in result.skipped if AUTOTUNE_HINT in s["reason"])
    return [f"autotune: {left} results not packed ({AUTOTUNE_HINT})"] if left else []


def run_create(app: Any) -> int:
    from tcv.autotune.pack import AutotuneRequest
    from tcv.create import create_image

    if not app.image:
        raise UsageError("create needs an image name", "pass -i IMAGE (e.g. -i quay.io/org/name)")
    if not app.directories:
        raise UsageError(
            "create needs the Triton cache to pack",
            "pass -d DIR (Triton's default cache is ~/.triton/cache)",
        )
    with sigterm_as_interrupt():
        result = create_image(
            [Path(d).expanduser() for d in app.directories],
            app.image,
            image_format=str(app.image_format).lower(),
            push=bool(app.push),
            registry=app.registry_options(),
            include_launchers=bool(app.include_launchers),
            source=str(app.source).lower() if app.source else None,
            mount_path=app.mount_path,
            split_by_target=bool(app.split_by_target),
            autotune=AutotuneRequest(app.autotune_device) if app.with_autotune else None,
        )
    print(render_json(result.to_json()) if app.json else render_human(result))
    return 0
