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

import random

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

WAREHOUSES = ("east", "west", "north")
#: How many times an order or a transfer is tried, and how long its conditional writes wait for a row lock (seconds).
ATTEMPTS = 4
LOCK_WAIT = 0.1


class OrderRequest(BaseModel):
    """Take ``qty`` units of ``sku`` from ``warehouse`` for order ``id``."""

    id: str
    customer: str
    sku: str
    warehouse: str
    qty: int = Field(ge=1)


class TransferRequest(BaseModel):
    """Move ``qty`` units of ``sku`` from warehouse ``source`` to warehouse ``target``."""

    id: str
    sku: str
    source: str
    target: str
    qty: int = Field(ge=1)


def stock_key(sku: str, warehouse: str) -> str:
    """The key of a stock row in the ``stock`` table: ``"lamp@east"``."""
    return f"{sku}@{warehouse}"


async def approve(http: sandbox.HttpClient, order: OrderRequest) -> None:
    """Ask the fraud service to approve the order (it takes a few tens of milliseconds)."""
    r = await http.post("http://fraud/checks", json={"order_id": order.id, "customer": order.customer})
    if r.status_code != 200 or not r.json()["approved"]:
        raise HTTPException(403, f"order {order.id} was not approved")


def require(stock: dict | None, sku: str, warehouse: str, qty: int) -> dict:
    """The stock row, if it holds ``qty`` units: 404 if the product is not stocked there, 409 if there are fewer."""
    if stock is None:
        raise HTTPException(404, f"{sku!r} is not stocked in {warehouse!r}")
    if stock["qty"] < qty:
        raise HTTPException(409, f"only {stock['qty']} x {sku} left in {warehouse}")
    return stock


def busy(what: str) -> HTTPException:
    """503 with Retry-After: the rows stayed locked (a stock-take, a deadlock) longer than we wait."""
    return HTTPException(503, f"{what}: the stock is locked right now, try again shortly", headers={"Retry-After": "1"})


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
    raise busy(what)


async def place(db, http, order):
    await approve(http, order)
    key = stock_key(order.sku, order.warehouse)

    async def once():
        row = await db.get_row("stock", key)
        require(row and row.value, order.sku, order.warehouse, order.qty)
        confirmed = order.model_dump()
        async with db.transaction(lock_timeout=LOCK_WAIT) as tx:
            await tx.put("stock", key, {**row.value, "qty": row.value["qty"] - order.qty}, if_version=row.version)
            await tx.insert("orders", order.id, confirmed)
        return confirmed

    return await _retry(f"order {order.id}", once)


async def transfer_stock(db, move):
    source_key, target_key = stock_key(move.sku, move.source), stock_key(move.sku, move.target)

    async def once():
        if source_key == target_key:
            raise HTTPException(422, f"a transfer from {move.source!r} to itself moves nothing")
        source, target = await db.get_row("stock", source_key), await db.get_row("stock", target_key)
        require(source and source.value, move.sku, move.source, move.qty)
        require(target and target.value, move.sku, move.target, 0)
        writes = {source_key: (source, -move.qty), target_key: (target, move.qty)}
        async with db.transaction(lock_timeout=LOCK_WAIT) as tx:
            for key in sorted(writes):
                row, change = writes[key]
                await tx.put("stock", key, {**row.value, "qty": row.value["qty"] + change}, if_version=row.version)
        return move.model_dump()

    return await _retry(f"transfer {move.id}", once)


def create_app() -> FastAPI:
    """The inventory service, safe under concurrency: see the module docstring."""
    app = FastAPI(title="inventory")

    @app.post("/orders", status_code=201)
    async def place_order(
        order: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("inventory-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> dict:
        return await place(db, http, order)

    @app.post("/transfers", status_code=201)
    async def transfer(move: TransferRequest, db: sandbox.Database = Depends(sandbox.database("inventory-db"))) -> dict:
        return await transfer_stock(db, move)

    @app.get("/stock/{sku}/{warehouse}")
    async def stock_level(sku: str, warehouse: str, db: sandbox.Database = Depends(sandbox.database("inventory-db"))) -> dict:
        row = await db.get("stock", stock_key(sku, warehouse))
        if row is None:
            raise HTTPException(404, f"{sku!r} is not stocked in {warehouse!r}")
        return row

    return app
