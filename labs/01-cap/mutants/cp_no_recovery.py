"""Mutant (declared CP): a replica that lost its disk starts serving from the empty one.

Everything else is the reference solution: one leader, a majority stores every write, 503
and 504. But a replica does not look at what it lost: it serves as soon as it starts,
whatever its disk holds. When the leader loses its disk, it comes back believing every
stock is 0, although each write it acknowledged is still on a follower: reads go back in
time and the next adjustments build on nothing. The step missed: a replica that restarts
empty learns the state from the others before it serves (the leader, from all of them).
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

CAP_CHOICE = "CP"
PRIMARY = "inventory-0"

_solution = load_module(Path(__file__).parent.parent, "solution_cp", "chaos_dojo_labs.lab01.cp_no_recovery")


async def recover(app, status: dict) -> None:
    """Nothing to recover: the disk holds what it holds."""
    status["ready"] = True


_solution.recover = recover


def create_app():
    """The reference solution's service, without recovery."""
    return _solution.create_app()
