"""Grading Chaos Dojo's labs.

This package grows into the nbgrader course set-up and the isolated, parallel
grader (see DESIGN.md, "Grading"). What it holds now is the part every lab needs
first: the seed banks a lab is checked against (``autograder.seeds``), visible
ones for self-checks and hidden ones for grading, kept apart and, for graded
assessments, derived from a secret that exists only where grading runs.
"""

from __future__ import annotations

from .seeds import GRADING_SECRET_ENV, seed_bank

__all__ = ["GRADING_SECRET_ENV", "seed_bank"]
