"""The progress bar: drawn only for a person, and what it draws."""

from __future__ import annotations

import io

import pytest

from tcv import progress


def test_bar_renders_fraction_and_sizes():
    out = io.StringIO()
    bar = progress.Bar(out, width=10)
    bar.start("unpack", 4096)
    bar.update(2048)
    assert bar.render() == "unpack   [#####.....] 2.0 KiB / 4.0 KiB"
    bar.finish()
    assert out.getvalue().endswith("\n") and "\r" in out.getvalue()


def test_bar_without_total_shows_bytes():
    bar = progress.Bar(io.StringIO())
    bar.start("pull")
    bar.update(10)
    assert bar.render() == "pull     10 B"


@pytest.mark.parametrize(
    ("tty", "json_output", "drawn"),
    [
        pytest.param(True, False, True, id="tty"),
        pytest.param(True, True, False, id="tty-json"),
        pytest.param(False, False, False, id="pipe"),
    ],
)
def test_only_a_tty_without_json_gets_a_bar(monkeypatch, tty, json_output, drawn):
    monkeypatch.setattr("sys.stdout.isatty", lambda: tty)
    assert isinstance(progress.for_output(json_output), progress.Bar) == drawn


def test_dir_watcher_reports_growth(tmp_path):
    import threading

    seen: list[int] = []
    reported = threading.Event()

    class Record(progress.Progress):
        def update(self, done):
            seen.append(done)
            reported.set()

    (tmp_path / "blob").write_bytes(b"x" * 100)
    with progress.DirWatcher(tmp_path, Record(), interval=0.001):
        assert reported.wait(timeout=10)
    assert seen[-1] == 100
