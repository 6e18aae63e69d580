"""Mutant: the generated read-check-write, guarded by an anyio.Lock.

Within one replica the lock works: two orders for the last lamp in one process take turns. But
the service runs as two replicas, each a process of its own with its own lock; an order on one
and an order on the other still both read "1 left" and both take it. The lock that every
replica sees is the database's (a row lock, or a conditional write). Caught by the burst alone:
an order confirmed for stock that was not there.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.in_process_lock")

_LOCK = anyio.Lock()  # one per process: one per replica


async def place(db, http, order):
    key = _solution.stock_key(order.sku, order.warehouse)
    async with _LOCK:
        stock = _solution.require(await db.get("stock", key), order.sku, order.warehouse, order.qty)
        await _solution.approve(http, order)
        return await _solution.confirm(db, key, stock, order)


_solution.place = place


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
