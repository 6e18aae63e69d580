"""Mutant: fulfilment moved to a background loop that dies on the first failed call.

The learner made the consumer quick: the handler tags the CONSUMER span and hands the order,
with its trace context, to a loop the app's lifespan starts (an in-memory queue), and the loop
calls the warehouse and the courier inside ``fulfil-order``, a child of that context. The
traces are right: connected, attributes everywhere, every span ended, and a failed call is
recorded and marked ERROR by the ``with`` block it escapes. But nothing catches it after
that: the exception ends the loop, the task group it ran in is cancelled, and from then on
every order is taken (201), acknowledged to Kafka, queued, and never fulfilled. The only
record is one line in the replica's log. On-call, following any later order, sees its trace
stop at the CONSUMER span with no error anywhere. Caught on every run (the warehouse's cold
start fails the first call): ``one_trace_per_order`` (accepted orders whose trace never
reaches the warehouse), and the counterexample lists the background task that died.
"""

from __future__ import annotations

import contextlib

import anyio
from fastapi import Depends, FastAPI
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Tracer
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
    """Fulfil the queued orders, one at a time, each in the trace it came with."""
    db = await sandbox.resolve(app, sandbox.database("orders-db"))
    http = await sandbox.resolve(app, sandbox.http_client)
    tracer = await sandbox.resolve(app, sandbox.tracer)
    async for order, context in orders:
        with tracer.start_as_current_span("fulfil-order", context=context, attributes=order_attributes(order)):
            await call(http, tracer, "pick", "http://warehouse/picks", {
                "order_id": order["id"], "sku": order["sku"], "qty": order["qty"], "region": order["region"],
            })
            await call(http, tracer, "deliver", "http://courier/deliveries", {
                "order_id": order["id"], "region": order["region"],
            })
            await db.put("orders", order["id"], {**order, "status": "shipped"})


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
        # Hand the order to the fulfilment loop with the current context, so that it continues this trace.
        await app.state.queue.send((order, otel_context.get_current()))

    return app
