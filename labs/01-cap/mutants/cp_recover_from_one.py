"""Mutant (declared CP): a leader that lost its disk recovers from the first replica to answer.

Everything else is the reference solution. But when the leader comes back with an empty
disk, it copies the state of whichever follower answers first and starts serving. A write
is committed once the leader and *one* follower stored it; the other follower may have
missed it (it was cut off, or slow). If that one answers first, the leader takes its stale
copy, and acknowledged writes are gone. The step missed: the leader must hear from every
other replica (the newest copy of each sku wins), since the last committed value may be
on only one of them.
"""

from __future__ import annotations

from pathlib import Path

import sandbox
from autograder.labs import load_module

CAP_CHOICE = "CP"
PRIMARY = "inventory-0"

_solution = load_module(Path(__file__).parent.parent, "solution_cp", "chaos_dojo_labs.lab01.cp_recover_from_one")


async def recover(app, status: dict) -> None:
    """Copy the state of the first other replica that answers, unless the disk survived."""
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    if await disk.get("meta", "formatted", False) or not _solution.others():
        status["ready"] = True
        return
    sources = _solution.others() if sandbox.hostname() == _solution.leader() else [_solution.leader()]

    async def ask(peer: str) -> dict | None:
        try:
            r = await http.get(f"http://{peer}/replica", timeout=_solution.RECOVERY_TIMEOUT)
        except sandbox.RequestTimeout:
            return None
        return r.json() if r.status_code == 200 else None

    state = None
    while state is None:
        for answer in await _first_answer(sources, ask):
            state = answer
        if state is None:
            await sandbox.sleep(_solution.RECOVERY_PAUSE)
    async with status["storing"], disk.transaction() as tx:
        numbers = state["proposals"]
        for sku, theirs in state["rows"].items():
            numbers = max(numbers, theirs["seq"])
            await tx.put("stock", sku, theirs)
        await tx.put("meta", "proposals", numbers)
        await tx.put("meta", "formatted", True)
    status["ready"] = True


async def _first_answer(sources: list[str], ask) -> list[dict]:
    """Ask every source at once; the first answer that comes (as a one-item list), or [] if none did."""
    import anyio

    found: list[dict] = []
    async with anyio.create_task_group() as tasks:
        async def one(peer: str) -> None:
            answer = await ask(peer)
            if answer is not None and not found:
                found.append(answer)
                tasks.cancel_scope.cancel()

        for peer in sources:
            tasks.start_soon(one, peer)
    return found


_solution.recover = recover


def create_app():
    """The reference solution's service, recovering from one replica."""
    return _solution.create_app()
