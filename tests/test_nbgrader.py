"""The labs as an nbgrader course (autograder.nbgrader, nbgrader_config.py): release, then autograde."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.labs import load_module
from autograder.seeds import GRADING_SECRET_ENV, seed_bank

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted(p.parent for p in (ROOT / "labs").glob("*/lab.ipynb"))
SERVICE = {"grade": False, "solution": True, "locked": False, "grade_id": "service", "schema_version": 3}
GRADED = {"grade": True, "solution": False, "locked": True, "points": 10, "grade_id": "fixed", "schema_version": 3}


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the nbgrader command line in ``course`` as an instructor would, with this venv's tools on PATH
    (nbgrader runs ``alembic`` to set its gradebook up)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def lab_module(folder: Path):
    return load_module(folder, "lab", f"chaos_dojo_nbgrader_test.{folder.name.replace('-', '_')}")


def _course(tmp_path: Path) -> Path:
    """An empty course set up as the repository's is (its nbgrader_config.py, rooted where it lies)."""
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    return tmp_path


def _toy_lab(course: Path) -> Path:
    """A lab of the repository's shape, small enough to autograde in seconds."""
    folder = course / "labs" / "toy"
    (folder / "mutants").mkdir(parents=True)
    (folder / "lab.py").write_text('def grade(f):\n    assert f() == "fixed", f"create_app() gave {f()!r}"\n')
    (folder / "solution.py").write_text('def create_app():\n    return "fixed"\n')
    (folder / "mutants" / "half.py").write_text('def create_app():\n    return "half"\n')
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_markdown_cell("# A toy lab"),
        new_code_cell("import lab"),
        new_code_cell("def create_app():\n    return 'generated'  # the flaw", metadata={"nbgrader": SERVICE}),
        new_code_cell('"""Check that it is fixed."""\nlab.grade(create_app)',
                      metadata={"nbgrader": GRADED, "tags": ["raises-exception"]}),
    ]
    nbformat.write(nb, folder / "lab.ipynb")
    return folder


def test_a_release_keeps_the_generated_code_and_leaves_the_solutions_out(tmp_path):
    """generate_assignment releases the service cell as written (not nbgrader's stub), locks the grade cells,
    and copies neither the reference solution nor the mutants."""
    course = _course(tmp_path)
    _toy_lab(course)
    _nbgrader(course, "generate_assignment", "toy")
    release = course / "release" / "toy"
    assert sorted(p.name for p in release.iterdir()) == ["lab.ipynb", "lab.py"]
    cells = nbformat.read(release / "lab.ipynb", as_version=4).cells
    assert cells[2].source == "def create_app():\n    return 'generated'  # the flaw"
    assert cells[3].metadata["editable"] is False and cells[3].metadata["deletable"] is False
    assert (course / "exchange").is_dir()  # the course's own exchange, not an unwritable system folder


def test_a_room_shares_the_exchange_it_names(tmp_path, monkeypatch):
    """CHAOS_DOJO_EXCHANGE points the course at a shared exchange (a hub's shared volume); a path that is not an
    existing folder is refused with the value and what to do, not left for nbgrader to fail on later."""
    from traitlets.config import Config

    from autograder.nbgrader import configure

    shared = tmp_path / "srv-exchange"
    shared.mkdir()
    monkeypatch.setenv("CHAOS_DOJO_EXCHANGE", str(shared))
    c = Config()
    configure(c, str(tmp_path / "course"))
    assert c.Exchange.root == str(shared) and not (tmp_path / "course" / "exchange").exists()
    for bad in ("relative/exchange", str(tmp_path / "missing")):
        monkeypatch.setenv("CHAOS_DOJO_EXCHANGE", bad)
        with pytest.raises(ValueError, match=re.escape(repr(bad)) + ".*mkdir -p"):
            configure(Config(), str(tmp_path / "course"))
    monkeypatch.delenv("CHAOS_DOJO_EXCHANGE")
    c = Config()
    configure(c, str(tmp_path / "course"))
    assert c.Exchange.root == str(tmp_path / "course" / "exchange")


@pytest.mark.parametrize("folder", LABS, ids=lambda p: p.name)
def test_each_lab_releases_as_an_assignment(folder: Path, tmp_path):
    """Each lab releases: its notebook with the generated code in the service cell, graded parts worth 10
    points, lab.py and the generated module; no solution, answer or mutant; no hidden seed in the text."""
    course = _course(tmp_path)
    shutil.copytree(folder, course / "labs" / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    _nbgrader(course, "generate_assignment", folder.name)
    release = course / "release" / folder.name
    names = sorted(p.name for p in release.iterdir())
    assert "lab.ipynb" in names and "lab.py" in names and "generated.py" in names, names
    assert not [n for n in names if n.startswith(("solution", "answer", "mutants"))], names
    nb = nbformat.read(release / "lab.ipynb", as_version=4)
    service = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "service"]
    assert [c.source.rstrip() for c in service] == [(folder / "generated.py").read_text().rstrip()]
    points = sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    assert points == 10
    text = (release / "lab.ipynb").read_text()
    hidden = seed_bank(folder.name, "hidden", 30)
    assert not [s for s in hidden if str(s) in text]


#: The reference text of each solution cell (by nbgrader grade_id) of a lab; the default is solution.py.
REFERENCES = {"01-cap": {"service": "solution_cp.py"}, "04-tracing": {"answer": "answer.py"}}

#: Appended to the reference's service cell: a learner who logs. Warnings at every replica's start and every
#: request, through a handler configured in the cell (bound to the kernel's stderr, as basicConfig does) and
#: print(..., file=sys.stderr); in the kernel, the check's forked workers and the replicas alike. Logging
#: must never cost points: nbgrader scores a grade cell with any output on stderr 0.
LOGGING = '''

import logging as _logging
import sys as _sys

_logging.basicConfig(level=_logging.INFO)
_reference_create_app = create_app


def create_app():
    _logging.getLogger("service").warning("a replica starts")
    app = _reference_create_app()

    @app.middleware("http")
    async def log_every_request(request, call_next):
        _logging.getLogger("service").info("%s %s", request.method, request.url.path)
        print("served", request.url.path, file=_sys.stderr)
        return await call_next(request)

    return app
'''


def _submit(course: Path, lab: Path, student: str, edit=None) -> None:
    """Hand in the release of ``lab`` as ``student``, with ``edit(cell)`` applied to each code cell."""
    folder = course / "submitted" / student / lab.name
    shutil.copytree(course / "release" / lab.name, folder)
    if edit is not None:
        path = folder / "lab.ipynb"
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                edit(cell)
        nbformat.write(nb, path)


def _with_references(lab: Path, *, logging: bool):
    references = {"service": "solution.py", **REFERENCES.get(lab.name, {})}

    def edit(cell) -> None:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in references:
            cell.source = (lab / references[grade_id]).read_text() + (LOGGING if logging and grade_id == "service"
                                                                       else "")
    return edit


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.name)
def test_every_solution_cell_of_a_lab_has_its_reference(lab: Path):
    """The reference handed in below covers each solution cell of the lab notebook, and its file is there."""
    references = {"service": "solution.py", **REFERENCES.get(lab.name, {})}
    nb = nbformat.read(lab / "lab.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
    assert answers == set(references), f"solution cells {sorted(answers)}, references for {sorted(references)}"
    assert all((lab / name).is_file() for name in references.values())


#: The labs whose reference is also handed in by a learner who logs (LOGGING): lab 01 (replicas, and the check's
#: forked workers) and lab 03 (background workers consuming the broker) between them take every path a log line
#: can take; what holds a grade cell's output back (autograder.labs.learner_output) is the same in every lab.
LOGGED = ("01-cap", "03-sagas")


def _errors(notebook: Path) -> list[tuple[int, str | None, str]]:
    """(cell index, grade_id, error name) of each error an executed notebook shows."""
    nb = nbformat.read(notebook, as_version=4)
    return [(i, c.metadata.get("nbgrader", {}).get("grade_id"), o.ename) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


@pytest.mark.parametrize("lab", LABS, ids=lambda p: p.name)
def test_each_lab_through_nbgrader_scores_the_release_0_and_the_reference_full_marks(lab: Path, tmp_path):
    """The real pipeline on a temporary course, under a grading secret of its own: generate_assignment; autograde
    runs the lab notebook top to bottom and scores the release as handed out 0 on every graded part (only its grade
    cells fail, each with NotPassed: a counterexample, not a traceback through the grader), and the reference
    solution pasted in full marks, with no error in any cell (also when its service logs warnings to stderr, for
    the LOGGED labs); generate_feedback writes each student's page, and the release's page shows a counterexample.
    (These runs are the lab notebook's own top-to-bottom runs: tests/test_notebooks.py does not repeat them.)"""
    course = _course(tmp_path)
    shutil.copytree(lab, course / "labs" / lab.name, ignore=shutil.ignore_patterns("__pycache__"))
    _nbgrader(course, "generate_assignment", lab.name)
    students = ("as-released", "reference", "logging") if lab.name in LOGGED else ("as-released", "reference")
    _submit(course, lab, "as-released")
    _submit(course, lab, "reference", _with_references(lab, logging=False))
    if "logging" in students:
        _submit(course, lab, "logging", _with_references(lab, logging=True))
    secret = f"nbgrader-test-{lab.name}"
    os.environ[GRADING_SECRET_ENV] = secret
    try:
        _nbgrader(course, "autograde", lab.name)
    finally:
        del os.environ[GRADING_SECRET_ENV]
    from nbgrader.api import Gradebook

    nb = nbformat.read(lab / "lab.ipynb", as_version=4)
    parts = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"] for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade")}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="chaos-dojo") as gb:
        scores = {student: {part: gb.find_grade(part, "lab", lab.name, student).score for part in parts}
                  for student in students}
    assert scores["as-released"] == dict.fromkeys(parts, 0.0)
    full = {part: float(points) for part, points in parts.items()}
    assert all(scores[student] == full for student in students[1:]), scores
    executed = {student: course / "autograded" / student / lab.name / "lab.ipynb" for student in students}
    released = _errors(executed["as-released"])
    assert sorted(grade_id for _i, grade_id, _e in released) == sorted(parts), released
    assert {error for _i, _g, error in released} == {"NotPassed"}, released
    for student in students[1:]:
        assert _errors(executed[student]) == [], (student, _errors(executed[student]))
    _nbgrader(course, "generate_feedback", lab.name)
    pages = {s: course / "feedback" / s / lab.name / "lab.html" for s in students}
    assert all(p.is_file() for p in pages.values()), sorted(map(str, course.glob("feedback/**/*")))
    # what the feedback shows fits a notebook's column: error lines wrapped, pictures no wider than it
    from autograder.nbgrader import FEEDBACK_COLUMNS, FEEDBACK_WIDTH

    graded = nbformat.read(course / "autograded" / "as-released" / lab.name / "lab.ipynb", as_version=4)
    outputs = [o for c in graded.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    lines = [line for o in outputs if o.output_type == "error" for line in o.traceback]
    assert lines and all(len(line) <= FEEDBACK_COLUMNS or " " not in line.strip() for line in lines), lines
    pictures = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert pictures and all(o.metadata["image/png"]["width"] <= FEEDBACK_WIDTH for o in pictures)
    page = pages["as-released"].read_text()
    assert "Broken: " in page and "Traceback (most recent call last)" not in page and "grading.py" not in page
    hidden = seed_bank(lab.name, "hidden", lab_module(lab).HIDDEN, secret=secret)
    assert not [s for s in hidden if f"seed {s}" in page or f"seed={s}" in page]
