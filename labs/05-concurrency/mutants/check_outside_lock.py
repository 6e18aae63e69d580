"""Mutant: the write under a row lock, the check before it without one.

The stock level is checked on a plain read, the fraud service asked, and only then a
transaction locks the row (FOR UPDATE) and takes the units from the level it reads there. No
update is lost any more, but the check was made on a level that has changed since: two orders
that both saw "1 left" both go through, and the second takes the level to -1. The lock must
cover the check as well as the write.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.check_outside_lock")


async def place(db, http, order):
    key = _solution.stock_key(order.sku, order.warehouse)
    _solution.require(await db.get("stock", key), order.sku, order.warehouse, order.qty)
    await _solution.approve(http, order)

    async def take(tx):
        return await _solution.confirm(tx, key, await tx.get("stock", key, for_update=True), order)

    return await _solution.locked(db, take, f"order {order.id}")


_solution.place = place


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
