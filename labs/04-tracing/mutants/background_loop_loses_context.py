"""Mutant: fulfilment moved to a background loop, and the trace context left behind.

The learner made the consumer quick: the handler tags the CONSUMER span and hands the order
to a loop the app's lifespan starts (an in-memory queue); the loop calls the warehouse and the
courier inside a ``fulfil-order`` span with the order's attributes, marks failures (exception
and status) and parks the order, and every span ends. But only the order goes into the queue,
not the context: the loop runs in the lifespan's context, where no span is current, so each
``fulfil-order`` starts a trace of its own, and the HTTP instrumentation, which propagates the
*current* context, carries that new trace to the warehouse and the courier. The customer's
trace stops at the CONSUMER span. (It also acknowledges each message before the order is
fulfilled: a crash loses what is queued.) Caught on every run: ``connected_traces`` (a span
started outside any request's context).
"""

from __future__ import annotations

import contextlib

import anyio
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


async def fulfilment_loop(app: FastAPI, orders: anyio.abc.ObjectReceiveStream) -> None:
    """Fulfil the queued orders, one at a time; park an order whose fulfilment fails."""
    db = await sandbox.resolve(app, sandbox.database("orders-db"))
    http = await sandbox.resolve(app, sandbox.http_client)
    tracer = await sandbox.resolve(app, sandbox.tracer)
    async for order in orders:
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
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"fulfilment failed: {type(exc).__name__}: {exc}"))
                status = "needs-attention"
            await db.put("orders", order["id"], {**order, "status": status})


def create_app() -> FastAPI:
    """The orders service: takes orders, and fulfils them from the order-placed topic."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        queue, orders = anyio.create_memory_object_stream(max_buffer_size=1000)
        app.state.queue = queue
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(fulfilment_loop, app, orders)
            yield
            await queue.aclose()  # on shutdown the loop finishes what is queued, then stops

    app = FastAPI(title="orders", lifespan=lifespan)

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
    async def fulfil(message: sandbox.Message) -> None:
        order = message.value
        trace.get_current_span().set_attributes(order_attributes(order))  # the CONSUMER span
        await app.state.queue.send(order)  # the fulfilment loop takes it from here

    return app
