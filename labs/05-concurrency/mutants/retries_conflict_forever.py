"""Mutant: the reference solution, but a lock wait that runs out is tried again, for ever.

A short lock_timeout, then retry: right for a conflict that passes (another order, a
deadlock broken by the timeout). But a conflict can last: while the stock-take counts a
warehouse for 2.5 seconds, these orders retry until it ends, and their customers have long
stopped waiting. Retry a bounded number of times, then say so (503 with Retry-After).
"""

from __future__ import annotations

from pathlib import Path

import sandbox
from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.retries_conflict_forever")


async def locked(db, work, what):
    attempt = 0
    while True:
        try:
            async with db.transaction(lock_timeout=_solution.LOCK_WAIT) as tx:
                return await work(tx)
        except (sandbox.LockTimeout, sandbox.TransactionAborted):
            attempt += 1
            await sandbox.sleep(_solution.BACKOFF)


_solution.locked = locked


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
