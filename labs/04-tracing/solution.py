"""The reference solution: the generated service, with traces an on-call engineer can use.

* **The context crosses Kafka.** ``POST /orders`` injects the current context (W3C
  ``traceparent``) into the message headers with OpenTelemetry's propagator; the sandbox's
  consumer instrumentation extracts it, so the CONSUMER span, and everything under it,
  continues the customer's trace. A redelivered message carries the same headers, so it
  continues the same trace too.
* **Every span that handles an order says which.** The SERVER span of ``POST /orders`` and
  the CONSUMER span of ``order-placed`` carry ``order.id``, ``customer.id`` and
  ``order.region`` (and so do the service's own spans).
* **Failures leave a mark.** A failed call to the warehouse or the courier (an error answer,
  or none at all) is recorded on the span (``record_exception``) and sets its status to
  ERROR, before the fallback parks the order; the status travels up to the CONSUMER span.
* **Every span ends**: each is a context manager, so it ends on every path, errors included.

It also holds the graded answer's reference: ``slowest_dependency(world)``.
"""

from __future__ import annotations

from collections import defaultdict

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


def slowest_dependency(world: sandbox.World) -> str:
    """The dependency that makes the slow orders slow: over the slowest tenth of the traces (at
    least three), the service whose calls take the most time in total.

    Example::

        slowest_dependency(world)   # 'courier'
    """
    spans = world.spans()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for s in spans:
        t = s.context.trace_id
        first[t] = min(first.get(t, s.start_time), s.start_time)
        last[t] = max(last.get(t, s.end_time), s.end_time)
    by_duration = sorted(first, key=lambda t: last[t] - first[t], reverse=True)
    slow = set(by_duration[: max(3, len(by_duration) // 10)])
    spent: dict[str, float] = defaultdict(float)
    for s in spans:
        if s.context.trace_id in slow and s.kind.name == "CLIENT" and "server.address" in s.attributes:
            spent[s.attributes["server.address"]] += (s.end_time - s.start_time) / 1e9
    spent.pop("orders", None)  # the customers' own requests
    return max(sorted(spent), key=spent.__getitem__)
