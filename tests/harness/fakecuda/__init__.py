"""A stand-in ``libcuda.so.1`` built from C for hosts without an NVIDIA driver.

``build(directory)`` compiles ``fakecuda.c`` with the system C compiler into
``directory/libcuda.so.1`` (soname ``libcuda.so.1``) and returns the directory,
ready to be put on ``LD_LIBRARY_PATH`` of a child process: TCV loads libcuda by
soname, so the loader's normal search finds the stand-in. The scenario is chosen
with ``FAKECUDA_SCENARIO`` in that process's environment (see fakecuda.c).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("fakecuda.c")
SONAME = "libcuda.so.1"


def build(directory: Path) -> Path:
    """Compile the stand-in into ``directory`` and return ``directory``."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler: apt-get install gcc")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            cc,
            "-shared",
            "-fPIC",
            "-O1",
            f"-Wl,-soname,{SONAME}",
            "-o",
            str(directory / SONAME),
            str(SOURCE),
        ],
        check=True,
        capture_output=True,
    )
    return directory
