"""Mutant: the stock row locked first, and the fraud service asked while the lock is held.

Correct under a quick fraud service. When it slows down (0.3 s an answer), every order for
that row queues behind the one waiting for fraud, and the queue grows faster than it drains:
customers wait longer than they will (and, like most code that holds locks across calls, it
leaves its waits to the database's lock_timeout). Ask other services before taking a lock,
never while holding one.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.lock_held_across_call")

_solution.LOCK_WAIT = None  # the database's own lock_timeout


async def place(db, http, order):
    async def take(tx):
        await tx.get("stock", _solution.stock_key(order.sku, order.warehouse), for_update=True)
        await _solution.approve(http, order)  # the row stays locked for the whole call
        return await _solution.take_stock(tx, order)

    return await _solution.locked(db, take, f"order {order.id}")


_solution.place = place


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
