"""Mutant: timeouts, backoff with jitter, a breaker, but no retry budget.

Each order may try three times: when everything fails at once, the calls reaching inventory
nearly triple, second after second, until the breaker opens. Backoff spreads a storm out in
time; only a budget makes it smaller.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.no_budget")
_solution.BUDGET_CAP = _solution.BUDGET_RATIO = float("inf")  # every retry allowed


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
