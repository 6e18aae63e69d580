"""nbgrader, as the labs need it: the lab notebooks are the source assignments.

A lab's notebook hands the learner the code an AI assistant wrote, flawed, to fix in
place: its service cell is an nbgrader solution cell (so nbgrader tracks the learner's
answer there), but nbgrader's ``ClearSolutions`` would release such a cell as a stub
(``raise NotImplementedError()``), and the lab would lose its starting point.
``KeepGeneratedCode`` releases a solution cell without a ``### BEGIN SOLUTION`` region
as it is; cells with solution regions are cleared as nbgrader always does.

The repository's ``nbgrader_config.py`` sets the course up: the course root is the
repository, the source assignments are the folders of ``labs/`` (``labs/02-idempotency``
is the assignment ``02-idempotency``), the reference solutions, mutants and correct alternatives are never
released nor copied into a submission, and ``GenerateAssignment`` uses this preprocessor.
The hidden seed banks are not in the notebooks: grade cells call ``lab.grade``, which
draws them from the grading secret (``autograder.seeds``), for a learner checking their own
work in their own kernel.

Autograde never runs a submitted notebook. ``GradeInGrader`` takes the place of nbgrader's
``Execute``: it reads the submission's service cell (and lab 04's answer cell) as text and
grades them exactly as ``dojo grade`` does (``autograder.submissions.grade_handed_in``:
learner code isolated, the checkers, the hidden bank and its secret in this process only),
then writes each graded part's verdict into its grade cell as the cell's output (a pass as
text, a failure as an error whose lines are the counterexample), from which nbgrader scores.
So nothing a learner writes in the notebook (a patched ``lab.grade``, an IPython
transformer, a forged kernel reply, ``os._exit``, a busy loop, a ``lab/`` package beside the
notebook) runs in the grader or near the secret, and ``nbgrader autograde`` and
``dojo grade`` give the same points. ``KeepSourceCellsOnly`` drops the nbgrader metadata of a
cell the source notebook does not have (a learner's own "grade cell"), which would otherwise
stop nbgrader's run for every student.

Example (an instructor, at the repository's root)::

    nbgrader generate_assignment 02-idempotency     # -> release/02-idempotency/lab.ipynb
    nbgrader autograde 02-idempotency               # submitted/<student>/02-idempotency/
"""

from __future__ import annotations

import base64
import os
import textwrap
from pathlib import Path
from typing import Any

from nbformat.v4 import new_output
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters.autograde import Autograde
from nbgrader.converters.generate_assignment import GenerateAssignment
from nbgrader.preprocessors import (
    ClearSolutions,
    Execute,
    NbGraderPreprocessor,
    OverwriteCells,
)
from traitlets import Bool, Float, Integer, Unicode

#: Pixels and characters of a notebook's column on nbgrader's feedback pages: pictures and messages fit in them.
FEEDBACK_WIDTH = 880
FEEDBACK_COLUMNS = 100

#: Seconds nbgrader lets one cell of a lab notebook run (see ``configure``).
GRADE_CELL_TIMEOUT = 180

#: Files of a lab folder that are never released to learners nor copied over a submission: the reference
#: solutions and answers, the partial fixes (mutants) and the correct alternatives.
NOT_RELEASED = ["solution*.py", "answer.py", "mutants", "alternatives"]


class KeepGeneratedCode(ClearSolutions):
    """``ClearSolutions`` that releases a code cell marked as a solution but holding no solution
    region unchanged: the lab's generated service code, which the learner fixes in place."""

    def preprocess_cell(self, cell: Any, resources: dict, cell_index: int) -> tuple[Any, dict]:
        if (
            cell.cell_type == "code"
            and utils.is_solution(cell)
            and self.begin_solution_delimeter not in cell.source
        ):
            return cell, resources
        return super().preprocess_cell(cell, resources, cell_index)


class KeepSourceCellsOnly(NbGraderPreprocessor):
    """Sanitizing a submission: a cell whose nbgrader id the source notebook does not have (a learner made a cell
    a grade cell, copied one, or broke its metadata) loses its nbgrader metadata and is an ordinary cell."""

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            try:
                notebook = gb.find_notebook(info["notebook"], info["assignment"])
            except MissingEntry:
                return nb, resources
            known = {cell.name for cell in notebook.source_cells}
        for cell in nb.cells:
            metadata = cell.get("metadata")
            if not isinstance(metadata, dict) or "nbgrader" not in metadata:
                continue
            nbgrader = metadata["nbgrader"]
            grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
            if grade_id not in known:
                self.log.warning("Cell %r is not a cell of the source notebook: graded as an ordinary cell",
                                 grade_id if isinstance(grade_id, str) else nbgrader)
                del metadata["nbgrader"]
        return nb, resources


class GradeInGrader(NbGraderPreprocessor):
    """Autograde's grading step, in place of ``Execute`` (see the module docstring): the submission's cells are
    graded as ``dojo grade`` grades them, and each grade cell's output is its part's verdict."""

    labs_root = Unicode("", help="The folder of the course's source labs (labs/<assignment>/lab.py).").tag(config=True)
    time_limit = Float(300.0, help="Real seconds one submission's isolated process may run.").tag(config=True)
    memory_limit_mib = Integer(3072, help="MiB of memory each of its processes may map.").tag(config=True)
    pictures = Bool(True, help="Show each broken part's counterexample picture in its grade cell.").tag(config=True)

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        from .isolation import Limits
        from .labs import load_module
        from .seeds import GRADING_SECRET_ENV
        from .submissions import cells_of, grade_handed_in

        assignment = resources["nbgrader"]["assignment"]
        lab_dir = Path(self.labs_root) / assignment
        if not (lab_dir / "lab.py").is_file():
            raise ValueError(f"GradeInGrader: no lab at {lab_dir} for assignment {assignment!r}: set "
                             f"GradeInGrader.labs_root to the course's labs folder (autograder.nbgrader.configure)")
        lab = load_module(lab_dir, "lab", f"chaos_dojo_grading.{assignment.replace('-', '_')}")
        secret = os.environ.get(GRADING_SECRET_ENV) or None
        if secret is None:
            self.log.warning("%s is not set: grading on the public default hidden bank", GRADING_SECRET_ENV)
        limits = Limits(wall=self.time_limit, memory=self.memory_limit_mib * 1024**2)
        result = grade_handed_in(cells_of(nb.cells), lab_dir, lab, secret=secret, limits=limits,
                                 submission=f"{resources['nbgrader']['student']}/{assignment}",
                                 pictures=self.pictures)
        drawn = result.pop("pictures", {})
        parts = {row["id"]: row for row in result["parts"]}
        count = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            count += 1
            cell.execution_count = count
            if utils.is_grade(cell):
                grade_id = cell.metadata["nbgrader"].get("grade_id")
                cell.outputs = _verdict(parts.get(grade_id))
                if grade_id in drawn:  # shown no wider than a notebook's column, as nbgrader's feedback pages are
                    cell.outputs.append(new_output(
                        "display_data",
                        data={"image/png": base64.b64encode(drawn[grade_id]).decode(), "text/plain": "<counterexample>"},
                        metadata={"image/png": {"width": min(_png_width(drawn[grade_id]), FEEDBACK_WIDTH)}}))
        resources.setdefault("chaos_dojo", {})["result"] = result
        self.log.info("%s: %g/%g", result["submission"], result["points"], result["max_points"])
        return nb, resources


def _verdict(row: dict | None) -> list[Any]:
    """A grade cell's outputs for its part's result: a pass as text on stdout; anything else as an error whose
    lines are what the learner reads (nbgrader scores a cell with an error 0)."""
    if row is None:
        message = "This cell is not a graded part of the lab: no points (the lab's notebook and lab.PARTS disagree)"
        return [new_output("error", ename="NotGraded", evalue=message, traceback=[message])]
    if row["passed"]:
        return [new_output("stream", name="stdout", text=row["message"] + "\n")]
    # nbconvert shows an error's lines unwrapped, cut at the page's edge: wrapped here, at spaces only (a replay
    # line then goes on inside its parentheses, and still pastes as Python)
    lines = [wrapped for line in row["message"].splitlines() for wrapped in _wrap(line)] or ["Not passed"]
    return [new_output("error", ename="NotPassed", evalue=lines[0], traceback=lines)]


def _wrap(line: str) -> list[str]:
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    return textwrap.wrap(line, FEEDBACK_COLUMNS, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) or [""]


def _png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")  # the IHDR chunk's width


def autograde_preprocessors() -> list[type]:
    """nbgrader's ``Autograde`` steps with ``Execute`` replaced by ``GradeInGrader``, and ``KeepSourceCellsOnly``
    before ``OverwriteCells`` while sanitizing."""
    traits = Autograde.class_traits()
    sanitize = list(traits["sanitize_preprocessors"].default())
    sanitize.insert(sanitize.index(OverwriteCells), KeepSourceCellsOnly)
    grade = [GradeInGrader if p is Execute else p for p in traits["autograde_preprocessors"].default()]
    return [sanitize, grade]


def release_preprocessors() -> list[type]:
    """nbgrader's ``GenerateAssignment`` preprocessors with ``ClearSolutions`` replaced by ``KeepGeneratedCode``."""
    default = GenerateAssignment.class_traits()["preprocessors"].default()
    return [KeepGeneratedCode if p is ClearSolutions else p for p in default]


#: The environment variable naming a shared nbgrader exchange (an absolute path to an existing folder).
EXCHANGE_ENV = "CHAOS_DOJO_EXCHANGE"
#: The environment variable naming the gradebook's database (a SQLAlchemy URL), when it is not nbgrader's SQLite file.
GRADEBOOK_ENV = "CHAOS_DOJO_GRADEBOOK"


def configure(c: Any, root: str) -> None:
    """Set nbgrader's config object ``c`` (in ``nbgrader_config.py``) up for the course rooted at ``root``."""
    c.CourseDirectory.course_id = "chaos-dojo"
    c.CourseDirectory.root = root
    c.CourseDirectory.source_directory = "labs"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", *NOT_RELEASED]
    c.GenerateAssignment.preprocessors = release_preprocessors()
    c.Autograde.sanitize_preprocessors, c.Autograde.autograde_preprocessors = autograde_preprocessors()
    c.GradeInGrader.labs_root = os.path.join(root, "labs")
    # Autograde runs no notebook (GradeInGrader), but `nbgrader validate` (a learner's "Validate" button) still runs
    # the notebook, grade cells included, and nbgrader cuts a cell after 30 s by default. A grade cell checks the
    # hidden bank and the adversarial schedules: 3 to 15 s on a 2-core machine at rest, several times that on a
    # busy one. Honest code must never be cut for the machine's load.
    c.Execute.timeout = GRADE_CELL_TIMEOUT
    # The exchange (where nbgrader releases and collects in a shared JupyterHub) defaults to a system folder
    # that does not exist on a learner's machine: nbgrader's assignment list then logs "Unwritable directory,
    # please contact your instructor" at every start of `dojo course`. A folder of the course's own instead; a room
    # sharing one exchange (a JupyterHub's shared volume, course/INSTRUCTORS.md) names it in CHAOS_DOJO_EXCHANGE.
    # The gradebook: nbgrader's SQLite file in the course's folder by default; a room graded on a hub keeps it in
    # PostgreSQL (a SQLAlchemy URL, e.g. postgresql+psycopg://nbgrader@db:5432/gradebook; tests/test_gradebook.py).
    gradebook = os.environ.get(GRADEBOOK_ENV, "").strip()
    if gradebook:
        if "://" not in gradebook:
            raise ValueError(f"{GRADEBOOK_ENV}={gradebook!r} is not a database URL: give a SQLAlchemy URL such as "
                             f"postgresql+psycopg://USER@HOST:5432/gradebook, or unset it for nbgrader's SQLite file")
        c.CourseDirectory.db_url = gradebook
    shared = os.environ.get(EXCHANGE_ENV, "").strip()
    if shared:
        if not os.path.isabs(shared) or not os.path.isdir(shared):
            raise ValueError(f"{EXCHANGE_ENV}={shared!r} is not an existing folder's absolute path: create the shared "
                             f"exchange first (mkdir -p it, writable by every learner), or unset {EXCHANGE_ENV} to use "
                             f"the course's own folder {os.path.join(root, 'exchange')}")
        c.Exchange.root = shared
        return
    exchange = os.path.join(root, "exchange")
    os.makedirs(exchange, exist_ok=True)
    c.Exchange.root = exchange
