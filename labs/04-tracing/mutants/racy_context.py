"""Mutant: the request's context kept in a module-level variable, and read back after an await.

The attributes are everywhere, failures are marked, spans end, and the message headers carry
a ``traceparent``. But ``POST /orders`` remembers its context in a global as it starts
(``_request_context = context.get_current()``) and injects from that global after saving
the order. Two requests on one replica that overlap across the ``await`` race: the second
overwrites the global, and the first order's message carries the second order's context.
Its fulfilment is then a perfectly connected tree, in somebody else's trace: a trace viewer
shows nothing wrong, and on-call following order A reads order B's courier call. Caught when
requests overlap on a replica (a slow database, a busy minute): ``one_trace_per_order``.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from opentelemetry import context, trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Status, StatusCode, Tracer
from pydantic import BaseModel, Field

import sandbox

#: The context of the request being handled, for the message headers.
_request_context: context.Context | None = None

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
        global _request_context
        _request_context = context.get_current()
        order = {**req.model_dump(), "status": "placed"}
        trace.get_current_span().set_attributes(order_attributes(order))  # the SERVER span
        with tracer.start_as_current_span("save-order", attributes=order_attributes(order)):
            await db.put("orders", req.id, order)
        headers: dict[str, str] = {}
        inject(headers, context=_request_context)  # the request's context, kept from its start
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
