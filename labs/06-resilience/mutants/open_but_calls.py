"""Mutant: a breaker that reports "open", and calls inventory anyway.

Its state moves legally and its gauge says "open", but ``allow()`` lets every call through:
the dashboard shows a breaker that does nothing, and inventory keeps getting every call.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.open_but_calls")
_allow = _solution.Breaker.allow


def _always(self):
    _allow(self)  # keeps the state machine (and its events) moving
    return True, False


_solution.Breaker.allow = _always


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
