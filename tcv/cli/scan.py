"""``tcv scan``: list the kernels of a local Triton cache and their targets."""

from __future__ import annotations

from pathlib import Path

from plumbum import cli

from tcv.cache.kernel import KernelEntry
from tcv.cli.base import TcvApplication
from tcv.cli.options import JsonOption
from tcv.output import human_bytes, render_json, render_table

_KEY_WIDTH = 16


def _target(e: KernelEntry) -> str:
    if not e.backend:
        return "host (launcher)"
    warp = "?" if e.warp_size is None else str(e.warp_size)
    return f"{e.backend}:{e.arch}:{warp}"


def _ptx(version: int | None) -> str | None:
    return None if version is None else f"{version // 10}.{version % 10}"


def _short(key: str) -> str:
    return key if len(key) <= _KEY_WIDTH else key[: _KEY_WIDTH - 1] + "…"


class Scan(TcvApplication, JsonOption):
    """List the kernels of a local Triton cache and their targets.

    DIR is a Triton cache root, the directory holding one KEY directory per
    compiled kernel (default: $TRITON_CACHE_DIR, else $TRITON_HOME/.triton/cache,
    else ~/.triton/cache — the order Triton uses), or a directory that holds
    such roots deeper: an Inductor cache directory (DIR/triton/<device>/) or a
    vLLM cache tree (…/rank_<r>_<dp>/triton_cache/); the first line then says
    which it is and where the kernels are. Every file is read and hashed;
    nothing is written.

    The table shows each kernel's key (shortened), name, target
    (backend:arch/warp size), the Triton version that compiled it, its PTX ISA
    (CUDA only), file count and size; then whatever was skipped, with the
    reason: launcher/utils .so directories, autotuning results, tmp.pid_*
    leftovers and lock files, empty directories, missing or corrupt metadata,
    files that are not regular files, symlinks leading out of DIR.

    With --json the output is {"root", "entries": [{"key", "name", "backend",
    "arch", "warp_size", "triton_version", "ptx_version", "files", "bytes"}],
    "skipped": [{"path", "reason"}]}, plus "layout": {"kind", "roots": [{"path",
    "device"}]} when the kernels were found deeper than DIR; arch is a string, ptx_version Triton's
    integer form (84 for PTX ISA 8.4) or null, paths are relative to root.

    Exit status: 0 when DIR was scanned (even with nothing in it), 3 when DIR
    does not exist or is not a directory.
    """

    USAGE = "    tcv scan [DIR] [--from triton|inductor|vllm] [--json] [--include-launchers]\n"

    include_launchers = cli.Flag(
        ["--include-launchers"],
        help="list the host-specific launcher/utils .so directories as entries instead of "
        "skipping them",
    )

    source = cli.SwitchAttr(
        ["--from"],
        cli.Set("triton", "inductor", "vllm", case_sensitive=False),
        default=None,
        argname="LAYOUT",
        help="the layout of DIR: triton (DIR/<KEY>/), inductor (DIR/triton/<device>/<KEY>/) "
        "or vllm (…/rank_<r>_<dp>/triton_cache/<KEY>/); default: detect it",
    )

    # No annotation on DIR: plumbum would try to convert with "str | None".
    def main(self, directory=None) -> int:
        from tcv.cache.scan import default_cache_dir, scan_layout

        root = Path(directory) if directory is not None else default_cache_dir()
        source = str(self.source).lower() if self.source else None
        result = scan_layout(root, source=source, include_launchers=self.include_launchers)
        if self.json:
            print(render_json(result.to_json()))
            return 0
        if result.layout is not None and result.layout.nested:
            print(result.layout.describe(str(root)))
        if result.entries:
            rows = [
                (
                    _short(e.key),
                    e.name,
                    _target(e),
                    e.triton_version,
                    _ptx(e.ptx_version),
                    len(e.files),
                    human_bytes(e.bytes),
                )
                for e in result.entries
            ]
            print(render_table(("KEY", "NAME", "TARGET", "TRITON", "PTX", "FILES", "SIZE"), rows))
        else:
            print(f"no kernels in {root}")
        for s in result.skipped:
            print(f"skipped {s.path}: {s.reason}")
        n = len(result.entries)
        print(
            f"{n} kernel{'' if n == 1 else 's'}, {human_bytes(result.total_bytes)}, "
            f"{len(result.skipped)} skipped, in {root}"
        )
        return 0
