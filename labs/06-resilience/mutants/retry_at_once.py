"""Mutant: timeouts and a breaker, and retries at once, without backoff or budget.

When inventory stops answering, every order tries three times in a row: the calls reaching
inventory triple just as it struggles (a retry storm), until the breaker opens.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.retry_at_once")
_solution.BASE = 0.0  # no backoff
_solution.BUDGET_CAP = _solution.BUDGET_RATIO = float("inf")  # no budget


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
