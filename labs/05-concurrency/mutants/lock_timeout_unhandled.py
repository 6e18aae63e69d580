"""Mutant: the reference solution, but a lock wait that runs out is not handled.

Waits are bounded (lock_timeout), so nobody hangs. But the LockTimeout escapes the
endpoint: the customer gets a 500, a crash of the service as far as anyone can tell, when
the honest answer is "busy, try again" (503 with Retry-After), or a retry of the transaction.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.lock_timeout_unhandled")


async def locked(db, work, what):
    async with db.transaction(lock_timeout=_solution.LOCK_WAIT) as tx:
        return await work(tx)


_solution.locked = locked


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
