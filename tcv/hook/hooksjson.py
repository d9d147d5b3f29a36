"""The hooks.d JSON that tells podman and CRI-O when and how to run the hook.

Schema 1.0.0 of containers/common ``pkg/hooks`` (oci-hooks(5)): ``hook`` is an
OCI hook (``path``, ``args``, ``env``, ``timeout``), ``when.annotations``
holds regexes matched against the container's annotations, ``stages`` lists
the OCI stages. Unanchored regexes match substrings, so the annotation name is
anchored (docs/spec.md §7). The runtime gives the hook no environment but ``env``
here: the GPU override, the store and ``PATH`` (for skopeo) must be written in.

Render (pure) then write, as STYLE #2 asks.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import tcv
from tcv import fs
from tcv.errors import UsageError
from tcv.hook.settings import DEFAULT_TIMEOUT

SCHEMA_VERSION = "1.0.0"
# prestart mounts the cache (podman 5 runs prestart hooks as createRuntime);
# poststop removes the container's upper layer.
STAGES = ("prestart", "poststop")
ANNOTATION_REGEX = r"^cache\.triton\.image/inject$"
FILE_NAME = "tcv.json"
DEFAULT_HOOKS_DIR = "/etc/containers/oci/hooks.d"
INSTALLED_HOOK = Path("libexec") / "tcv" / "tcv-hook"  # under sys.prefix (setup.cfg data_files)
SOURCE_HOOK = Path("libexec") / "tcv-hook"  # beside the package in a checkout / editable install
# The runtime kills the hook at the JSON's timeout; the hook stops itself earlier.
RUNTIME_GRACE = 5


def render_hook_config(
    *,
    interpreter: str,
    hook_script: str,
    env: Mapping[str, str],
    timeout: int = DEFAULT_TIMEOUT,
) -> dict[str, object]:
    """The hooks.d document. ``path`` is the Python that has ``tcv`` installed and
    ``args`` (argv, including argv[0]) run the hook script with it, so the hook
    works from a virtualenv as well as from a system install. argv[0] is the
    interpreter's own path: Python finds its virtualenv (pyvenv.cfg) from argv[0],
    and a bare name would lose it."""
    env_lines = [f"{k}={v}" for k, v in sorted(env.items())]
    return {
        "version": SCHEMA_VERSION,
        "hook": {
            "path": interpreter,
            "args": [interpreter, hook_script],
            "env": env_lines,
            "timeout": timeout + RUNTIME_GRACE,
        },
        "when": {"annotations": {ANNOTATION_REGEX: ".+"}},
        "stages": list(STAGES),
    }


def rootless_env(uid: int, env: Mapping[str, str]) -> dict[str, str]:
    """What a rootless hook needs to find the user's containers-storage: rootless
    podman runs hooks as root of its user namespace with no environment, so
    skopeo (containers/storage pkg/unshare) must be told it is in a configured
    user namespace of user ``uid``, and where that user's home is."""
    out = {"_CONTAINERS_USERNS_CONFIGURED": "done", "_CONTAINERS_ROOTLESS_UID": str(uid)}
    for name in ("HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        if env.get(name):
            out[name] = env[name]
    return out


def render_json(config: Mapping[str, object]) -> str:
    return json.dumps(config, indent=2) + "\n"


def find_hook_script() -> Path:
    """The installed ``tcv-hook``: ``<prefix>/libexec/tcv/tcv-hook`` after ``pip
    install``, else ``libexec/tcv-hook`` beside the package (a checkout, or
    ``pip install -e``)."""
    candidates = [
        Path(sys.prefix) / INSTALLED_HOOK,
        Path(tcv.__file__).resolve().parent.parent / SOURCE_HOOK,
    ]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise UsageError(
        "cannot find the tcv-hook executable (looked in "
        + ", ".join(str(p) for p in candidates)
        + ")",
        "reinstall tcv (pip install .) so that libexec/tcv/tcv-hook is installed",
    )


def interpreter() -> str:
    """This Python, without resolving a virtualenv's symlink (which would lose the venv)."""
    return os.path.abspath(sys.executable)


def write_hook_config(hooks_dir: Path, text: str) -> Path:
    """Write ``tcv.json`` into ``hooks_dir`` atomically (podman re-reads hooks.d
    when it changes: never let it see half a file)."""
    try:
        hooks_dir.mkdir(parents=True, exist_ok=True)
        target = hooks_dir / FILE_NAME
        fs.write_atomic(target, text, mode=0o644, fsync=True)
    except OSError as err:
        raise UsageError(
            f"cannot write the hook configuration into {hooks_dir}: {err.strerror}",
            "run as root, or pass --hooks-dir with a directory you can write "
            "(and give it to podman --hooks-dir)",
        ) from None
    return target
