"""``tcv hook``: manage the OCI runtime hook that injects kernels at container start."""

from __future__ import annotations

from pathlib import Path

from plumbum import cli

from tcv.cli.base import TcvApplication
from tcv.cli.options import (
    JsonOption,
    cuda_driver_switch,
    gpu_switch,
    signature_policy_switch,
    tls_verify_switch,
)
from tcv.errors import UsageError


class Hook(TcvApplication):
    """Manage the OCI runtime hook that injects kernels at container start.

    A container asks for kernels with the annotation
    cache.triton.image/inject=IMAGE; the hook (libexec/tcv-hook, run by podman
    or CRI-O from a hooks.d JSON file) mounts a read-only view of the kernels its
    GPUs and its Triton can use at its Triton cache path before it starts, with a
    writable layer on top. See 'tcv hook install --help', 'tcv hook store --help'
    and docs/hook.md.
    """

    USAGE = (
        "    tcv hook install [--hooks-dir DIR] [options]\n    tcv hook show [options]\n"
        "    tcv hook store [list|prune] [options]\n"
    )

    def main(self, *args: str) -> int:
        if args:
            raise UsageError(
                f"unknown hook command {args[0]!r}", "run 'tcv hook --help' for the commands"
            )
        if not self.nested_command:
            self.help()
        return 0


class _HookConfigOptions(cli.Application):
    """Switches that go into the hook's environment in the hooks.d JSON."""

    gpu_specs = gpu_switch(
        "inject for this accelerator instead of detecting the host's: cuda:90, "
        "cuda:90:32, hip:gfx942, hip:gfx1100:32 (repeatable; written as TCV_GPUS into the "
        "hook's environment — the hook never sees the caller's environment)"
    )
    cuda_driver = cuda_driver_switch(
        "CUDA version the host driver supports, for the PTX rule (TCV_CUDA_DRIVER)"
    )
    store = cli.SwitchAttr(
        ["--store"],
        str,
        argname="DIR",
        default=None,
        help="the hook's store of unpacked images (default /var/lib/tcv/store for root, "
        "else $XDG_DATA_HOME/tcv/store, which is then written in)",
    )
    log_file = cli.SwitchAttr(
        ["--log"],
        str,
        argname="FILE|syslog",
        default=None,
        help="where the hook logs (default syslog when /dev/log exists, else STORE/hook.log)",
    )
    pull = cli.SwitchAttr(
        ["--pull"],
        cli.Set("missing", "never", case_sensitive=False),
        default=None,
        help="fetch the cache image from its registry when it is not in local storage "
        "(missing, the default) or never",
    )
    tls_verify = tls_verify_switch(
        "require HTTPS and valid certificates when the hook pulls (default true)", default=None
    )
    store_max = cli.SwitchAttr(
        ["--store-max-size"],
        str,
        argname="SIZE",
        default=None,
        help="keep the store under SIZE (e.g. 20G): after a start, the least recently "
        "used images and views no running container uses are removed (TCV_HOOK_STORE_MAX)",
    )
    signature_policy = signature_policy_switch(
        "the trust policy (policy.json) the hook's image copies must satisfy, "
        "containers-storage: sources included (TCV_HOOK_SIGNATURE_POLICY; default the "
        "containers policy)"
    )
    timeout = cli.SwitchAttr(
        ["--timeout"],
        cli.Range(1, 3600),
        default=30,
        argname="SECONDS",
        help="the hook's own time bound; the runtime's is 5 s more",
    )

    def render(self) -> tuple[str, dict[str, object]]:
        import os

        from tcv.gpu.spec import parse_cuda_version, parse_gpu_specs
        from tcv.hook import hooksjson
        from tcv.hook.settings import default_root, hook_env

        gpus = list(self.gpu_specs or [])
        parse_gpu_specs(gpus)  # bad SPECs fail here, not at every container start
        if self.cuda_driver:
            parse_cuda_version(self.cuda_driver)
        if self.store_max is not None:
            from tcv.hook.lru import parse_size

            try:
                parse_size(self.store_max)
            except ValueError as err:
                raise UsageError(f"--store-max-size: {err}") from None
        store = self.store
        if store is None and os.geteuid() != 0:
            # A rootless hook runs in podman's user namespace with only the JSON's env:
            # it could not find this user's data dir by itself.
            store = str(default_root(os.environ))
        if store is not None:
            store = os.path.abspath(store)
        log = self.log_file
        if log is not None and log != "syslog":
            log = os.path.abspath(log)
        env = hook_env(
            gpus=gpus,
            cuda_driver=self.cuda_driver,
            store=store,
            log=log,
            pull=str(self.pull).lower() if self.pull else None,
            tls_verify=None if self.tls_verify is None else str(self.tls_verify).lower() == "true",
            timeout=self.timeout,
            store_max=self.store_max,
            signature_policy=(
                os.path.abspath(self.signature_policy) if self.signature_policy else None
            ),
            extra=None if os.geteuid() == 0 else hooksjson.rootless_env(os.getuid(), os.environ),
        )
        config = hooksjson.render_hook_config(
            interpreter=hooksjson.interpreter(),
            hook_script=str(hooksjson.find_hook_script()),
            env=env,
            timeout=self.timeout,
        )
        return hooksjson.render_json(config), config


class HookInstall(TcvApplication, _HookConfigOptions, JsonOption):
    DESCRIPTION = "Install the hooks.d JSON that makes podman and CRI-O run the TCV hook."
    DESCRIPTION_MORE = """
    Writes DIR/tcv.json (hooks.d schema 1.0.0, stages prestart and poststop) matching
    containers
    annotated cache.triton.image/inject=IMAGE. Its "path" is this Python and its
    "args" run the installed tcv-hook with it, so the hook finds tcv whether it was
    installed with pip into a virtualenv, into the system, or in editable mode.

    The runtime gives the hook no environment but the JSON's: --gpu, --cuda-driver,
    --store, --log, --pull, --tls-verify, --store-max-size and --timeout are written
    into it.
    Run as a user (rootless podman), the user's store and containers-storage are
    written in too.

    podman reads /usr/share/containers/oci/hooks.d and /etc/containers/oci/hooks.d
    (or the directories given with podman --hooks-dir); CRI-O reads the hooks_dir
    list of crio.conf. See docs/hook.md.

    Exit status: 0 when written, 3 on bad options or an unwritable DIR.
    """

    USAGE = "    tcv hook install [--hooks-dir DIR] [--gpu SPEC]... [options]\n"

    hooks_dir = cli.SwitchAttr(
        ["--hooks-dir"],
        str,
        argname="DIR",
        default="/etc/containers/oci/hooks.d",
        help="the hooks.d directory to write tcv.json into",
    )

    def main(self) -> int:
        from tcv.hook import hooksjson
        from tcv.output import render_json

        text, config = self.render()
        path = hooksjson.write_hook_config(Path(self.hooks_dir), text)
        if self.json:
            print(render_json({"path": str(path), "config": config}))
        else:
            print(f"installed {path}")
        return 0


class HookShow(TcvApplication, _HookConfigOptions):
    DESCRIPTION = "Print the hooks.d JSON that 'tcv hook install' would write."
    DESCRIPTION_MORE = """
    Takes the same options as 'tcv hook install' and writes nothing. Exit status: 0,
    or 3 on bad options.
    """

    USAGE = "    tcv hook show [--gpu SPEC]... [options]\n"

    def main(self) -> int:
        text, _ = self.render()
        print(text, end="")
        return 0


class HookStore(TcvApplication, JsonOption):
    DESCRIPTION = "List or prune the hook's store of unpacked images and rendered views."
    DESCRIPTION_MORE = """
    'tcv hook store' (or 'tcv hook store list') lists the stored images and the
    rendered views with their size, last use, and whether a running container
    uses them. 'tcv hook store prune' removes: with --max-age, what was not used
    for that long; with --max-size, the least recently used until the store fits;
    with --absent, images (and their views) that local container storage no
    longer holds. A view a running container uses is never removed.

    Exit status: 0, or 3 on bad options.
    """

    USAGE = "    tcv hook store [list|prune] [--store DIR] [--max-age DAYS] [--max-size SIZE]\n"

    store = cli.SwitchAttr(
        ["--store"], str, argname="DIR", default=None,
        help="the store (default /var/lib/tcv/store for root, else $XDG_DATA_HOME/tcv/store)",
    )  # fmt: skip
    max_age = cli.SwitchAttr(
        ["--max-age"], float, argname="DAYS", default=None,
        help="prune: remove what was not used for DAYS days",
    )  # fmt: skip
    max_size = cli.SwitchAttr(
        ["--max-size"], str, argname="SIZE", default=None,
        help="prune: remove the least recently used until the store is at most SIZE (20G)",
    )  # fmt: skip
    absent = cli.Flag(
        ["--absent"], help="prune: remove images no longer in local container storage"
    )

    def main(self, action: str = "list") -> int:
        import os
        import time

        from tcv.hook.lru import parse_size
        from tcv.hook.prune import inventory, prune
        from tcv.hook.settings import default_root
        from tcv.hook.store import Store
        from tcv.output import render_json

        if action not in ("list", "prune"):
            raise UsageError(f"unknown store action {action!r}", "use list or prune")
        store = Store(Path(self.store) if self.store else default_root(os.environ))
        if action == "list":
            entries = inventory(store)
            if self.json:
                print(render_json({"store": str(store.root), "entries": [
                    {"kind": e.kind, "name": e.name, "digest": e.digest, "size": e.size,
                     "last_used": e.last_used, "in_use": e.in_use} for e in entries]}))  # fmt: skip
                return 0
            print(f"store {store.root}: {sum(e.size for e in entries) / 1e6:.1f} MB")
            for e in sorted(entries, key=lambda e: (e.digest, e.kind)):
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
                flag = " in use" if e.in_use else ""
                print(f"  {e.kind:5} {e.size / 1e6:9.1f} MB  {when}  {e.name}{flag}")
            return 0
        if self.max_age is None and self.max_size is None and not self.absent:
            raise UsageError(
                "prune needs a rule", "give --max-age DAYS, --max-size SIZE or --absent"
            )
        try:
            limit = parse_size(self.max_size) if self.max_size is not None else None
        except ValueError as err:
            raise UsageError(f"--max-size: {err}") from None
        removed = prune(
            store,
            max_size=limit,
            max_age=self.max_age * 86400 if self.max_age is not None else None,
            absent=bool(self.absent),
        )
        if self.json:
            print(render_json({"removed": [{"kind": e.kind, "name": e.name, "size": e.size}
                                           for e in removed]}))  # fmt: skip
        else:
            for e in removed:
                print(f"removed {e.kind} {e.name} ({e.size / 1e6:.1f} MB)")
            print(f"freed {sum(e.size for e in removed) / 1e6:.1f} MB")
        return 0


Hook.subcommand("install", HookInstall)
Hook.subcommand("show", HookShow)
Hook.subcommand("store", HookStore)
