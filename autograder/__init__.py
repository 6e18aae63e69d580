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

The isolated, parallel grader (each submission in its own process, time and memory
limits, no network) is still to come.
"""

from __future__ import annotations

from .seeds import GRADING_SECRET_ENV, seed_bank

__all__ = ["GRADING_SECRET_ENV", "seed_bank"]
