"""Grading Chaos Dojo's labs.

See DESIGN.md, "Grading". What it holds now:

* ``autograder.seeds``: the seed banks a lab is checked against, visible ones for
  self-checks and hidden ones for grading, kept apart and, for graded assessments,
  derived from a secret that exists only where grading runs;
* ``autograder.labs``: what every lab shares: loading its modules, running a learner's
  notebook-defined service afresh per replica, checking a bank, and the grade cells'
  ``grade`` (hidden bank, counterexample on failure, no seed shown on success);
* ``autograder.nbgrader``: the labs as an nbgrader course (``nbgrader_config.py``), whose
  release keeps the generated code the learner fixes.

* ``autograder.isolation``: running learner code in a process of its own, with a
  wall-clock and a memory limit, no network, no view of the grader's files, nothing left
  running after it (bubblewrap where installed);
* ``autograder.runner`` and ``autograder.grading``: a submission's runs in such a process,
  their evidence (``sandbox.evidence``) read back by the grader, whose checkers judge it;
* ``autograder.policy``: what graded code may use, checked before it runs;
* ``autograder.submissions`` and ``autograder.feedback``: ``dojo grade`` (submitted notebooks
  graded in parallel, a JSON result and an HTML page with pictures each), which nbgrader's
  autograde goes through too (``autograder.nbgrader.GradeInGrader``).
"""

from __future__ import annotations

from .seeds import GRADING_SECRET_ENV, seed_bank

__all__ = ["GRADING_SECRET_ENV", "seed_bank"]
