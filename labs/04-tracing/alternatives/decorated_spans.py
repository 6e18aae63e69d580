"""A correct fix unlike the reference: spans made by a decorator, busy answers retried, marks on the CONSUMER span.

* **Spans by decorator.** ``@traced("pick")`` wraps a coroutine in a span of that name (the
  tracer is the first argument of the wrapped call) and hands the span in; the ``with`` block
  it uses ends the span on every path and records an exception that escapes it, with status
  ERROR. The warehouse and the courier are each called through one such step.
* **Busy answers are retried.** A 503 (busy, or loading its cache) is retried twice with a
  short backoff, each attempt a CLIENT span of its own under the step's span; a retry that
  succeeds is no failure. A timeout is not retried (the pick may have happened), it fails the
  step.
* **The context crosses Kafka** through a ``publish`` helper that injects the current context
  (the SERVER span's) into the message headers with the global propagator.
* **Which order, and what failed, on the spans the sandbox makes.** ``POST /orders`` tags its
  SERVER span and makes no span of its own; the handler tags the CONSUMER span, and when a
  step fails, records the exception on it and sets it to ERROR, then parks the order.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Status, StatusCode, Tracer
from pydantic import BaseModel, Field

import sandbox

#: How long to wait for the warehouse and the courier, and how often to ask a busy one again.
TIMEOUT = 1.0
ATTEMPTS = 3
BACKOFF = 0.05


class OrderRequest(BaseModel):
    """What a customer sends to place an order (the id is the customer's, so retries are safe)."""

    id: str
    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    region: str


def traced(name: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Run the decorated coroutine inside a span called ``name``: ``await step(tracer, ...)``; the
    coroutine gets the span as its first argument."""

    def decorate(step: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(step)
        async def run(tracer: Tracer, *args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span(name) as span:
                return await step(span, *args, **kwargs)

        return run

    return decorate


async def post(http: sandbox.HttpClient, url: str, body: dict) -> dict:
    """POST ``body``, asking again (after a short pause) while the answer is 503; raise on any other failure."""
    for attempt in range(1, ATTEMPTS + 1):
        r = await http.post(url, json=body, timeout=TIMEOUT)
        if r.status_code == 503 and attempt < ATTEMPTS:
            await sandbox.sleep(BACKOFF * attempt)
            continue
        r.raise_for_status()
        return r.json()
    raise AssertionError("unreachable")


@traced("pick")
async def pick(span: trace.Span, http: sandbox.HttpClient, order: dict) -> dict:
    span.set_attribute("order.id", order["id"])
    return await post(http, "http://warehouse/picks", {
        "order_id": order["id"], "sku": order["sku"], "qty": order["qty"], "region": order["region"],
    })


@traced("deliver")
async def deliver(span: trace.Span, http: sandbox.HttpClient, order: dict) -> dict:
    span.set_attribute("order.id", order["id"])
    return await post(http, "http://courier/deliveries", {"order_id": order["id"], "region": order["region"]})


async def publish(producer: sandbox.Producer, order: dict) -> None:
    """Tell fulfilment about ``order``, with the current trace context in the headers."""
    headers: dict[str, str] = {}
    inject(headers)
    await producer.send("order-placed", order, key=order["id"], headers=headers)


def tag_current_span(order: dict) -> None:
    trace.get_current_span().set_attributes(
        {"order.id": order["id"], "customer.id": order["customer"], "order.region": order["region"]}
    )


def create_app() -> FastAPI:
    """The orders service: takes orders, and fulfils them from the order-placed topic."""
    app = FastAPI(title="orders")

    @app.post("/orders", status_code=201)
    async def place_order(
        req: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        producer: sandbox.Producer = Depends(sandbox.producer),
    ) -> dict:
        order = {**req.model_dump(), "status": "placed"}
        tag_current_span(order)
        await db.put("orders", req.id, order)
        await publish(producer, order)
        return order

    @sandbox.consumer(app, "order-placed", group="fulfilment")
    async def fulfil(
        message: sandbox.Message,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        tracer: Tracer = Depends(sandbox.tracer),
    ) -> None:
        order = message.value
        tag_current_span(order)
        try:
            await pick(tracer, http, order)
            await deliver(tracer, http, order)
            status = "shipped"
        except Exception as exc:
            consumer_span = trace.get_current_span()
            consumer_span.record_exception(exc)
            consumer_span.set_status(Status(StatusCode.ERROR, f"fulfilment failed: {type(exc).__name__}: {exc}"))
            status = "needs-attention"
        await db.put("orders", order["id"], {**order, "status": status})

    return app
