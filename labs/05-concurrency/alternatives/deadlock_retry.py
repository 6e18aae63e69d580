"""A correct alternative: locks taken in the order the request names them, deadlocks broken by the lock timeout.

The reference takes a transfer's two row locks in key order, so that no two transactions
ever wait for each other in a circle. This one does not: a transfer east -> west and one west
-> east can deadlock. But every wait is bounded (``lock_timeout``): the first of the two to
time out is aborted, releasing its lock, the other goes through, and the aborted one is tried
again after a jittered backoff (or answered 503). That is what PostgreSQL does with a
deadlock it detects (it aborts one of the transactions, the application retries it): a
deadlock is not a bug if something breaks it quickly and the work is retried.
"""

import random

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

WAREHOUSES = ("east", "west", "north")
#: How long a transaction waits for a row lock (seconds), how many times it is tried, and the backoff between tries.
LOCK_WAIT = 0.1
ATTEMPTS = 3
BACKOFF = 0.03


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


async def confirm(db: sandbox.Database | sandbox.Transaction, key: str, stock: dict, order: OrderRequest) -> dict:
    """Write the level ``stock`` less the order's units, and record the order (in ``db``: a transaction, or not)."""
    await db.put("stock", key, {**stock, "qty": stock["qty"] - order.qty})
    confirmed = order.model_dump()
    await db.insert("orders", order.id, confirmed)
    return confirmed


def busy(what: str) -> HTTPException:
    """503 with Retry-After: the rows stayed locked (a stock-take, a deadlock) longer than we wait."""
    return HTTPException(503, f"{what}: the stock is locked right now, try again shortly", headers={"Retry-After": "1"})


async def locked(db: sandbox.Database, work, what: str):
    """Run ``work(tx)`` in a transaction whose lock waits are bounded, tried ATTEMPTS times; 503 after that."""
    for attempt in range(ATTEMPTS):
        try:
            async with db.transaction(lock_timeout=LOCK_WAIT) as tx:
                return await work(tx)
        except (sandbox.LockTimeout, sandbox.TransactionAborted):
            await sandbox.sleep(BACKOFF * 2**attempt * random.uniform(0.5, 1.5))
    raise busy(what)


def lock_order(keys: list[str]) -> list[str]:
    """The order rows are locked in: as the request names them (source, then target). Deadlocks can happen; the
    lock timeout breaks them and ``locked`` tries the aborted transaction again."""
    return list(dict.fromkeys(keys))


async def take_stock(tx: sandbox.Transaction, order: OrderRequest) -> dict:
    """Inside ``tx``: lock the order's stock row, check it, take the units, record the order."""
    key = stock_key(order.sku, order.warehouse)
    stock = await tx.get("stock", key, for_update=True)  # the lock makes the check and the write one step
    return await confirm(tx, key, require(stock, order.sku, order.warehouse, order.qty), order)


async def place(db: sandbox.Database, http: sandbox.HttpClient, order: OrderRequest) -> dict:
    """Approve the order (holding nothing: never a lock across a call to another service), then take its stock."""
    await approve(http, order)
    return await locked(db, lambda tx: take_stock(tx, order), f"order {order.id}")


async def move_stock(tx: sandbox.Transaction, move: TransferRequest) -> dict:
    """Inside ``tx``: lock both rows (in ``lock_order``), check the source, move the units."""
    source_key, target_key = stock_key(move.sku, move.source), stock_key(move.sku, move.target)
    rows = {key: await tx.get("stock", key, for_update=True) for key in lock_order([source_key, target_key])}
    if move.source == move.target:
        raise HTTPException(422, f"a transfer from {move.source!r} to itself moves nothing")
    source = require(rows[source_key], move.sku, move.source, move.qty)
    target = require(rows[target_key], move.sku, move.target, 0)
    await tx.put("stock", source_key, {**source, "qty": source["qty"] - move.qty})
    await tx.put("stock", target_key, {**target, "qty": target["qty"] + move.qty})
    return move.model_dump()


async def transfer_stock(db: sandbox.Database, move: TransferRequest) -> dict:
    """Move the units in one transaction, its lock waits bounded."""
    return await locked(db, lambda tx: move_stock(tx, move), f"transfer {move.id}")


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
