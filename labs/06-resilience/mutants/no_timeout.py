"""Mutant: retries, a budget and a breaker, but no timeout and no deadline.

Every call waits as long as httpx waits by default (five seconds), and the order as long
as its calls take. The breaker opens in the end (its calls do fail, five seconds later),
but every order that arrived in the meantime waits for seconds: the shopper has no answer
within the bound. A timeout on each call, and a deadline for the whole order, come first.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.no_timeout")
_solution.INVENTORY_TIMEOUT = _solution.CHARGE_TIMEOUT = 5.0  # httpx's default
_solution.DEADLINE = _solution.INVENTORY_SHARE = 60.0


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
