"""Mutant: a conditional write, but on the version read just before the write.

Compare-and-set protects a read-check-write only if the version it compares is the one the
check read. This one checks an old read, reads the row again right before writing and writes
"if the version is still" the one it has just read: the condition holds nearly always, and two
orders that both checked "1 left" both take it. The version must travel from the read that
was checked to the write.
"""

from __future__ import annotations

from pathlib import Path

import sandbox
from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.version_read_at_write")


async def place(db, http, order):
    key = _solution.stock_key(order.sku, order.warehouse)
    _solution.require(await db.get("stock", key), order.sku, order.warehouse, order.qty)
    await _solution.approve(http, order)
    row = await db.get_row("stock", key)  # the version of now, not of the level checked above
    try:
        await db.put("stock", key, {**row.value, "qty": row.value["qty"] - order.qty}, if_version=row.version)
    except sandbox.VersionConflict:
        raise _solution.busy(f"order {order.id}") from None
    confirmed = order.model_dump()
    await db.insert("orders", order.id, confirmed)
    return confirmed


_solution.place = place


def create_app():
    """The reference solution's service, with the change above."""
    return _solution.create_app()
