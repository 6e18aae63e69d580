"""Mutant: orders fixed (row locks, bounded waits), transfers left as they were generated.

Every order is safe against every other order. But a transfer still reads both levels, checks,
and writes both back in two separate statements: an order that takes a lamp from east between
the transfer's read of east and its write is overwritten, its unit taken twice or restored.
Every path that writes a row must take the same lock.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.transfers_read_modify_write")


async def transfer_stock(db, move):
    source_key, target_key = _solution.stock_key(move.sku, move.source), _solution.stock_key(move.sku, move.target)
    source = _solution.require(await db.get("stock", source_key), move.sku, move.source, move.qty)
    target = _solution.require(await db.get("stock", target_key), move.sku, move.target, 0)
    await db.put("stock", source_key, {**source, "qty": source["qty"] - move.qty})
    await db.put("stock", target_key, {**target, "qty": target["qty"] + move.qty})
    return move.model_dump()


_solution.transfer_stock = transfer_stock


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
