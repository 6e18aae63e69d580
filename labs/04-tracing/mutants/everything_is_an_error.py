"""Mutant: every call to a dependency is marked ERROR, the successful ones too.

The context crosses Kafka, attributes are everywhere, spans end, and a failed call is
recorded and marked. But the learner also checks each answer by hand, and checks it against
``200``: the warehouse and the courier answer ``201 Created``, so the condition is true for
every answer and every ``pick`` and ``deliver`` span ends red. Error rates and alerts count
each shipped order as a failure, and on-call, paged for an error rate of 100 %, learns to
ignore the red, including the one day it is real. It passes the graded part as it was
written (every failure is marked); caught now on every run: ``failures_marked`` names a span
marked ERROR in a handling where nothing failed.
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
    with tracer.start_as_current_span(name, attributes={"order.id": body["order_id"]}) as span:
        r = await http.post(url, json=body, timeout=TIMEOUT)
        if r.status_code != 200:  # the dependencies answer 201 Created: true for every answer
            span.set_status(Status(StatusCode.ERROR, f"{name} answered {r.status_code}"))
        r.raise_for_status()
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
