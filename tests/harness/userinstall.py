"""An install of this checkout that other users can run, wherever the checkout is.

The rootless tests and the tests that drop to ``nobody`` run ``tcv`` as another
user. A checkout under ``/root`` (mode 0700) is out of their reach, and so is
its ``.venv``. When that is so, this makes a private copy for the session in
``/var/tmp``: a virtualenv on the same base interpreter (Debian's, readable by
all), the runtime dependencies copied from this venv's site-packages, the
``tcv`` package and the hook, and ``tcv``/``tcv-build`` scripts — everything
world-readable, nothing writable by the other user. When the checkout is
reachable already, its own venv is used as it is.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME_DISTS = ("plumbum", "cffi", "pycparser", "pyudev", "sh", "zstandard")
SCRIPTS = {"tcv": "tcv.cli.app", "tcv-build": "tcv.cli.build"}
PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"


@dataclass(frozen=True)
class UserInstall:
    prefix: Path  # a venv
    copied: bool  # False: this checkout's own venv

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def tcv(self) -> Path:
        return self.prefix / "bin" / "tcv"

    def remove(self) -> None:
        if self.copied:
            shutil.rmtree(self.prefix, ignore_errors=True)


def reachable_by_others(path: Path) -> bool:
    """Whether a user who is neither the owner nor in the group can reach
    ``path``: every directory above it searchable by others, it readable."""
    path = path.resolve()
    for parent in path.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


def user_install() -> UserInstall:
    """This checkout as other users can run it (see the module docstring)."""
    venv = Path(sys.prefix)
    tcv = venv / "bin" / "tcv"
    if all(reachable_by_others(p) for p in (REPO / "tcv", tcv, Path(sys.executable))):
        return UserInstall(venv, copied=False)
    prefix = Path(tempfile.mkdtemp(prefix="tcv-user-install-", dir="/var/tmp"))
    try:
        _build(prefix)
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    return UserInstall(prefix, copied=True)


def _build(prefix: Path) -> None:
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    subprocess.run(
        [str(base), "-m", "venv", "--without-pip", "--clear", str(prefix)],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [
                str(prefix / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    here = Path(sysconfig.get_path("purelib"))
    for name in RUNTIME_DISTS:
        for f in importlib.metadata.distribution(name).files or ():
            src = here / f
            if src.is_file() and "__pycache__" not in f.parts:
                dst = site / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    shutil.copytree(REPO / "tcv", site / "tcv", ignore=shutil.ignore_patterns("__pycache__"))
    hook = prefix / "libexec" / "tcv" / "tcv-hook"
    hook.parent.mkdir(parents=True)
    shutil.copy2(REPO / "libexec" / "tcv-hook", hook)
    hook.write_text(hook.read_text().replace("#!/usr/bin/env python3", f"#!{prefix}/bin/python", 1))
    for script, module in SCRIPTS.items():
        path = prefix / "bin" / script
        path.write_text(
            f"#!{prefix}/bin/python\nimport sys\nfrom {module} import main\nsys.exit(main())\n"
        )
    for root, _dirs, files in os.walk(prefix):
        os.chmod(root, 0o755)
        for f in files:
            p = Path(root, f)
            if not p.is_symlink():
                os.chmod(p, 0o755 if os.access(p, os.X_OK) or p.parent.name == "bin" else 0o644)
    os.chmod(hook, 0o755)
