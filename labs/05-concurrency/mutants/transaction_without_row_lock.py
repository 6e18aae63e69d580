"""Mutant: the check and the write in one transaction, but the read takes no lock.

A transaction is not a lock. At PostgreSQL's default isolation (read committed), which the
sandbox's database gives, a plain SELECT inside a transaction reads the last committed
level and locks nothing; two transactions both read "2 left", both write 1. The write's own
row lock only makes the second writer wait, then overwrite: a lost update. SELECT ... FOR
UPDATE (tx.get(..., for_update=True)) is what makes the read and the write one step.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.transaction_without_row_lock")


async def take_stock(tx, order):
    key = _solution.stock_key(order.sku, order.warehouse)
    stock = await tx.get("stock", key)  # no for_update: read committed, no lock
    return await _solution.confirm(tx, key, _solution.require(stock, order.sku, order.warehouse, order.qty), order)


_solution.take_stock = take_stock


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
