"""Mutant: a breaker that opens and never half-opens.

The outage is contained, but after it ends no probe ever goes through: the checkout refuses
every order for ever, although inventory came back long ago.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.never_half_opens")
_solution.OPEN_FOR = 1e9  # open "for a while" that never ends


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
