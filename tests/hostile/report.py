"""The results table of docs/security.md from a ``TCV_HOSTILE_RESULTS`` file.

python -m tests.hostile.report RESULTS.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def render(results: list[dict]) -> str:
    counts = Counter(
        "refused (exit 1, one line)" if r["expected"] == "refuse" else "installed the good kernels"
        for r in results
    )
    lines = ["| outcome | cases |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    lines.append(f"| **all** | **{len(results)}** |")
    worst_t = max(results, key=lambda r: r["seconds"])
    worst_m = max(results, key=lambda r: r["peak_rss_mib"])
    lines += [
        "",
        f"Slowest case: {worst_t['case']} ({worst_t['seconds']} s). Largest peak RSS: "
        f"{worst_m['case']} ({worst_m['peak_rss_mib']} MiB), under an address-space limit "
        "of 1 GiB.",
        "",
        "| case | attack | outcome | exit | s | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        outcome = "refused" if r["expected"] == "refuse" else "installed the good kernels"
        why = r["why"].replace("|", "\\|")
        lines.append(
            f"| `{r['case']}` | {why} | {outcome} | {r['exit']} | {r['seconds']} "
            f"| {r['peak_rss_mib']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
