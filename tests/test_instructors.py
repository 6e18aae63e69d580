"""The instructor guide (course/INSTRUCTORS.md) says only what is true of the course it describes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from autograder.nbgrader import EXCHANGE_ENV
from autograder.seeds import GRADING_SECRET_ENV
from sandbox.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
GUIDE = (ROOT / "course" / "INSTRUCTORS.md").read_text()
LABS = sorted(p.parent.name for p in (ROOT / "labs").glob("*/lab.py"))


def _section(heading: str) -> str:
    """The text under a ``### heading`` up to the next heading of that level or above."""
    match = re.search(rf"^### {re.escape(heading)}.*?$(.*?)(?=^#{{1,3}} )", GUIDE + "\n## end", flags=re.M | re.S)
    assert match, f"course/INSTRUCTORS.md has no section '### {heading}'"
    return match[1]


@pytest.mark.parametrize("lab", LABS)
def test_each_lab_has_its_common_mistakes_each_a_real_mutant(lab):
    """Each lab's table of common mistakes names, for every row, the mutant that makes that mistake, and each
    named mutant is one the lab's tests hand in."""
    number = int(lab[:2])
    section = _section(f"Lab {number:02d}, ")
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Mistake")]
    assert len(rows) >= 5, f"{lab}: only {len(rows)} mistakes listed"
    for row in rows:
        names = re.findall(r"`([a-z_]+)`", row.split("|")[1])
        assert names, f"{lab}: the row {row!r} names no mutant"
        missing = [n for n in names if not (ROOT / "labs" / lab / "mutants" / f"{n}.py").is_file()]
        assert not missing, f"{lab}: the guide names mutants that do not exist: {missing}"


@pytest.mark.parametrize("heading,hours", [("Half day (3 h 30)", 3.5), ("Full day (7 h)", 7.0)])
def test_an_agenda_runs_forward_and_fits_its_day(heading, hours):
    times = [int(h) * 60 + int(m) for h, m in re.findall(r"^\| (\d+):(\d\d) \|", _section(heading), flags=re.M)]
    assert times[0] == 0 and times == sorted(set(times)), times
    assert times[-1] < hours * 60


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```console\n(.*?)```", GUIDE, flags=re.S)
    lines = [line[2:].split("  #")[0] for block in blocks for line in block.splitlines() if line.startswith("$ ")]
    return [shlex.split(line) for line in lines]


def test_the_dojo_commands_are_ones_dojo_accepts():
    grades = [c[c.index(".venv/bin/dojo") + 1:] for c in _commands() if ".venv/bin/dojo" in c]
    assert grades, "the guide shows no dojo command"
    for argv in grades:
        args = build_parser().parse_args(argv)  # SystemExit, with argparse's message, on an unknown option
        assert args.lab in LABS


def test_the_nbgrader_commands_name_real_labs_and_the_environment_the_course_reads():
    nbgrader = [c for c in _commands() if any(w.endswith("nbgrader") for w in c)]
    assert len(nbgrader) >= 7
    for argv in nbgrader:
        i = next(i for i, w in enumerate(argv) if w.endswith("nbgrader"))
        assert argv[i + 1] in {"generate_assignment", "release_assignment", "fetch_assignment", "submit", "collect",
                               "autograde", "generate_feedback", "release_feedback"}, argv
        assert argv[i + 2] in LABS, argv
    assert f"export {EXCHANGE_ENV}=" in GUIDE and f"{GRADING_SECRET_ENV}=" in GUIDE


def test_the_paths_it_points_to_exist():
    paths = set(re.findall(r"`((?:course|labs|deploy|binder)/[\w./<>-]*|nbgrader_config\.py)`", GUIDE))
    assert "deploy/jupyterhub/" in paths
    for path in sorted(paths):
        if "<" not in path:
            assert (ROOT / path).exists(), f"course/INSTRUCTORS.md points to {path}, which does not exist"
