"""Mutant: a transfer locks its source row, then its target row, and waits as long as the database lets it.

Each transfer is atomic and checked under its locks. But a transfer east -> west locks east
and waits for west, while a transfer west -> east locks west and waits for east: each holds
what the other needs, a deadlock, and nothing breaks it until the database's lock_timeout
(5 s), long after the rebalancers gave up. Lock rows in one order (by key) in every
transaction, or bound the wait and retry.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.transfers_lock_in_request_order")

_solution.LOCK_WAIT = None  # the database's own lock_timeout
_solution.lock_order = lambda keys: list(dict.fromkeys(keys))  # as the request names them: source, then target


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
