"""The prompt given to the assistant:

    "An orders service in FastAPI: POST /orders saves the order and publishes order-placed to
    Kafka; a fulfilment consumer reads order-placed and calls the warehouse (POST /picks) and the
    courier (POST /deliveries) over HTTP. Add OpenTelemetry tracing."

What came back is below: clean, commented, traced, and it works on the happy path. It makes
spans of its own with the tracer, and the sandbox instruments HTTP, the database and Kafka as
OpenTelemetry's instrumentation libraries would. But nothing carries the trace context into the
Kafka message, so every message the consumer handles starts a trace of its own; the spans carry
no order id, so on-call cannot find an order's spans; and a failed call to the warehouse or the
courier ends in a fallback that leaves every span looking fine.
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI
from opentelemetry.trace import Tracer
from pydantic import BaseModel, Field

import sandbox

log = logging.getLogger("orders")

#: How long to wait for the warehouse and the courier.
TIMEOUT = 1.0


class OrderRequest(BaseModel):
    """What a customer sends to place an order (the id is the customer's, so retries are safe)."""

    id: str
    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    region: str


def create_app() -> FastAPI:
    """The orders service: takes orders, and fulfils them from the order-placed topic."""
    app = FastAPI(title="orders")

    @app.post("/orders", status_code=201)
    async def place_order(
        req: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        producer: sandbox.Producer = Depends(sandbox.producer),
        tracer: Tracer = Depends(sandbox.tracer),
    ) -> dict:
        order = {**req.model_dump(), "status": "placed"}
        # --- FIX REGION 1: the spans that take the order say which order (order.id, customer.id, order.region) ---
        with tracer.start_as_current_span("save-order"):
            await db.put("orders", req.id, order)
        # --- END FIX REGION 1 ---
        # --- FIX REGION 2: the message carries the trace context, so that fulfilment continues this trace ---
        # Tell fulfilment about it (the key keeps an order's messages in one partition).
        await producer.send("order-placed", order, key=req.id)
        # --- END FIX REGION 2 ---
        return order

    @sandbox.consumer(app, "order-placed", group="fulfilment")
    async def fulfil(
        message: sandbox.Message,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        tracer: Tracer = Depends(sandbox.tracer),
    ) -> None:
        order = message.value
        # --- FIX REGION 3: the spans that fulfil the order say which order; a failed call to the warehouse or
        # the courier leaves its mark (the exception recorded, status ERROR); every span ends ---
        with tracer.start_as_current_span("fulfil-order"):
            try:
                r = await http.post("http://warehouse/picks", timeout=TIMEOUT, json={
                    "order_id": order["id"], "sku": order["sku"], "qty": order["qty"], "region": order["region"],
                })
                r.raise_for_status()
                r = await http.post("http://courier/deliveries", timeout=TIMEOUT, json={
                    "order_id": order["id"], "region": order["region"],
                })
                r.raise_for_status()
                status = "shipped"
            except Exception as exc:
                # Don't let one bad order block the topic: park it for a human to look at.
                log.warning("fulfilment of %s failed: %s", order["id"], exc)
                status = "needs-attention"
            await db.put("orders", order["id"], {**order, "status": status})
        # --- END FIX REGION 3 ---

    return app
