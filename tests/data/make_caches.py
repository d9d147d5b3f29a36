"""Make the real Triton cache fixtures under tests/data/caches/ (and the demo cache).

How the fixtures were produced
------------------------------
Every fixture is written by an official `triton` wheel from PyPI compiling the
kernels of `kernels.py` on the CPU for an explicit target, so no GPU is needed:

* each release gets a throwaway venv `/tmp/tcv-fixtures/venv-<version>`
  (`python3 -m venv`, `pip install triton==<version>` plus the pure-Python
  packages that release imports without declaring them);
* `kernels.py` is copied to `/tmp/tcv-fixtures/kernels.py`, because Triton writes
  the kernel's file path into the IR's debug locations and the fixtures must not
  carry a path of the machine that made them;
* a child process of this script runs in that venv with `TRITON_CACHE_DIR` set to
  a fresh `/tmp/tcv-fixtures/cache-<version>`, every other `TRITON_*` variable
  removed (several are part of Triton's cache key; 3.9's unset
  TRITON_DEFAULT_FP_FUSION only warns) and PYTHONHASHSEED=0, and calls that
  release's own compile API for each (kernel, target) of FIXTURES below;
* the kernel entry directories Triton wrote are copied byte for byte into
  `<out>/<fixture>/` (launcher and cuda_utils directories are left out), and
  `<out>/index.json` records what each entry is from Triton's own data: the
  directory it wrote, its metadata, and the compiled kernel's `asm["ptx"]`.

The compile API differs per release (facts from each wheel's compiler/compiler.py):

* 3.3+ (3.9): `triton.compile(ASTSource(fn, signature={name: type},
  constexprs={name: value}), target=GPUTarget(backend, arch, warp_size))`.
* 3.2: `ASTSource(fn, signature={name: type}, constants={name: value})`.
* 3.0/3.1: `ASTSource(fn, signature={index: type}, constants={index: value})`.
* 2.3: the same ASTSource with `target=("cuda", capability)`.
* 2.1/2.2: `triton.compile(fn, signature=..., constants=..., cc=capability)`.

The 2.1-2.3 releases need torch and libcuda only around the compile (see
_without_gpu_runtime). 2.0 is left out: it imports torch at module level and uses
its dtypes (triton/__init__.py, runtime/jit.py), and PyPI's Linux torch is the
multi-GB CUDA build. HIP entries come from 3.9 only: 3.0-3.2 need a ROCm `ld.lld`
that their wheels do not ship.

Re-running gives the same keys and the same text files; the ptxas of some
releases does not write byte-identical cubins twice.

Group files of 3.x hold absolute paths: in the fixtures they point into
`/tmp/tcv-fixtures/cache-<version>/` (index.json `fixtures.*.built_in`), a place
that does not exist where the tests run, which is exactly what an install must
repair (docs/spec.md §4).

Usage (from the repository root; needs PyPI for the venvs and gcc for 2.x):

    python3 tests/data/make_caches.py                    # every fixture + demo cache
    python3 tests/data/make_caches.py --version 3.9 --out DIR
    python3 tests/data/make_caches.py --version 3.2 --python VENV/bin/python

`--out` is the directory holding the fixture directories and index.json (default:
tests/data/caches beside this file). A run replaces the entries of the chosen
versions and keeps the others. The demo cache (examples/vector-add-cache) is
rewritten from the 3.9 fixture when 3.9 is made and `--out` is the default, or
`--example DIR` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNELS = HERE / "kernels.py"
WORK = Path("/tmp/tcv-fixtures")
DEFAULT_OUT = HERE / "caches"
DEFAULT_EXAMPLE = HERE.parent.parent / "examples" / "vector-add-cache"

# Kernel signatures by argument name; BLOCK is the constexpr.
SIGNATURES: dict[str, dict[str, str]] = {
    "add_kernel": {
        "x_ptr": "*fp32",
        "y_ptr": "*fp32",
        "out_ptr": "*fp32",
        "n_elements": "i32",
        "BLOCK": "constexpr",
    },
    "scale_relu_kernel": {
        "x_ptr": "*fp32",
        "out_ptr": "*fp32",
        "scale": "fp32",
        "n_elements": "i32",
        "BLOCK": "constexpr",
    },
}
BLOCK = 1024


@dataclass(frozen=True)
class Build:
    kernel: str
    backend: str
    arch: int | str
    warp_size: int


@dataclass(frozen=True)
class Fixture:
    version: str  # full Triton version installed from PyPI
    directory: str  # fixture directory under --out
    builds: tuple[Build, ...]
    extra_packages: tuple[str, ...] = ()


def _cuda(kernel: str, arch: int) -> Build:
    return Build(kernel, "cuda", arch, 32)


def _hip(kernel: str, arch: str, warp_size: int) -> Build:
    return Build(kernel, "hip", arch, warp_size)


FIXTURES: dict[str, Fixture] = {
    "3.9": Fixture(
        "3.9.0",
        "triton-3.9",
        (
            _cuda("add_kernel", 80),
            _cuda("add_kernel", 90),
            _cuda("add_kernel", 100),
            _hip("add_kernel", "gfx942", 64),
            _hip("add_kernel", "gfx1100", 32),
            _cuda("scale_relu_kernel", 90),
            _hip("scale_relu_kernel", "gfx942", 64),
        ),
    ),
    "3.2": Fixture(
        "3.2.0",
        "triton-3.2",
        (
            _cuda("add_kernel", 90),
            _cuda("scale_relu_kernel", 80),
        ),
    ),
    "3.0": Fixture(
        "3.0.0",
        "triton-3.0",
        (_cuda("add_kernel", 80), _cuda("add_kernel", 90)),
    ),
    # The 2.x releases share one fixture directory: md5 keys never collide, and a
    # cache that outlived several upgrades looks just like this.
    # 2.2 and 2.3 import numpy without declaring it.
    "2.3": Fixture("2.3.1", "triton-2.x", (_cuda("add_kernel", 80),), ("setuptools", "numpy")),
    "2.2": Fixture("2.2.0", "triton-2.x", (_cuda("add_kernel", 80),), ("setuptools", "numpy")),
    "2.1": Fixture("2.1.0", "triton-2.x", (_cuda("add_kernel", 80),), ("setuptools",)),
}

# The demo cache shipped in examples/: one kernel for two NVIDIA archs and one AMD.
EXAMPLE_FROM = "3.9"
EXAMPLE_BUILDS = (
    _cuda("add_kernel", 80),
    _cuda("add_kernel", 90),
    _hip("add_kernel", "gfx942", 64),
)

RECORDS_MARK = "tcv-fixture-records: "
PTX_VERSION = re.compile(r"^\s*\.version\s+(\d+)\.(\d+)", re.MULTILINE)


# --------------------------------------------------------------------------- child


def _load_kernels():  # type: ignore[no-untyped-def]
    # Triton records the kernel's file path in the IR's debug locations: load the
    # copy under WORK so no path of the machine that made the fixtures is kept.
    spec = importlib.util.spec_from_file_location("tcv_fixture_kernels", WORK / KERNELS.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _compile_3_3(fn, build: Build):  # type: ignore[no-untyped-def]
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=fn, signature=SIGNATURES[build.kernel], constexprs={"BLOCK": BLOCK})
    return triton.compile(src, target=GPUTarget(build.backend, build.arch, build.warp_size))


def _compile_3_2(fn, build: Build):  # type: ignore[no-untyped-def]
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=fn, signature=SIGNATURES[build.kernel], constants={"BLOCK": BLOCK})
    return triton.compile(src, target=GPUTarget(build.backend, build.arch, build.warp_size))


def _positional(kernel: str) -> tuple[dict[int, str], dict[int, int]]:
    """Signature and constants keyed by argument index, as 2.x-3.1 take them."""
    names = list(SIGNATURES[kernel])
    signature = {i: t for i, t in enumerate(SIGNATURES[kernel].values()) if t != "constexpr"}
    return signature, {names.index("BLOCK"): BLOCK}


def _compile_3_0(fn, build: Build):  # type: ignore[no-untyped-def]
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, constants = _positional(build.kernel)
    src = ASTSource(fn=fn, signature=signature, constants=constants)
    return triton.compile(src, target=GPUTarget(build.backend, build.arch, build.warp_size))


def _compile_2_3(fn, build: Build):  # type: ignore[no-untyped-def]
    import triton
    from triton.compiler import ASTSource

    signature, constants = _positional(build.kernel)
    src = ASTSource(fn=fn, signature=signature, constants=constants)
    # 2.3's CUDABackend takes the target as a (device_type, capability) tuple.
    return triton.compile(src, target=(build.backend, build.arch))


def _compile_2_1(fn, build: Build):  # type: ignore[no-untyped-def]
    import triton

    signature, constants = _positional(build.kernel)
    return triton.compile(fn, signature=signature, constants=constants, num_warps=4, cc=build.arch)


COMPILERS = {
    "3.9": _compile_3_3,
    "3.2": _compile_3_2,
    "3.0": _compile_3_0,
    "2.3": _compile_2_3,
    "2.2": _compile_2_1,
    "2.1": _compile_2_1,
}


# Driver calls the 2.1-2.3 launcher stubs and cuda_utils link against (their
# compiler/make_launcher.py and runtime/backends/cuda.c; cuda.h maps some to _v2).
STUB_CUDA_CALLS = (
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuDeviceGet",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuFuncGetAttribute",
    "cuFuncSetAttribute",
    "cuFuncSetCacheConfig",
    "cuGetErrorString",
    "cuLaunchKernel",
    "cuLaunchKernelEx",
    "cuMemAlloc",
    "cuMemAlloc_v2",
    "cuMemFree",
    "cuMemFree_v2",
    "cuMemcpyHtoD",
    "cuMemcpyHtoD_v2",
    "cuModuleGetFunction",
    "cuModuleLoadData",
    "cuModuleUnload",
    "cuOccupancyMaxActiveClusters",
    "cuPointerGetAttribute",
    "cuTensorMapEncodeTiled",
)


def stub_libcuda(work: Path) -> Path:
    """Build the stand-in libcuda.so the 2.x launcher stubs link and load against.

    Each driver call answers CUDA_ERROR_NO_DEVICE (100); none is ever called,
    since nothing is launched. Returns the directory holding it.
    """
    stub_dir = work / "stub-libcuda"
    stub_dir.mkdir(parents=True, exist_ok=True)
    source = "".join(f"int {name}(void) {{ return 100; }}\n" for name in STUB_CUDA_CALLS)
    (stub_dir / "libcuda.c").write_text(source)
    argv = ["gcc", "-shared", "-fPIC", "-o", "libcuda.so", "libcuda.c"]
    subprocess.run(argv, check=True, cwd=stub_dir)
    return stub_dir


def _without_gpu_runtime() -> None:
    """Let a 2.x release compile on a machine with neither torch nor libcuda.

    2.1/2.2 ask `torch.version.hip` at import time (common/build.py is_hip), 2.3
    asks `torch.cuda.is_available()` for its driver (runtime/driver.py), and
    2.1-2.3 build a launcher stub linked to libcuda.so and import it, before or
    after compiling (compiler/make_launcher.py). None of it touches the kernel
    entry: a stand-in module answers "CUDA, not ROCm" (any device query
    raises), and the parent points TRITON_LIBCUDA_PATH and LD_LIBRARY_PATH at
    stub_libcuda() (2.1 only asks ldconfig, so its lookup is redirected here).
    Launcher and cuda_utils land in directories of their own, left out of the
    fixture like every launcher (docs/spec.md §4).
    """
    import types

    def no_device(*_args: object) -> None:
        raise RuntimeError("no GPU here: the target is passed explicitly")

    torch = types.ModuleType("torch")
    torch.version = types.SimpleNamespace(hip=None, cuda="12.1")  # type: ignore[attr-defined]
    # 2.3 picks its driver class from torch.cuda.is_available() once compiled.
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: True,
        get_device_capability=no_device,
        current_device=no_device,
        set_device=no_device,
        current_stream=no_device,
    )
    sys.modules.setdefault("torch", torch)
    import triton.common.build as build

    stub_dir = os.environ["TRITON_LIBCUDA_PATH"]
    build.libcuda_dirs = lambda: [stub_dir]  # type: ignore[attr-defined]


def _ptx_version(asm: dict) -> int | None:  # type: ignore[type-arg]
    ptx = asm.get("ptx") if hasattr(asm, "get") else None
    if ptx is None:
        return None
    if isinstance(ptx, bytes):
        ptx = ptx.decode()
    match = PTX_VERSION.search(ptx)
    return int(match.group(1)) * 10 + int(match.group(2)) if match else None


def _target_of(meta: dict) -> tuple[str, str, int]:  # type: ignore[type-arg]
    """(backend, arch, warp_size) from one metadata file, in each Triton shape."""
    target = meta.get("target")
    if isinstance(target, dict) and "backend" in target:  # 3.x
        return target["backend"], str(target["arch"]), int(target["warp_size"])
    if isinstance(target, list):  # 2.3: ["cuda", 80]
        return target[0], str(target[1]), int(meta.get("warp_size", 32))
    if isinstance(target, dict) and "capability" in target:  # 2.2
        return "cuda", str(target["capability"]), 32
    return "cuda", str(meta["arch"]), 32  # 2.1


def child(version: str, cache: Path) -> None:
    """Compile every build of `version` into `cache` and print the index records."""
    if version.startswith("2."):
        _without_gpu_runtime()
    import triton

    if not triton.__version__.startswith(FIXTURES[version].version):
        sys.exit(
            f"this interpreter has triton {triton.__version__}, not "
            f"{FIXTURES[version].version}: pass --python of a matching venv"
        )
    compile_one = COMPILERS[version]
    kernels = _load_kernels()
    records = []
    for build in FIXTURES[version].builds:
        before = {p.name for p in cache.iterdir()} if cache.exists() else set()
        with warnings.catch_warnings():
            # 3.9 warns that its fp-fusion default will change; setting
            # TRITON_DEFAULT_FP_FUSION instead would change every cache key.
            warnings.simplefilter("ignore")
            compiled = compile_one(getattr(kernels, build.kernel), build)
        new = sorted({p.name for p in cache.iterdir()} - before)
        # Only the directory holding the metadata is the kernel entry; 2.x also
        # writes its launcher stub into a directory of its own.
        entries = [n for n in new if (cache / n / f"{build.kernel}.json").is_file()]
        if len(entries) != 1:
            sys.exit(f"{build}: expected one new cache entry, got {new}")
        key = entries[0]
        entry = cache / key
        meta_path = entry / f"{build.kernel}.json"
        meta = json.loads(meta_path.read_text())
        backend, arch, warp_size = _target_of(meta)
        records.append(
            {
                "key": key,
                # Triton's kernel name; 2.x mangles it (add_kernel_0123).
                "name": meta.get("name", build.kernel),
                # The stem of the entry's file names (<stem>.json, __grp__<stem>.json).
                "stem": build.kernel,
                "backend": backend,
                "arch": arch,
                "warp_size": warp_size,
                "triton_version": triton.__version__,
                "ptx_version": _ptx_version(compiled.asm),
                "hash": meta.get("hash"),
                "num_warps": meta.get("num_warps"),
                "files": sorted(p.name for p in entry.iterdir()),
            }
        )
    # Old releases print to stdout while compiling: mark our line.
    print(RECORDS_MARK + json.dumps(records))


# -------------------------------------------------------------------------- parent


def key_encoding(version: str) -> str:
    """The KEY encoding docs/spec.md §4 gives for a Triton version."""
    major, minor = (int(x) for x in version.split(".")[:2])
    if major < 3:
        return "md5-hex"
    if minor <= 1:
        return "sha256-hex"
    if minor == 2:
        return "sha256-base64url"
    return "sha256-base32"


def ensure_venv(fixture: Fixture) -> Path:
    venv = WORK / f"venv-{fixture.version}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    packages = [f"triton=={fixture.version}", *fixture.extra_packages]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return python


def run_child(python: Path, version: str, cache: Path) -> list[dict]:  # type: ignore[type-arg]
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRITON_")}
    env["TRITON_CACHE_DIR"] = str(cache)
    # 2.3 puts str(frozenset(env vars)) into its key, whose order follows the
    # string hash seed: pin it so a re-run gives the same keys.
    env["PYTHONHASHSEED"] = "0"
    if version.startswith("2."):
        stub_dir = str(stub_libcuda(WORK))
        env["TRITON_LIBCUDA_PATH"] = stub_dir
        env["LD_LIBRARY_PATH"] = stub_dir
    out = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--child", version, "--cache", str(cache)],
        check=True,
        env=env,
        stdout=subprocess.PIPE,
        cwd=WORK,
    )
    lines = [ln for ln in out.stdout.decode().splitlines() if ln.startswith(RECORDS_MARK)]
    return json.loads(lines[-1][len(RECORDS_MARK) :])


def load_index(out: Path) -> dict:  # type: ignore[type-arg]
    path = out / "index.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"fixtures": {}, "entries": []}


def write_index(out: Path, index: dict) -> None:  # type: ignore[type-arg]
    index["entries"].sort(key=lambda e: (e["fixture"], e["triton_version"], e["name"], e["key"]))
    index["fixtures"] = {
        name: {"built_in": dict(sorted(info["built_in"].items()))}
        for name, info in sorted(index["fixtures"].items())
    }
    (out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=False) + "\n")


def generate(version: str, out: Path, python: Path | None) -> list[dict]:  # type: ignore[type-arg]
    fixture = FIXTURES[version]
    python = python or ensure_venv(fixture)
    cache = WORK / f"cache-{fixture.version}"
    records = run_child(python, version, cache)
    index = load_index(out)
    dest = out / fixture.directory
    # Drop what an earlier run of this version put there; other versions may share dest.
    for old in index["entries"]:
        if old["fixture"] == fixture.directory and old["triton_version"] == fixture.version:
            shutil.rmtree(dest / old["key"], ignore_errors=True)
    index["entries"] = [
        e
        for e in index["entries"]
        if not (e["fixture"] == fixture.directory and e["triton_version"] == fixture.version)
    ]
    dest.mkdir(parents=True, exist_ok=True)
    for record in records:
        shutil.copytree(cache / record["key"], dest / record["key"])
        index["entries"].append(
            {"fixture": fixture.directory, "key_encoding": key_encoding(fixture.version), **record}
        )
    info = index["fixtures"].setdefault(fixture.directory, {"built_in": {}})
    info["built_in"][fixture.version] = str(cache)
    write_index(out, index)
    return records


def write_example(out: Path, example: Path) -> None:
    """Copy the demo's entries out of the 3.9 fixture (one kernel, three targets)."""
    index = load_index(out)
    fixture = FIXTURES[EXAMPLE_FROM]
    wanted = {(b.kernel, b.backend, str(b.arch), b.warp_size) for b in EXAMPLE_BUILDS}
    picked = [
        e
        for e in index["entries"]
        if e["fixture"] == fixture.directory
        and (e["stem"], e["backend"], e["arch"], e["warp_size"]) in wanted
    ]
    if len(picked) != len(wanted):
        sys.exit(f"the {fixture.directory} fixture lacks some demo entries: make it first")
    if example.exists():
        shutil.rmtree(example)
    example.mkdir(parents=True)
    for e in picked:
        shutil.copytree(out / fixture.directory / e["key"], example / e["key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", choices=[*FIXTURES, "all"], default="all")
    parser.add_argument("--out", type=Path, help="directory of fixture dirs and index.json")
    parser.add_argument("--python", type=Path, help="interpreter with the wanted triton")
    parser.add_argument("--example", type=Path, help="where to write the demo cache")
    parser.add_argument("--child", choices=list(FIXTURES), help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cache)
        return
    out = (args.out or DEFAULT_OUT).resolve()
    example = args.example or (DEFAULT_EXAMPLE if args.out is None else None)
    versions = list(FIXTURES) if args.version == "all" else [args.version]
    if args.python and len(versions) != 1:
        parser.error("--python needs a single --version")
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(KERNELS, WORK / KERNELS.name)
    out.mkdir(parents=True, exist_ok=True)
    for version in versions:
        records = generate(version, out, args.python)
        for r in records:
            print(f"{version}: {r['key']} {r['name']} {r['backend']}:{r['arch']}:{r['warp_size']}")
    if example is not None and EXAMPLE_FROM in versions:
        write_example(out, example.resolve())
        print(f"demo cache: {example}")


if __name__ == "__main__":
    main()
