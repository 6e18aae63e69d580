"""Mutant (declared CP): a write is acknowledged only once *every* replica stored it.

Everything else is the reference solution (one leader, 503 and 504, recovery of a lost
disk). But "a majority" became "all of them": the leader waits for both followers. It is
consistent (waiting for more copies never makes a read stale), and on a healthy network
it looks the same. But with one replica down, cut off, or slow, every write on the
majority side times out with 504, though two of three replicas could have taken it: a CP
service that is unavailable without any partition of its majority. The step missed: a
*majority*, not everyone, is enough.
"""

from __future__ import annotations

from pathlib import Path

import anyio

import sandbox
from autograder.labs import load_module

CAP_CHOICE = "CP"
PRIMARY = "inventory-0"

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution_cp.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution_cp", "chaos_dojo_labs.lab01.cp_all_acks")


async def propose(http: sandbox.HttpClient, proposal) -> str:
    """Send ``proposal`` to every follower and wait for all of them: "stored" only if every one stored it."""
    followers = _solution.others()
    answers = await sandbox.gather(*(_solution.replicate(http, peer, proposal) for peer in followers))
    if all(a is True for a in answers):
        return "stored"
    return "refused" if all(a is False for a in answers) else "unknown"


_solution.propose = propose
assert anyio  # (the reference's lock and events come with it)


def create_app():
    """The reference solution's service, waiting for every replica."""
    return _solution.create_app()
