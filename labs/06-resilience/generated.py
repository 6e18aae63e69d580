"""The prompt given to the assistant:

    "a checkout service: POST /orders reserves the items at the inventory service and
    charges the card at the payments service, then confirms the order; inventory is a
    bit flaky, so make it robust"

What came back is below: clean, commented, and correct on the happy path. "Robust" became
"try again until it works": every call is retried at once, for ever, with httpx's default
timeout (five seconds). When inventory goes down, every order waits, then retries, then
waits; the requests pile up in both replicas and no shopper gets an answer.
"""

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

import sandbox


class Order(BaseModel):
    """An order for ``qty`` of ``sku``, paid ``amount`` cents."""

    order_id: str
    sku: str
    qty: int = Field(gt=0)
    amount: int = Field(gt=0)


def create_app() -> FastAPI:
    """The checkout service: reserve, charge, confirm."""
    app = FastAPI(title="checkout")

    # --- FIX REGION: fail gracefully if the inventory service is down for more than 3 seconds ---
    @app.post("/orders", status_code=201)
    async def place_order(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        reservation = {"order_id": order.order_id, "sku": order.sku, "qty": order.qty}
        while True:  # inventory is flaky: try again until it answers
            try:
                r = await http.post("http://inventory/reservations", json=reservation)
                if r.status_code == 200:
                    break
            except sandbox.RequestTimeout:
                pass
        while True:  # same for payments
            try:
                r = await http.post("http://payments/charges", json={"order_id": order.order_id,
                                                                     "amount": order.amount})
                if r.status_code == 201:
                    break
            except sandbox.RequestTimeout:
                pass
        return {"order_id": order.order_id, "status": "confirmed"}
    # --- END FIX REGION ---

    return app
