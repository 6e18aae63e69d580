"""The prompt given to the assistant:

    "an inventory service for our three warehouses: POST /orders takes stock for an order
    (409 if the warehouse does not have enough), after the fraud service approves it;
    POST /transfers moves stock from one warehouse to another for the rebalancing job"

What came back is below: clean, commented, and correct on the happy path (one order at a
time). It reads the stock, checks it, and writes it back.
"""

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

WAREHOUSES = ("east", "west", "north")


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


def create_app() -> FastAPI:
    """The inventory service: orders take stock, transfers move it between warehouses."""
    app = FastAPI(title="inventory")

    # --- FIX REGION 1: an order takes stock only if it is there, however many orders come at once ---
    @app.post("/orders", status_code=201)
    async def place_order(
        order: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("inventory-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> dict:
        key = stock_key(order.sku, order.warehouse)
        stock = await db.get("stock", key)
        if stock is None:
            raise HTTPException(404, f"{order.sku!r} is not stocked in {order.warehouse!r}")
        if stock["qty"] < order.qty:
            raise HTTPException(409, f"only {stock['qty']} x {order.sku} left in {order.warehouse}")
        await approve(http, order)
        # Read the latest stock level before updating it, then take the order's units.
        stock = await db.get("stock", key)
        await db.put("stock", key, {**stock, "qty": stock["qty"] - order.qty})
        confirmed = order.model_dump()
        await db.insert("orders", order.id, confirmed)
        return confirmed
    # --- END FIX REGION 1 ---

    # --- FIX REGION 2: a transfer moves stock without losing or inventing a unit, and never waits for ever ---
    @app.post("/transfers", status_code=201)
    async def transfer(
        move: TransferRequest,
        db: sandbox.Database = Depends(sandbox.database("inventory-db")),
    ) -> dict:
        source_key, target_key = stock_key(move.sku, move.source), stock_key(move.sku, move.target)
        source = await db.get("stock", source_key)
        target = await db.get("stock", target_key)
        if source is None or target is None:
            raise HTTPException(404, f"{move.sku!r} is not stocked in {move.source!r} and {move.target!r}")
        if source["qty"] < move.qty:
            raise HTTPException(409, f"only {source['qty']} x {move.sku} left in {move.source}")
        await db.put("stock", source_key, {**source, "qty": source["qty"] - move.qty})
        await db.put("stock", target_key, {**target, "qty": target["qty"] + move.qty})
        return move.model_dump()
    # --- END FIX REGION 2 ---

    @app.get("/stock/{sku}/{warehouse}")
    async def stock_level(sku: str, warehouse: str, db: sandbox.Database = Depends(sandbox.database("inventory-db"))) -> dict:
        row = await db.get("stock", stock_key(sku, warehouse))
        if row is None:
            raise HTTPException(404, f"{sku!r} is not stocked in {warehouse!r}")
        return row

    return app
