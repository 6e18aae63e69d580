"""The repository's promises to a newcomer: the README's commands and CI agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_gives_exactly_two_setup_commands():
    """The README's set-up is two one-line commands: open the course, run the tests."""
    commands = _readme_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith("dojo course")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    """.ci/run runs the README's test command, word for word, and nothing hand-installed."""
    test_command = _readme_commands()[1]
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert test_command in lines
    assert not [line for line in lines if "pip install" in line and line != test_command]


def test_distribution_provides_both_packages_and_the_cli():
    """pyproject.toml declares the chaos-dojo distribution, its two packages and the dojo script."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "chaos-dojo"
    assert meta["project"]["scripts"]["dojo"] == "sandbox.cli:main"
    assert set(meta["tool"]["setuptools"]["packages"]["find"]["include"]) == {"sandbox*", "autograder*"}
    deps = " ".join(meta["project"]["dependencies"])
    for name in ("simpy", "fastapi", "pydantic", "opentelemetry-sdk", "hypothesis", "matplotlib",
                 "ipywidgets", "jupyterlab", "nbgrader"):
        assert name in deps


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_replay_lines_replay_what_they_say():
    """The README's one-line replays reproduce a double charge and a negative stock in the order system."""
    from sandbox.checkers import no_double_charge, stock_never_negative

    replays = [block.strip() for block in _readme_python_blocks() if ".replay(" in block]
    assert len(replays) == 2 and all("\n" not in line for line in replays)
    broken = []
    for line in replays:
        *setup, call = line.split("; ")
        scope: dict = {}
        exec("; ".join(setup), scope)
        run = eval(call, scope)
        broken.append((bool(no_double_charge()(run.world)), bool(stock_never_negative()(run.world))))
    assert broken[0][0] is False, "the first replay line should show a double charge"
    assert broken[1][1] is False, "the second replay line should show negative stock"


def test_the_readme_explore_example_runs(tmp_path, monkeypatch):
    """The README's longer Python example runs as written and finds a counterexample."""
    example = next(block for block in _readme_python_blocks() if "explore(" in block and "inject(" in block)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(example, scope)
    assert scope["found"].found
    assert (tmp_path / "found.png").read_bytes()[:4] == b"\x89PNG"
