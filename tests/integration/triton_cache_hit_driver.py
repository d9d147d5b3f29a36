"""Compile one kernel with the real Triton and say whether it compiled.

Run as ``python triton_cache_hit_driver.py`` with ``TRITON_CACHE_DIR`` set; prints
one JSON line: ``{"cache_hit": bool, "hash": str, "paths": {file: path}}``.
``TCV_PROBE_BLOCK`` (default 256) changes the constexpr, making another kernel.

The signal comes from Triton itself: ``triton.compile`` calls the
``knobs.compilation.listener`` once per compile with ``cache_hit=True`` when it
took the cache-hit branch (the group file was found and every path in it
exists — runtime/cache.py ``get_group``) and ``cache_hit=False`` after running
the compiler pipeline (compiler/compiler.py ``compile``). No timing involved.
The kernel lives in this file because Triton reads a ``@triton.jit`` function's
source from its module file.
"""

from __future__ import annotations

import json
import os

import triton
import triton.language as tl
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource


@triton.jit
def cache_hit_probe(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 2.0, mask=mask)


def main() -> None:
    seen: list[dict[str, object]] = []

    def listener(*, src, metadata, metadata_group, times, cache_hit):  # type: ignore[no-untyped-def]
        seen.append({"cache_hit": cache_hit, "hash": metadata["hash"], "paths": metadata_group})

    knobs.compilation.listener = listener
    src = ASTSource(
        fn=cache_hit_probe,
        signature={"x_ptr": "*fp32", "out_ptr": "*fp32", "n": "i32", "BLOCK": "constexpr"},
        constexprs={"BLOCK": int(os.environ.get("TCV_PROBE_BLOCK", "256"))},
    )
    triton.compile(src, target=GPUTarget("cuda", 90, 32))
    if len(seen) != 1:
        raise SystemExit(f"expected one compilation event, Triton reported {len(seen)}")
    print(json.dumps(seen[0]))


if __name__ == "__main__":
    main()
