"""The hooks.d JSON: rendered by value, written atomically, installed by the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tcv.cli.app import Tcv
from tcv.errors import EXIT_USAGE
from tcv.hook import hooksjson, settings

REPO = Path(__file__).resolve().parents[2]


def test_render_is_schema_1_0_0_prestart_poststop_anchored():
    cfg = hooksjson.render_hook_config(
        interpreter="/venv/bin/python",
        hook_script="/venv/libexec/tcv/tcv-hook",
        env={"TCV_GPUS": "cuda:90", "PATH": "/bin"},
        timeout=30,
    )
    assert cfg == {
        "version": "1.0.0",
        "hook": {
            "path": "/venv/bin/python",
            "args": ["/venv/bin/python", "/venv/libexec/tcv/tcv-hook"],
            "env": ["PATH=/bin", "TCV_GPUS=cuda:90"],
            "timeout": 35,
        },
        "when": {"annotations": {r"^cache\.triton\.image/inject$": ".+"}},
        "stages": ["prestart", "poststop"],
    }


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        pytest.param("cache.triton.image/inject", True, id="exact"),
        pytest.param("cache.triton.image/inject-dir", False, id="longer-name"),
        pytest.param("xcache.triton.image/inject", False, id="prefixed-name"),
        pytest.param("cacheXtritonXimage/inject", False, id="dots-are-literal"),
    ],
)
def test_annotation_regex_is_anchored(name, matches):
    # podman matches with Go regexp MatchString: a substring search, hence the anchors.
    assert bool(re.search(hooksjson.ANNOTATION_REGEX, name)) is matches


def test_template_in_the_repo_matches_the_renderer():
    template = json.loads((REPO / "containers-hooks" / "tcv.json").read_text())
    assert template["version"] == hooksjson.SCHEMA_VERSION
    assert template["stages"] == list(hooksjson.STAGES)
    assert template["when"] == {"annotations": {hooksjson.ANNOTATION_REGEX: ".+"}}
    assert template["hook"]["path"] == "/usr/libexec/tcv/tcv-hook"


def test_hook_env_only_what_was_asked():
    env = settings.hook_env(gpus=["cuda:90", "hip:gfx942"], cuda_driver="12.4", timeout=9)
    assert env == {
        "PATH": settings.DEFAULT_PATH,
        "TCV_HOOK_TIMEOUT": "9",
        "TCV_GPUS": "cuda:90;hip:gfx942",
        "TCV_CUDA_DRIVER": "12.4",
    }
    full = settings.hook_env(store="/s", log="syslog", pull="never", tls_verify=False)
    assert full["TCV_STORE"] == "/s"
    assert full["TCV_HOOK_LOG"] == "syslog"
    assert full["TCV_HOOK_PULL"] == "never"
    assert full["TCV_HOOK_TLS_VERIFY"] == "false"


def test_find_hook_script_in_a_checkout():
    assert hooksjson.find_hook_script() == (REPO / "libexec" / "tcv-hook").resolve()


def test_write_replaces_atomically(tmp_path):
    hooks = tmp_path / "hooks.d"
    first = hooksjson.write_hook_config(hooks, "{}\n")
    second = hooksjson.write_hook_config(hooks, '{"a": 1}\n')
    assert first == second == hooks / "tcv.json"
    assert json.loads(second.read_text()) == {"a": 1}
    assert sorted(p.name for p in hooks.iterdir()) == ["tcv.json"]


def test_write_into_an_unwritable_place_is_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Exception, match="cannot write the hook configuration") as info:
        hooksjson.write_hook_config(blocker / "hooks.d", "{}")
    assert info.value.exit_code == EXIT_USAGE


def test_cli_install_writes_the_json(tmp_path, capsys):
    hooks = tmp_path / "hooks.d"
    _, code = Tcv.run(
        [
            "tcv", "hook", "install", "--hooks-dir", str(hooks), "--gpu", "cuda:90",
            "--gpu", "hip:gfx942", "--cuda-driver", "12.4", "--store", str(tmp_path / "s"),
            "--log", str(tmp_path / "h.log"), "--pull", "never", "--tls-verify", "false",
            "--timeout", "12", "--store-max-size", "20G",
        ],
        exit=False,
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert f"installed {hooks / 'tcv.json'}" in out
    cfg = json.loads((hooks / "tcv.json").read_text())
    env = dict(line.split("=", 1) for line in cfg["hook"]["env"])
    assert env["TCV_GPUS"] == "cuda:90;hip:gfx942"
    assert env["TCV_CUDA_DRIVER"] == "12.4"
    assert env["TCV_STORE"] == str(tmp_path / "s")
    assert env["TCV_HOOK_LOG"] == str(tmp_path / "h.log")
    assert env["TCV_HOOK_PULL"] == "never"
    assert env["TCV_HOOK_TLS_VERIFY"] == "false"
    assert env["TCV_HOOK_TIMEOUT"] == "12"
    assert env["TCV_HOOK_STORE_MAX"] == "20G"
    assert cfg["hook"]["timeout"] == 17
    assert Path(cfg["hook"]["args"][1]).is_file()
    assert Path(cfg["hook"]["path"]).is_file()


def test_cli_install_json_output(tmp_path, capsys):
    _, code = Tcv.run(
        ["tcv", "hook", "install", "--hooks-dir", str(tmp_path), "--json"], exit=False
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["path"] == str(tmp_path / "tcv.json")
    assert data["config"]["stages"] == ["prestart", "poststop"]


def test_cli_show_prints_without_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, code = Tcv.run(["tcv", "hook", "show", "--gpu", "cuda:80"], exit=False)
    cfg = json.loads(capsys.readouterr().out)
    assert code == 0
    assert "TCV_GPUS=cuda:80" in cfg["hook"]["env"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        pytest.param(["--gpu", "cuda:9x"], "bad GPU SPEC 'cuda:9x'", id="bad-gpu"),
        pytest.param(["--cuda-driver", "twelve"], "bad CUDA driver version", id="bad-driver"),
        pytest.param(["--pull", "always"], "always", id="bad-pull"),
        pytest.param(["--timeout", "0"], "timeout", id="bad-timeout"),
        pytest.param(["--store-max-size", "lots"], "store-max-size", id="bad-store-size"),
    ],
)
def test_cli_install_bad_options_one_line_exit_3(tmp_path, capsys, argv, needle):
    _, code = Tcv.run(["tcv", "hook", "install", "--hooks-dir", str(tmp_path), *argv], exit=False)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert not (tmp_path / "tcv.json").exists()


def test_cli_hook_unknown_command(capsys):
    _, code = Tcv.run(["tcv", "hook", "frob"], exit=False)
    assert code == EXIT_USAGE
    assert "unknown hook command 'frob'" in capsys.readouterr().err


def test_rootless_env_tells_skopeo_whose_storage():
    env = hooksjson.rootless_env(1001, {"HOME": "/home/u", "XDG_RUNTIME_DIR": "/run/user/1001",
                                        "OTHER": "x"})  # fmt: skip
    assert env == {
        "_CONTAINERS_USERNS_CONFIGURED": "done",
        "_CONTAINERS_ROOTLESS_UID": "1001",
        "HOME": "/home/u",
        "XDG_RUNTIME_DIR": "/run/user/1001",
    }
