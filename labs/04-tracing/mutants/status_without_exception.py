"""Mutant: a failure marked ERROR, but the exception never recorded.

The context crosses Kafka, attributes are everywhere, spans end. The calls to the warehouse
and the courier run straight inside ``fulfil-order`` (no span of their own), and a failure
is caught and marked with ``span.set_status(StatusCode.ERROR)`` on ``fulfil-order`` and on
the CONSUMER span, with no description and no ``span.record_exception(exc)``. The spans are
red, so on-call knows that the order failed; but not why: no exception event, so no type,
message or stack trace (a 503 from a busy warehouse and a timeout on a lossy link look the
same), and trace backends that list errors by exception type have nothing to list. The
notebook asks for both; caught whenever a dependency fails (the warehouse's cold start makes
sure one does): ``failures_marked``.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import StatusCode, Tracer
from pydantic import BaseModel, Field

import sandbox

#: How long to wait for the warehouse and the courier.
TIMEOUT = 1.0


class OrderRequest(BaseModel):
    """What a customer sends to place an order (the id is the customer's, so retries are safe)."""

    id: str
    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    region: str


def order_attributes(order: dict) -> dict[str, str]:
    """The attributes on-call searches by: which order, whose, shipped where."""
    return {"order.id": order["id"], "customer.id": order["customer"], "order.region": order["region"]}


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
        trace.get_current_span().set_attributes(order_attributes(order))  # the SERVER span
        with tracer.start_as_current_span("save-order", attributes=order_attributes(order)):
            await db.put("orders", req.id, order)
        headers: dict[str, str] = {}
        inject(headers)  # traceparent (and tracestate): the consumer continues this trace
        await producer.send("order-placed", order, key=req.id, headers=headers)
        return order

    @sandbox.consumer(app, "order-placed", group="fulfilment")
    async def fulfil(
        message: sandbox.Message,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        tracer: Tracer = Depends(sandbox.tracer),
    ) -> None:
        order = message.value
        consumer_span = trace.get_current_span()  # the CONSUMER span, child of the message's traceparent
        consumer_span.set_attributes(order_attributes(order))
        with tracer.start_as_current_span("fulfil-order", attributes=order_attributes(order)) as span:
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
            except Exception:
                # Park the order for a human, and paint the spans red.
                span.set_status(StatusCode.ERROR)
                consumer_span.set_status(StatusCode.ERROR)
                status = "needs-attention"
            await db.put("orders", order["id"], {**order, "status": status})

    return app
