"""A correct alternative: optimistic concurrency, a compare-and-set on the row's version, retried a bounded number of times.

No row is locked while a decision is made. An order reads the stock row with its version
(``get_row``), checks the level, and writes the new level only if the row is still at that
version (``put(..., if_version=v)``, PostgreSQL's ``UPDATE ... WHERE version = v``), in the
transaction that records the order. If another writer got there first, the write fails with
``VersionConflict`` and the order reads again and decides again: a few times, then 503. A
transfer does the same with both rows, in one transaction. Under little contention this is
cheaper than locking; under much, the retries cost (the module's widget measures it).

The conditional writes themselves wait for the row's lock while someone holds it (the
stock-take): their transaction bounds that wait too.
"""

from __future__ import annotations

import random
from pathlib import Path

from fastapi import HTTPException

import sandbox
from autograder.labs import load_module

# The reference's models and endpoints, with the two operations done optimistically. The world runs this module afresh
# for each replica (so create_app is defined here).
_service = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.optimistic_cas")
ATTEMPTS = 4
LOCK_WAIT = 0.1


async def _retry(what: str, attempt_once):
    """``attempt_once()`` until it returns something other than None (None: a conflict), at most ATTEMPTS times."""
    for attempt in range(ATTEMPTS):
        try:
            done = await attempt_once()
        except sandbox.VersionConflict:
            done = None  # someone wrote the row since we read it: read again, decide again
        except (sandbox.LockTimeout, sandbox.TransactionAborted):
            done = None
            await sandbox.sleep(min(0.03 * 2**attempt, 0.1) * random.uniform(0.5, 1.5))
        if done is not None:
            return done
    raise _service.busy(what)


async def place(db, http, order):
    await _service.approve(http, order)
    key = _service.stock_key(order.sku, order.warehouse)

    async def once():
        row = await db.get_row("stock", key)
        _service.require(row and row.value, order.sku, order.warehouse, order.qty)
        confirmed = order.model_dump()
        async with db.transaction(lock_timeout=LOCK_WAIT) as tx:
            await tx.put("stock", key, {**row.value, "qty": row.value["qty"] - order.qty}, if_version=row.version)
            await tx.insert("orders", order.id, confirmed)
        return confirmed

    return await _retry(f"order {order.id}", once)


async def transfer_stock(db, move):
    source_key, target_key = _service.stock_key(move.sku, move.source), _service.stock_key(move.sku, move.target)

    async def once():
        if source_key == target_key:
            raise HTTPException(422, f"a transfer from {move.source!r} to itself moves nothing")
        source, target = await db.get_row("stock", source_key), await db.get_row("stock", target_key)
        _service.require(source and source.value, move.sku, move.source, move.qty)
        _service.require(target and target.value, move.sku, move.target, 0)
        writes = {source_key: (source, -move.qty), target_key: (target, move.qty)}
        async with db.transaction(lock_timeout=LOCK_WAIT) as tx:
            for key in sorted(writes):
                row, change = writes[key]
                await tx.put("stock", key, {**row.value, "qty": row.value["qty"] + change}, if_version=row.version)
        return move.model_dump()

    return await _retry(f"transfer {move.id}", once)


_service.place = place
_service.transfer_stock = transfer_stock


def create_app():
    """The inventory service, optimistic: see the module docstring."""
    return _service.create_app()
