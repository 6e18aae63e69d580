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
draws them from the grading secret (``autograder.seeds``).

Example (an instructor, at the repository's root)::

    nbgrader generate_assignment 02-idempotency     # -> release/02-idempotency/lab.ipynb
    nbgrader autograde 02-idempotency               # submitted/<student>/02-idempotency/
"""

from __future__ import annotations

import os
from typing import Any

from nbgrader import utils
from nbgrader.converters.generate_assignment import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions

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


def release_preprocessors() -> list[type]:
    """nbgrader's ``GenerateAssignment`` preprocessors with ``ClearSolutions`` replaced by ``KeepGeneratedCode``."""
    default = GenerateAssignment.class_traits()["preprocessors"].default()
    return [KeepGeneratedCode if p is ClearSolutions else p for p in default]


def configure(c: Any, root: str) -> None:
    """Set nbgrader's config object ``c`` (in ``nbgrader_config.py``) up for the course rooted at ``root``."""
    c.CourseDirectory.course_id = "chaos-dojo"
    c.CourseDirectory.root = root
    c.CourseDirectory.source_directory = "labs"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", *NOT_RELEASED]
    c.GenerateAssignment.preprocessors = release_preprocessors()
    # nbgrader cuts a cell after 30 s by default. A grade cell checks the hidden bank and the adversarial schedules:
    # 3 to 15 s on a 2-core machine at rest, several times that on a grading machine busy with other submissions.
    # Honest code must never be cut for the machine's load.
    c.Execute.timeout = GRADE_CELL_TIMEOUT
    # The exchange (where nbgrader releases and collects in a shared JupyterHub) defaults to a system folder
    # that does not exist on a learner's machine: nbgrader's assignment list then logs "Unwritable directory,
    # please contact your instructor" at every start of `dojo course`. A folder of the course's own instead.
    exchange = os.path.join(root, "exchange")
    os.makedirs(exchange, exist_ok=True)
    c.Exchange.root = exchange
