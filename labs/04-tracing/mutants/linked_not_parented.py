"""Mutant: fulfilment in a trace of its own, linked to the order's trace instead of continuing it.

The producer injects the context, attributes are everywhere, failures are marked, spans end.
But the learner read that a consumer may *link* to the message's context instead of taking it
as its parent, and made fulfilment "its own unit of work": ``fulfil-order`` starts a new trace
(an empty context) with a span link to the context in the message headers. A link is what a
batch of messages from many traces needs; for one message it cuts the order in two. The
customer's trace stops at the empty CONSUMER span, the warehouse's and courier's work is in
another trace, and the waterfall on-call opens for the order shows none of it (most trace
views list links, if at all, as a footnote). Caught on every run: ``connected_traces`` (a
span on the service starts a trace of its own).
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, Status, StatusCode, Tracer
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
    with tracer.start_as_current_span(name, attributes={"order.id": body["order_id"]}):
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
        inject(headers)  # traceparent (and tracestate): the consumer can find the order's trace
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
        consumer_span = trace.get_current_span()
        consumer_span.set_attributes(order_attributes(order))
        # Fulfilment is a unit of work of its own: a new trace, linked to the order's.
        placed = trace.get_current_span(extract(message.headers)).get_span_context()
        with tracer.start_as_current_span("fulfil-order", context=Context(), links=[Link(placed)],
                                          attributes=order_attributes(order)) as span:
            try:
                await call(http, tracer, "pick", "http://warehouse/picks", {
                    "order_id": order["id"], "sku": order["sku"], "qty": order["qty"], "region": order["region"],
                })
                await call(http, tracer, "deliver", "http://courier/deliveries", {
                    "order_id": order["id"], "region": order["region"],
                })
                status = "shipped"
            except Exception as exc:
                # Park the order for a human, as before, but say so in the trace.
                for marked in (span, consumer_span):
                    marked.record_exception(exc)
                    marked.set_status(Status(StatusCode.ERROR, f"fulfilment failed: {type(exc).__name__}: {exc}"))
                status = "needs-attention"
            await db.put("orders", order["id"], {**order, "status": status})

    return app
