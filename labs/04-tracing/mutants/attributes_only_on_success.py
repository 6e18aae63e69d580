"""Mutant: the fulfilment says which order only once the order has shipped.

The context crosses Kafka, the SERVER span of ``POST /orders`` carries its attributes,
failures are marked, spans end. But the learner tags the CONSUMER span at the end of the
happy path, next to the courier's tracking number ("the span is about the delivery"): when
the warehouse or the courier fails, the exception skips the line, and the CONSUMER span of
exactly the orders that went wrong carries no ``order.id``, ``customer.id`` or
``order.region``. On-call, searching for the order a customer complains about, finds the
spans of every order but the failed ones. Passes a run in which nothing fails; caught
whenever a dependency fails (the warehouse's cold start makes sure one does):
``required_attributes``.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Status, StatusCode, Tracer
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


async def call(http: sandbox.HttpClient, tracer: Tracer, name: str, url: str, body: dict) -> dict:
    """POST ``body`` to a dependency inside a span of its own; raise if it fails (no answer, or not 2xx)."""
    with tracer.start_as_current_span(name):
        r = await http.post(url, json=body, timeout=TIMEOUT)
        r.raise_for_status()  # the span records the exception and ends with status ERROR
        return r.json()


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
        with tracer.start_as_current_span("fulfil-order") as span:
            try:
                await call(http, tracer, "pick", "http://warehouse/picks", {
                    "order_id": order["id"], "sku": order["sku"], "qty": order["qty"], "region": order["region"],
                })
                delivery = await call(http, tracer, "deliver", "http://courier/deliveries", {
                    "order_id": order["id"], "region": order["region"],
                })
                # The delivery is booked: say which order it was, and its tracking number.
                consumer_span.set_attributes({**order_attributes(order), "delivery.tracking": delivery["tracking"]})
                status = "shipped"
            except Exception as exc:
                # Park the order for a human, as before, but say so in the trace.
                for marked in (span, consumer_span):
                    marked.record_exception(exc)
                    marked.set_status(Status(StatusCode.ERROR, f"fulfilment failed: {type(exc).__name__}: {exc}"))
                status = "needs-attention"
            await db.put("orders", order["id"], {**order, "status": status})

    return app
