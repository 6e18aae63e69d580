"""The ``dojo`` command line: running scenarios and starting the course."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sandbox import cli

ROOT = Path(__file__).resolve().parent.parent


def test_run_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    """`dojo run order-system --seed 7` prints the report with its seed and replay line, and exits 0."""
    assert cli.main(["run", "order-system", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "order-system - seed 7" in out
    assert "Replay:  dojo run order-system --seed 7" in out
    assert "negative stock:" in out


def test_run_options_reach_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """--clients and --no-faults change the run, and the replay line repeats them."""
    assert cli.main(["run", "order-system", "--seed", "3", "--clients", "1", "--no-faults"]) == 0
    out = capsys.readouterr().out
    assert "1 customers x 5 orders" in out and "no faults" in out
    assert "dojo run order-system --seed 3 --clients 1 --no-faults" in out


def test_unknown_scenario_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown scenario exits 2 with a one-line error naming every known scenario."""
    assert cli.main(["run", "order-sistem"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'order-sistem'" in err
    assert all(name in err for name in cli.SCENARIOS)
    assert "did you mean 'order-system'?" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "order-system", "--seed", "-3"], "argument --seed: -3 is negative; use a seed >= 0"),
        (["run", "order-system", "--seed", "seven"], "argument --seed: 'seven' is not a whole number"),
        (["run", "order-system", "--clients", "0"], "argument --clients: 0 is too small"),
        (["course", "--port", "70000"], "argument --port: 70000 is not a TCP port"),
    ],
)
def test_bad_values_give_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad value exits 2 with one clear line on stderr and no traceback."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == ""


def test_no_command_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    """Plain `dojo` exits 2 and names the commands to choose from."""
    assert cli.main([]) == 2
    assert "dojo run SCENARIO" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`dojo --version` prints the installed version and exits 0."""
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dojo (chaos-dojo) 0.")


def test_course_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`dojo course --help` describes --no-browser and --port and exits 0."""
    assert cli.main(["course", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--no-browser" in out and "--port" in out


def test_course_command_starts_jupyterlab_on_the_first_notebook(tmp_path: Path) -> None:
    """The course command runs this Python's JupyterLab on the start notebook, rooted at the repository."""
    argv = cli.course_command(tmp_path, no_browser=True, port=8899)
    assert argv[:4] == [sys.executable, "-m", "jupyterlab", "course/00-start-here.ipynb"]
    assert f"--ServerApp.root_dir={tmp_path}" in argv
    assert "--LabApp.default_url=/lab/tree/course/00-start-here.ipynb" in argv
    assert f"--LabApp.app_settings_dir={tmp_path / 'binder' / 'jupyterlab'}" in argv
    assert argv[-2:] == ["--no-browser", "--port=8899"]
    plain = cli.course_command(tmp_path)
    assert "--no-browser" not in plain and not any(a.startswith("--port") for a in plain)
    assert "--allow-root" in cli.course_command(tmp_path, allow_root=True)


def test_find_repository_from_a_checkout(tmp_path: Path) -> None:
    """The repository is found from any folder inside a checkout that has the start notebook."""
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "00-start-here.ipynb").write_text("{}")
    inside = tmp_path / "labs" / "01"
    inside.mkdir(parents=True)
    assert cli.find_repository(inside) == tmp_path.resolve()
    assert cli.find_repository(tmp_path) == tmp_path.resolve()


def test_course_runs_the_command_without_a_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dojo course` on a machine with no browser passes --no-browser and runs JupyterLab in the repository."""
    calls: list[tuple[list[str], Path]] = []
    monkeypatch.setattr(cli, "find_repository", lambda start=None: tmp_path)
    monkeypatch.setattr(cli, "browser_available", lambda: False)
    monkeypatch.setattr(cli.subprocess, "call", lambda argv, cwd, env: calls.append((argv, cwd)) or 0)
    assert cli.main(["course", "--port", "8899"]) == 0
    [(argv, cwd)] = calls
    assert cwd == tmp_path
    assert "--no-browser" in argv and "--port=8899" in argv


def test_course_outside_a_checkout_says_where_to_run_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a checkout holding the course, `dojo course` exits 1 and says to run it inside one."""
    monkeypatch.setattr(cli, "find_repository", lambda start=None: None)
    assert cli.main(["course"]) == 1
    assert "inside a checkout" in capsys.readouterr().err


def test_explore_finds_shrinks_and_prints_the_replay(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`dojo explore order-system --find negative-stock` prints a shrunk counterexample, its replay line and a picture."""
    picture = tmp_path / "broken.png"
    assert cli.main(["explore", "order-system", "--find", "negative-stock", "--seeds", "5", "--picture", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "Counterexample - order-system - seed" in out
    assert "stock_never_negative()" in out and "went to qty -" in out
    assert "Replay:  from sandbox.examples.order_system import scenario; scenario.replay(" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explore", "order-system", "--find", "double"], "unknown invariant 'double'"),
        (["explore", "order-sistem", "--find", "double-charge"], "unknown scenario 'order-sistem'"),
        (["explore", "order-system", "--find", "money", "--picture", "out.jpg"], "name a .png or .svg file"),
        (["explore", "order-system", "--find", "money", "--seeds", "0"], "argument --seeds: 0 is too small"),
    ],
)
def test_explore_refuses_bad_arguments_in_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad scenario, invariant, picture name or seed count exits 2 with one line on stderr."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_course_runs_with_this_pythons_scripts_on_path(monkeypatch) -> None:
    """JupyterLab's children (nbgrader's alembic, kernels) find the venv's scripts without an activated venv."""
    monkeypatch.setenv("PATH", "/usr/bin")
    env = cli.course_environment()
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin"]


def test_the_course_settings_turn_the_news_pop_up_off() -> None:
    """The settings the course's JupyterLab reads switch off the news and update notifications."""
    import json

    settings = json.loads((ROOT / "binder" / "jupyterlab" / "overrides.json").read_text())
    assert settings["@jupyterlab/apputils-extension:notification"] == {"checkForUpdates": False, "fetchNews": "false"}
