"""Pre-parsed cffi declarations for the driver bindings (cffi's out-of-line ABI mode).

Parsing a ``cdef`` at run time needs pycparser and costs tens of milliseconds,
more than the whole rest of GPU discovery. cffi can emit the parsed declarations
as a small Python module that loads with ``_cffi_backend`` alone; no C compiler
is involved (the library is still opened with ``dlopen`` at run time). The
emitted modules ``_cuda_ffi.py`` and ``_hip_ffi.py`` are committed; regenerate
them after changing a ``CDEF`` with::

    python -m tcv.gpu.ffibuild

and tests/unit/test_gpu_ffibuild.py fails while they are out of date (it compares
syntax trees, so reformatting the emitted files does not matter).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The emitted lines are long byte strings: keep the linter out of them.
HEADER = (
    "# ruff: noqa\n# Emitted by tcv/gpu/ffibuild.py from the CDEF of the binding; do not edit.\n"
)


def modules() -> dict[str, str]:
    """Module name -> cdef, for every binding."""
    from tcv.gpu import cuda, hip

    return {"_cuda_ffi": cuda.CDEF, "_hip_ffi": hip.CDEF}


def emit(module: str, cdef: str) -> str:
    """The Python source cffi emits for ``cdef`` as module ``tcv.gpu.<module>``."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(f"tcv.gpu.{module}", None)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{module}.py"
        with contextlib.redirect_stdout(io.StringIO()):  # cffi prints "generating ..."
            ffi.emit_python_code(str(out))
        return HEADER + out.read_text()


def main() -> None:
    for module, cdef in modules().items():
        (HERE / f"{module}.py").write_text(emit(module, cdef))
        print(f"wrote tcv/gpu/{module}.py")


if __name__ == "__main__":
    main()
