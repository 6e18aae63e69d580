"""Mutant: timeouts, backoff with jitter and a retry budget, but no circuit breaker.

Every order still calls inventory during the outage, and waits its timeout before being
refused: the answers are in time and the retries within budget, but inventory keeps getting
a hundred calls a second while it is down (as it restarts, or recovers from overload).
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.no_breaker")
_solution.MIN_CALLS = 10**9  # never enough calls to open


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
