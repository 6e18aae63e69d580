"""Mutant: the reference solution, but its transactions wait for locks as long as the database lets them.

Row locks, taken in one order, checks under the lock: nothing is oversold. But while the
stock-take holds a warehouse's rows for 2.5 seconds, every order for them waits, up to the
database's lock_timeout (5 s), longer than any customer waits. Bound the wait
(db.transaction(lock_timeout=...)) and answer "busy, try again" (503 with Retry-After).
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.waits_unbounded")

_solution.LOCK_WAIT = None  # the database's own lock_timeout


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
