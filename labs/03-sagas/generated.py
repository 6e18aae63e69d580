"""The prompt given to the assistant:

    "An order orchestrator in FastAPI: POST /orders reserves stock in inventory, charges
    the card in payments, books shipping in shipping, and returns the order. The three
    are separate services: inventory has POST /reservations and DELETE /reservations/{id},
    payments has POST /charges and POST /refunds, shipping has POST /shipments."

What came back is below: clean, commented, and it works on the happy path.
"""

from __future__ import annotations

import uuid

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

#: The catalogue, in cents.
PRICES = {"lamp": 2_500, "kettle": 3_900, "teapot": 1_800, "desk": 14_900}
# --- FIX REGION 1: the saga's machinery (constants and helpers). Each step and each compensation is sent
# with an id derived from the order, so that sending it again is the same request; it is retried until
# the answer is definite (2xx done, 4xx refused); the saga's state is saved in orders-db before and after
# every step. ---
#: How long to wait for each downstream service.
TIMEOUT = 1.0
# --- END FIX REGION 1 ---


class OrderRequest(BaseModel):
    """What a customer sends to place an order."""

    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    card: str = Field(min_length=12)
    address: str


class Order(BaseModel):
    """A placed order."""

    id: str
    customer: str
    sku: str
    qty: int
    amount: int  # cents
    status: str = "confirmed"


def create_app() -> FastAPI:
    """The orders service: places an order across inventory, payments and shipping."""
    # --- FIX REGION 2: recovery. A replica that starts (or is alive) finds the sagas left unfinished by a
    # dead or stuck driver and takes each one to an end: completed, or compensated. ---
    app = FastAPI(title="orders")
    # --- END FIX REGION 2 ---

    @app.post("/orders", status_code=201)
    async def place_order(
        req: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Order:
        if req.sku not in PRICES:
            raise HTTPException(404, f"unknown product {req.sku!r}")
        # --- FIX REGION 3: the saga. Every order ends completed (reserved, charged, shipped) or
        # compensated (refund, then release: the reverse order), and the customer is told which. ---
        order_id = f"ord-{uuid.uuid4().hex[:10]}"
        amount = PRICES[req.sku] * req.qty

        # 1. Reserve the stock.
        r = await http.post(
            "http://inventory/reservations",
            json={"id": f"res-{order_id}", "order_id": order_id, "sku": req.sku, "qty": req.qty},
            timeout=TIMEOUT,
        )
        if r.status_code != 201:
            raise HTTPException(409, f"{req.sku} is out of stock")

        # 2. Charge the card.
        r = await http.post(
            "http://payments/charges",
            json={"id": f"ch-{order_id}", "order_id": order_id, "amount": amount, "card": req.card},
            timeout=TIMEOUT,
        )
        if r.status_code != 201:
            raise HTTPException(402, f"payment failed: {r.text}")

        # 3. Book the shipment.
        r = await http.post(
            "http://shipping/shipments",
            json={"id": f"shp-{order_id}", "order_id": order_id, "sku": req.sku, "qty": req.qty,
                  "address": req.address},
            timeout=TIMEOUT,
        )
        if r.status_code != 201:
            raise HTTPException(502, f"shipping failed: {r.text}")

        # 4. Save the order.
        order = Order(id=order_id, customer=req.customer, sku=req.sku, qty=req.qty, amount=amount)
        await db.put("orders", order_id, order.model_dump())
        return order
        # --- END FIX REGION 3 ---

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, db: sandbox.Database = Depends(sandbox.database("orders-db"))) -> Order:
        order = await db.get("orders", order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id!r}")
        return Order(**order)

    return app
