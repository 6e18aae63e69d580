"""A correct fix unlike the reference: explicit propagation, the consumer extracts the context itself.

* **The context crosses Kafka by hand.** ``POST /orders`` keeps its SERVER span in a local
  variable and writes *that* span's context into the message headers with a
  ``TraceContextTextMapPropagator`` of its own (no global propagator, no implicit current
  context). The fulfilment extracts the context from ``message.headers`` with the same
  propagator and starts its own span, of kind CONSUMER as the messaging conventions name it,
  as a child of the extracted context: the sandbox's CONSUMER span and this one are both
  children of the request's span, one tree.
* **Attributes one by one**, with ``set_attribute``, on the SERVER span, the sandbox's
  CONSUMER span and the fulfilment's own span; ``POST /orders`` makes no span of its own.
* **Failures recorded where they happen**: each call is checked right after it returns (or
  times out) inside a ``try`` that catches httpx's ``HTTPError`` (an error answer, or a
  timeout: the sandbox's ``RequestTimeout`` is an httpx timeout); the fulfilment span records
  the exception and is set to ERROR before the order is parked. Every span is a ``with`` block.
"""

from __future__ import annotations

import httpx
from fastapi import Depends, FastAPI
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, Field

import sandbox

#: How long to wait for the warehouse and the courier.
TIMEOUT = 1.0
#: W3C Trace Context, written and read by hand.
PROPAGATOR = TraceContextTextMapPropagator()
TAGS = (("order.id", "id"), ("customer.id", "customer"), ("order.region", "region"))


class OrderRequest(BaseModel):
    """What a customer sends to place an order (the id is the customer's, so retries are safe)."""

    id: str
    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    region: str


def tag(span: trace.Span, order: dict) -> None:
    """Say on ``span`` which order it is about."""
    for attribute, field in TAGS:
        span.set_attribute(attribute, order[field])


def create_app() -> FastAPI:
    """The orders service: takes orders, and fulfils them from the order-placed topic."""
    app = FastAPI(title="orders")

    @app.post("/orders", status_code=201)
    async def place_order(
        req: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        producer: sandbox.Producer = Depends(sandbox.producer),
    ) -> dict:
        request_span = trace.get_current_span()
        order = {**req.model_dump(), "status": "placed"}
        tag(request_span, order)
        await db.put("orders", req.id, order)
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(request_span))
        await producer.send("order-placed", order, key=req.id, headers=carrier)
        return order

    @sandbox.consumer(app, "order-placed", group="fulfilment")
    async def fulfil(
        message: sandbox.Message,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        tracer: Tracer = Depends(sandbox.tracer),
    ) -> None:
        order = message.value
        tag(trace.get_current_span(), order)
        placed = PROPAGATOR.extract(carrier=message.headers)
        with tracer.start_as_current_span("fulfil order-placed", context=placed, kind=SpanKind.CONSUMER) as span:
            tag(span, order)
            status = "shipped"
            steps = (
                ("http://warehouse/picks", {"order_id": order["id"], "sku": order["sku"], "qty": order["qty"],
                                            "region": order["region"]}),
                ("http://courier/deliveries", {"order_id": order["id"], "region": order["region"]}),
            )
            for url, body in steps:
                try:
                    r = await http.post(url, json=body, timeout=TIMEOUT)
                    r.raise_for_status()
                except httpx.HTTPError as exc:  # an error answer (HTTPStatusError) or none (a timeout)
                    span.record_exception(exc)
                    span.set_status(StatusCode.ERROR, f"{url} failed: {exc}")
                    status = "needs-attention"
                    break
            await db.put("orders", order["id"], {**order, "status": status})

    return app
