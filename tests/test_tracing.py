"""Tracing: OpenTelemetry spans in virtual time, seeded ids, W3C propagation, OTLP/JSON export."""

from __future__ import annotations

import base64
import json
import re

import pytest
from fastapi import Depends, FastAPI, Header, Request
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import sandbox
from sandbox.clocks import EPOCH_NS

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


# --- service code under test -----------------------------------------------------------


def orders_app() -> FastAPI:
    app = FastAPI()

    @app.post("/orders", status_code=201)
    async def place(order: dict, http: sandbox.HttpClient = Depends(sandbox.http_client), tracer=Depends(sandbox.tracer)):
        with tracer.start_as_current_span("validate") as span:
            span.set_attribute("order.sku", order["sku"])
        r = await http.post("http://payments/charges", json={"amount": 10})
        return r.json()

    @app.post("/nested", status_code=201)
    async def nested(http: sandbox.HttpClient = Depends(sandbox.http_client), tracer=Depends(sandbox.tracer)):
        with tracer.start_as_current_span("charge"):
            r = await http.post("http://payments/charges", json={"amount": 10}, timeout=1.0)
        return r.json()

    @app.post("/crash", status_code=201)
    async def crash():
        raise RuntimeError("out of paper")

    @app.post("/risky")
    async def risky(tracer=Depends(sandbox.tracer)):
        try:
            with tracer.start_as_current_span("parse-sku"):
                raise ValueError("bad sku 'x'")
        except ValueError:
            return {"recovered": True}

    @app.post("/publish")
    async def publish(body: dict, producer: sandbox.Producer = Depends(sandbox.producer)):
        headers: dict[str, str] = {}
        if body["propagate"]:
            TraceContextTextMapPropagator().inject(headers)
        await producer.send("orders", {"n": body["n"]}, headers=headers)
        return headers

    return app


def payments_app() -> FastAPI:
    app = FastAPI()

    @app.post("/charges", status_code=201)
    async def charge(body: dict, request: Request, traceparent: str | None = Header(None)):
        return {"traceparent": traceparent, "served_by": request.scope["server"][0]}

    return app


def shipping_app() -> FastAPI:
    app = FastAPI()

    @sandbox.consumer(app, "orders", group="shipping")
    async def ship(message: sandbox.Message, tracer=Depends(sandbox.tracer)):
        with tracer.start_as_current_span("pack"):
            pass

    return app


# --- helpers ---------------------------------------------------------------------------


def new_world(seed: int = 3, *, tracing: bool = True, constant_latency: float | None = None) -> sandbox.World:
    world = sandbox.World(seed, tracing=tracing)
    if constant_latency is not None:
        world.network.set_defaults(latency=constant_latency, jitter=0, distribution="constant")
    world.add_service("orders", orders_app)
    world.add_service("payments", payments_app, replicas=2)
    return world


def post(world: sandbox.World, path: str, body: dict | None = None, *, start: float = 0.0, name: str = "shopper") -> dict:
    """Have a workload client POST ``body`` to the orders service; the dict fills in as it runs."""
    out: dict = {}

    async def one_request(client: sandbox.Client) -> None:
        r = await client.http.post(f"http://orders{path}", json=body or {})
        out["status"] = r.status_code
        out["body"] = r.json() if r.headers.get("content-type") == "application/json" else r.text

    world.add_client(name, one_request, start=start)
    return out


def place_one_order(seed: int = 3, *, start: float = 0.0, **kwargs) -> tuple[sandbox.World, dict]:
    """Run one shopper placing one order (orders calls payments); return the world and the response."""
    world = new_world(seed, **kwargs)
    out = post(world, "/orders", {"sku": "lamp"}, start=start)
    world.run()
    return world, out


def span_named(world: sandbox.World, name: str, kind: SpanKind | None = None):
    (span,) = [s for s in world.spans() if s.name == name and (kind is None or s.kind == kind)]
    return span


def ns(t: float) -> int:
    """The OpenTelemetry timestamp of virtual time ``t``."""
    return EPOCH_NS + round(t * 1e9)


# --- one connected trace ---------------------------------------------------------------


def test_a_request_through_two_services_is_one_connected_trace():
    """client -> orders -> payments gives spans that share one trace id, each non-root span's parent in the trace."""
    world, out = place_one_order()
    assert out["status"] == 201
    spans = world.spans()
    assert sorted((s.resource.attributes["service.name"], s.name, s.kind.name) for s in spans) == [
        ("orders", "POST", "CLIENT"),  # orders calling payments
        ("orders", "POST /orders", "SERVER"),
        ("orders", "validate", "INTERNAL"),
        ("payments", "POST /charges", "SERVER"),
        ("shopper", "POST", "CLIENT"),  # the workload client's request
    ]
    assert len({s.context.trace_id for s in spans}) == 1
    ids = {s.context.span_id for s in spans}
    assert len(ids) == 5
    non_roots = [s for s in spans if s.parent is not None]
    assert len(non_roots) == 4
    assert all(s.parent.span_id in ids and s.parent.trace_id == s.context.trace_id for s in non_roots)


def test_the_workload_clients_span_is_the_root():
    """The only span without a parent is the workload client's CLIENT span."""
    world, _ = place_one_order()
    (root,) = [s for s in world.spans() if s.parent is None]
    assert root.kind == SpanKind.CLIENT
    assert root.resource.attributes["service.instance.id"] == "shopper"
    assert root.attributes["url.full"] == "http://orders/orders"


def test_each_hop_is_the_child_of_the_one_before():
    """The orders server span is the client span's child, and the payments server span the child of orders' call."""
    world, _ = place_one_order()
    by_node = {(s.resource.attributes["service.name"], s.kind): s for s in world.spans() if s.name != "validate"}
    shopper = by_node[("shopper", SpanKind.CLIENT)]
    orders_server = by_node[("orders", SpanKind.SERVER)]
    orders_call = by_node[("orders", SpanKind.CLIENT)]
    payments_server = by_node[("payments", SpanKind.SERVER)]
    assert orders_server.parent.span_id == shopper.context.span_id
    assert orders_call.parent.span_id == orders_server.context.span_id
    assert payments_server.parent.span_id == orders_call.context.span_id


def test_traceparent_travels_in_the_http_headers():
    """The callee sees a W3C traceparent header naming the trace and the caller's CLIENT span."""
    world, out = place_one_order()
    match = TRACEPARENT.match(out["body"]["traceparent"])
    assert match is not None, out["body"]["traceparent"]
    (orders_call,) = [
        s for s in world.spans() if s.kind == SpanKind.CLIENT and s.resource.attributes["service.name"] == "orders"
    ]
    assert match.group(1) == format(orders_call.context.trace_id, "032x")
    assert match.group(2) == format(orders_call.context.span_id, "016x")


def tracestate_app() -> FastAPI:
    app = FastAPI()

    @app.get("/continue")
    async def continue_trace(http: sandbox.HttpClient = Depends(sandbox.http_client), tracer=Depends(sandbox.tracer)):
        # a trace continued from a carrier that holds a vendor's tracestate (a gateway's, say)
        carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "congo=t61rcWkgMzE"}
        with tracer.start_as_current_span("work", context=TraceContextTextMapPropagator().extract(carrier)):
            r = await http.get("http://payments/echo")
        return r.json()

    @app.get("/echo")
    async def echo(request: Request):
        return {"tracestate": request.headers.get("tracestate"), "traceparent": request.headers.get("traceparent")}

    return app


def test_tracestate_travels_with_the_trace():
    """W3C tracestate goes out with traceparent: the callee receives it and its server span carries it, as the
    exported client span does (before, the client span showed it and the request did not carry it)."""
    world = sandbox.World(3, tracing=True)
    world.add_service("orders", tracestate_app)
    world.add_service("payments", tracestate_app)
    out: dict = {}

    async def one_request(client: sandbox.Client) -> None:
        out["body"] = (await client.http.get("http://orders/continue")).json()

    world.add_client("shopper", one_request)
    world.run()
    assert out["body"]["tracestate"] == "congo=t61rcWkgMzE"
    assert out["body"]["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    continued = [s for s in world.spans() if format(s.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"]
    by_name = {s.name: s for s in continued}
    assert sorted(by_name) == ["GET", "GET /echo", "work"]
    for name in ("work", "GET", "GET /echo"):
        assert by_name[name].context.trace_state.to_header() == "congo=t61rcWkgMzE", name
    assert by_name["GET /echo"].parent.span_id == by_name["GET"].context.span_id


def test_user_spans_nest_under_the_server_span():
    """A span started with the tracer dependency is a child of the request's SERVER span."""
    world, _ = place_one_order()
    validate = span_named(world, "validate")
    server = span_named(world, "POST /orders")
    assert validate.parent.span_id == server.context.span_id
    assert validate.attributes["order.sku"] == "lamp"
    assert validate.resource.attributes["service.instance.id"] == "orders-0"


def test_concurrent_requests_on_one_replica_keep_their_own_traces():
    """Requests interleaved on one replica, each awaiting inside a user span, never mix their traces."""
    world = new_world()
    for i in range(3):
        post(world, "/nested", name=f"shopper-{i}")
    world.run()
    spans = world.spans()
    traces: dict[int, list] = {}
    for span in spans:
        traces.setdefault(span.context.trace_id, []).append(span)
    assert len(traces) == 3
    for trace in traces.values():
        names = {s.name: s for s in trace}
        assert sorted(names) == ["POST", "POST /charges", "POST /nested", "charge"]
        calls = [s for s in trace if s.kind == SpanKind.CLIENT and s.resource.attributes["service.name"] == "orders"]
        assert [c.parent.span_id for c in calls] == [names["charge"].context.span_id]


# --- virtual time, seeds, resources ----------------------------------------------------


def test_span_timestamps_are_virtual_time():
    """Span start and end times are clocks.EPOCH_NS plus virtual time in nanoseconds, exactly."""
    world, _ = place_one_order(start=1.0, constant_latency=0.01)
    # the shopper starts at t=1.0 and each hop takes 10 ms: shopper -> orders -> payments -> orders -> shopper
    t0 = 1.0
    t1 = t0 + 0.01
    t2 = t1 + 0.01
    t3 = t2 + 0.01
    t4 = t3 + 0.01
    times = {(s.resource.attributes["service.name"], s.name): (s.start_time, s.end_time) for s in world.spans()}
    assert times == {
        ("shopper", "POST"): (ns(t0), ns(t4)),
        ("orders", "POST /orders"): (ns(t1), ns(t3)),
        ("orders", "validate"): (ns(t1), ns(t1)),
        ("orders", "POST"): (ns(t1), ns(t3)),
        ("payments", "POST /charges"): (ns(t2), ns(t2)),
    }


def test_ids_are_seeded():
    """The same seed gives the same trace and span ids; another seed gives others."""

    def ids(seed: int) -> list[tuple[int, int]]:
        world, _ = place_one_order(seed)
        return [(s.context.trace_id, s.context.span_id) for s in world.spans()]

    first, again, other = ids(3), ids(3), ids(4)
    assert first == again
    assert {t for t, _ in first}.isdisjoint(t for t, _ in other)
    assert {s for _, s in first}.isdisjoint(s for _, s in other)


def test_service_spans_carry_their_service_and_replica():
    """A service's spans carry resource service.name (the service) and service.instance.id (the replica)."""
    world, out = place_one_order()
    payments = span_named(world, "POST /charges")
    assert payments.resource.attributes["service.name"] == "payments"
    assert payments.resource.attributes["service.instance.id"] == out["body"]["served_by"]
    assert out["body"]["served_by"] in {"payments-0", "payments-1"}
    orders = span_named(world, "POST /orders")
    assert dict(orders.resource.attributes) == {
        "service.name": "orders", "service.instance.id": "orders-0", "chaos_dojo.node.kind": "service",
    }


# --- errors ----------------------------------------------------------------------------


def test_an_unhandled_exception_is_recorded_on_the_server_span():
    """An endpoint that raises gives a 500, and its SERVER span has ERROR status and an exception event."""
    world = new_world()
    out = post(world, "/crash")
    world.run()
    assert out["status"] == 500
    server = span_named(world, "POST /crash")
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["http.response.status_code"] == 500
    (event,) = [e for e in server.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "out of paper"
    assert span_named(world, "POST", SpanKind.CLIENT).status.status_code == StatusCode.ERROR


def test_an_exception_in_a_user_span_is_recorded_on_it():
    """An exception leaving a user span marks it ERROR with an exception event at virtual time; the request may still succeed."""
    world = new_world(constant_latency=0.01)
    out = post(world, "/risky")
    world.run()
    assert out["body"] == {"recovered": True}
    user = span_named(world, "parse-sku")
    assert user.status.status_code == StatusCode.ERROR
    (event,) = user.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.timestamp == ns(0.01)
    assert span_named(world, "POST /risky").status.status_code == StatusCode.UNSET


def test_a_timed_out_call_ends_its_client_span_with_the_error():
    """A call that gets no response ends its CLIENT span with ERROR status and a RequestTimeout exception event."""
    world = new_world(constant_latency=0.01)
    world.network.partition(["orders"], ["payments"])
    out = post(world, "/nested")
    world.run()
    assert out["status"] == 500
    (call,) = [s for s in world.spans() if s.kind == SpanKind.CLIENT and s.resource.attributes["service.name"] == "orders"]
    assert call.status.status_code == StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in call.events] == ["sandbox.errors.RequestTimeout"]
    assert call.end_time - call.start_time == pytest.approx(1e9, abs=1e3)  # the call's 1 s timeout


# --- through the broker ----------------------------------------------------------------


def test_a_consumer_span_continues_the_trace_only_when_the_producer_sent_traceparent():
    """A CONSUMER span is the child of the producer's context if the message carries traceparent; else a new root."""
    world = new_world()
    world.broker.create_topic("orders", partitions=1)
    world.add_service("shipping", shipping_app)
    sent = post(world, "/publish", {"n": 0, "propagate": True}, name="with-context")
    post(world, "/publish", {"n": 1, "propagate": False}, name="without-context", start=0.5)
    world.run(until=2)
    assert TRACEPARENT.match(sent["body"]["traceparent"])
    consumers = sorted(
        (s for s in world.spans() if s.kind == SpanKind.CONSUMER), key=lambda s: s.attributes["messaging.kafka.offset"]
    )
    assert [s.name for s in consumers] == ["process orders", "process orders"]
    with_context, without_context = consumers
    publish = [s for s in world.spans() if s.name == "POST /publish"]
    (propagated,) = [s for s in publish if s.context.trace_id == with_context.context.trace_id]
    assert with_context.parent.span_id == propagated.context.span_id
    assert without_context.parent is None
    assert without_context.context.trace_id not in {s.context.trace_id for s in publish}


def test_user_spans_in_a_consumer_nest_under_the_consumer_span():
    """A span started in a consumer handler is a child of that message's CONSUMER span."""
    world = new_world()
    world.add_service("shipping", shipping_app)
    post(world, "/publish", {"n": 0, "propagate": False})
    world.run(until=1)
    consumer = next(s for s in world.spans() if s.kind == SpanKind.CONSUMER)
    pack = span_named(world, "pack")
    assert pack.parent.span_id == consumer.context.span_id
    assert pack.resource.attributes["service.instance.id"] == "shipping-0"


# --- export ----------------------------------------------------------------------------


def _ids_to_base64(node) -> None:
    """Undo OTLP/JSON's hex ids, back to protobuf JSON's base64 bytes."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId"):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_base64(item)


def _all_spans(export: dict) -> list[dict]:
    return [span for rs in export["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]]


def test_otlp_json_writes_ids_as_lowercase_hex():
    """otlp_json() is JSON whose trace ids are 32 and span ids 16 lowercase hex digits, as OTLP/JSON requires."""
    world, _ = place_one_order()
    export = json.loads(world.tracing.otlp_json())
    spans = _all_spans(export)
    assert len(spans) == len(world.spans())
    assert all(re.fullmatch(r"[0-9a-f]{32}", s["traceId"]) for s in spans)
    assert all(re.fullmatch(r"[0-9a-f]{16}", s["spanId"]) for s in spans)
    assert sum("parentSpanId" in s for s in spans) == 4
    assert all(re.fullmatch(r"[0-9a-f]{16}", s["parentSpanId"]) for s in spans if "parentSpanId" in s)
    assert {s["spanId"] for s in spans} == {format(s.context.span_id, "016x") for s in world.spans()}


def test_otlp_json_is_valid_against_the_protobuf_schema():
    """With ids back in base64, otlp_json() parses as an ExportTraceServiceRequest with every span."""
    world, _ = place_one_order()
    export = json.loads(world.tracing.otlp_json(indent=2))
    _ids_to_base64(export)
    request = json_format.Parse(json.dumps(export), ExportTraceServiceRequest())
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == len(world.spans()) == 5
    assert sorted(s.start_time_unix_nano for s in spans) == sorted(s.start_time for s in world.spans())
    assert {s.kind for s in spans} == {1, 2, 3}  # INTERNAL, SERVER, CLIENT


def test_tracing_off_records_no_spans():
    """Without tracing=True the world records no spans, and the tracer dependency still works (as a no-op)."""
    world, out = place_one_order(tracing=False)
    assert out["status"] == 201
    assert world.tracing is None
    assert world.spans() == []


def annotating_app() -> FastAPI:
    from opentelemetry import trace

    app = FastAPI()

    @app.post("/orders/{order_id}", status_code=201)
    async def place(order_id: str):
        span = trace.get_current_span()  # the sandbox's SERVER span, as with auto-instrumentation
        span.set_attribute("order.id", order_id)
        span.add_event("validated")
        return {"id": order_id}

    return app


def test_service_code_can_annotate_the_automatic_server_span():
    """trace.get_current_span() in an endpoint is the SERVER span; attributes and events added there are exported."""
    world = sandbox.World(seed=3, tracing=True)
    world.add_service("shop", annotating_app)

    async def buyer(client: sandbox.Client) -> None:
        await client.http.post("http://shop/orders/o-7")

    world.add_client("buyer", buyer)
    world.run()
    (server,) = [s for s in world.spans() if s.kind == SpanKind.SERVER]
    assert server.name == "POST /orders/{order_id}"
    assert server.attributes["order.id"] == "o-7"
    assert [e.name for e in server.events] == ["validated"]
    assert world.spans() == world.spans()  # built once, then the same objects


# --- regressions found in review -------------------------------------------------------


def slow_writer_app() -> FastAPI:
    app = FastAPI()

    @app.post("/orders")
    async def place(db: sandbox.Database = Depends(sandbox.database("orders-db"))):
        """Think for 0.5 s, then store the order."""
        await sandbox.sleep(0.5)
        await db.put("orders", "o1", {})
        return {}

    return app


def test_a_crash_leaves_no_exported_span_without_its_parent():
    """A node crashing while its request waits on the database leaves no exported span whose parent is missing."""
    world = sandbox.World(seed=1, tracing=True)
    world.add_database("orders-db")
    world.add_service("orders", slow_writer_app)
    world.network.set_links("orders", "orders-db", latency=0.2, both_ways=True)
    post(world, "/orders")
    world.run(until=0.6)
    assert world.recorder.entries("net.send")[-1][2:5] == ("orders-0", "orders-db", "db")  # the put is in flight
    world.crash("orders")
    world.run(until=6)  # past the shopper's 5 s timeout
    spans = world.spans()
    ids = {s.context.span_id for s in spans}
    assert [s.name for s in spans if s.parent is not None and s.parent.span_id not in ids] == []
    (shopper,) = [s for s in spans if s.resource.attributes["service.instance.id"] == "shopper"]
    assert [e.attributes["exception.type"] for e in shopper.events] == ["sandbox.errors.RequestTimeout"]


def test_a_process_forked_after_a_traced_world_does_not_hang():
    """A traced world makes OpenTelemetry TracerProviders, whose fork hook runs a thread pool in the child.
    A fork after that (explore's workers), with concurrent.futures.thread imported only later, must not
    deadlock on that module's lock. Runs in a fresh interpreter, where import order is what it is."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent('''
        import os
        from fastapi import FastAPI
        import sandbox

        def create_app():
            app = FastAPI()

            @app.get("/ping")
            async def ping():
                return {}

            return app

        async def caller(client):
            await client.http.get("http://api/ping")

        world = sandbox.World(1, tracing=True)
        world.add_service("api", create_app)
        world.add_client("c", caller)
        world.run()
        assert world.spans()
        import concurrent.futures.thread  # imported after the providers exist, as a notebook might
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exited", os.waitstatus_to_exitcode(status))
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "child exited 0" in done.stdout
