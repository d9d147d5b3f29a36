"""The committed pre-parsed cffi modules match the bindings' declarations."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tcv.gpu import ffibuild

MODULES = sorted(ffibuild.modules())


@pytest.mark.parametrize("module", [pytest.param(m, id=m) for m in MODULES])
def test_committed_module_is_up_to_date(module):
    committed = (Path(ffibuild.__file__).parent / f"{module}.py").read_text()
    fresh = ffibuild.emit(module, ffibuild.modules()[module])
    # Syntax trees, not text: a formatter may restyle the committed file.
    assert ast.dump(ast.parse(committed)) == ast.dump(ast.parse(fresh)), (
        f"tcv/gpu/{module}.py is stale: run python -m tcv.gpu.ffibuild"
    )


def test_cuda_module_declares_the_driver_types():
    from tcv.gpu._cuda_ffi import ffi

    assert ffi.sizeof("CUuuid") == 16
    assert ffi.typeof("CUresult").cname == "int"


def test_hip_module_declares_the_runtime_types():
    from tcv.gpu._hip_ffi import ffi

    assert ffi.typeof("hipError_t").cname == "int"
