"""Tests of the FastAPI driver: real apps served in virtual time, and the same apps under TestClient."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import warnings

import anyio
import httpx
import pytest
from fastapi import (
    BackgroundTasks,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
)
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

import sandbox

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2
    from fastapi.testclient import TestClient


# --- app factories (module level: each replica runs a fresh copy of this module) ------


class Item(BaseModel):
    name: str
    qty: int


def params_app() -> FastAPI:
    """Echoes path, query and header parameters, and a pydantic body."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(
        item_id: int,
        q: str = Query("none"),
        x_token: str | None = Header(None),
        idempotency_key: str | None = Header(None),
        traceparent: str | None = Header(None),
    ) -> dict:
        return {"id": item_id, "q": q, "token": x_token, "idempotency_key": idempotency_key, "traceparent": traceparent}

    @app.post("/items", status_code=201)
    async def create_item(item: Item) -> Item:
        return Item(name=item.name.upper(), qty=item.qty * 2)

    return app


def deps_app() -> FastAPI:
    """Endpoints with nested, yield, and plain ``def`` dependencies, and a plain ``def`` endpoint."""
    app = FastAPI()
    log: list[str] = []

    async def base() -> int:
        return 2

    async def derived(b: int = Depends(base)) -> int:
        return b * 10

    async def session():
        log.append("open")
        yield "session"
        log.append("closed")

    def sync_session():
        log.append("sync open")
        yield "sync session"
        log.append("sync closed")

    def thread_of_dependency() -> int:
        return threading.get_ident()

    @app.get("/nested")
    async def nested(value: int = Depends(derived)) -> dict:
        return {"value": value}

    @app.get("/yield")
    async def with_session(s: str = Depends(session)) -> dict:
        return {"session": s, "log": list(log)}

    @app.get("/sync-yield")
    async def with_sync_session(s: str = Depends(sync_session)) -> dict:
        return {"session": s, "log": list(log)}

    @app.get("/log")
    async def read_log() -> list[str]:
        return log

    @app.get("/def-dependency")
    async def def_dependency(thread: int = Depends(thread_of_dependency)) -> dict:
        return {"thread": thread}

    @app.get("/def-endpoint")
    def def_endpoint() -> dict:
        return {"thread": threading.get_ident()}

    return app


def results_app() -> FastAPI:
    """One endpoint per kind of result."""
    app = FastAPI()

    @app.get("/model")
    async def model() -> Item:
        return Item(name="lamp", qty=3)

    @app.get("/dict")
    async def plain_dict() -> dict:
        return {"a": [1, 2], "b": None}

    @app.get("/json-response")
    async def json_response() -> JSONResponse:
        return JSONResponse({"accepted": True}, status_code=202)

    @app.get("/raw-response")
    async def raw_response() -> Response:
        return Response(content=b"plain words", status_code=203, media_type="text/plain")

    @app.get("/conflict")
    async def conflict() -> dict:
        raise HTTPException(status_code=409, detail="already reserved")

    @app.get("/busy")
    async def busy() -> dict:
        raise HTTPException(status_code=503, detail="busy", headers={"Retry-After": "2"})

    @app.get("/boom")
    async def boom() -> dict:
        raise ValueError("kaput")

    @app.get("/ok")
    async def ok() -> dict:
        return {"ok": True}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks():
            yield b"ab"
            yield b"cd"

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


def middleware_app() -> FastAPI:
    """An app with an ``@app.middleware("http")`` that adds a header."""
    app = FastAPI()

    @app.middleware("http")
    async def add_header(request: Request, call_next):
        response = await call_next(request)
        response.headers["x-served-by"] = "middleware"
        return response

    @app.get("/ok")
    async def ok() -> dict:
        return {"ok": True}

    return app


def time_app() -> FastAPI:
    """Waits in virtual time, or wrongly with asyncio."""
    app = FastAPI()

    @app.get("/sandbox-sleep")
    async def sandbox_sleep(clock: sandbox.Clock = Depends(sandbox.clock)) -> dict:
        before = clock.monotonic()
        await sandbox.sleep(0.25)
        return {"slept": clock.monotonic() - before}

    @app.get("/asyncio-sleep")
    async def asyncio_sleep() -> dict:
        await asyncio.sleep(0.1)
        return {"slept": True}

    @app.get("/asyncio-sleep-0")
    async def asyncio_sleep_zero() -> dict:
        await asyncio.sleep(0)
        return {"slept": True}

    @app.get("/slow")
    async def slow() -> dict:
        await sandbox.sleep(2.0)
        return {"slow": True}

    return app


def slow_start_app() -> FastAPI:
    """Takes one virtual second to start (its lifespan startup sleeps), then serves."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await sandbox.sleep(1.0)
        yield {"warm": True}

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def root(request: Request) -> dict:
        return {"warm": request.state.warm}

    return app


def shop_app() -> FastAPI:
    """Naive check-then-act stock keeping: read the stock, then write stock - 1."""
    app = FastAPI()
    shop_db = sandbox.database("shop-db")

    @app.post("/stock", status_code=201)
    async def set_stock(body: dict, db: sandbox.Database = Depends(shop_db)) -> dict:
        await db.put("stock", "lamp", body["qty"])
        return body

    @app.post("/orders/{order_id}", status_code=201)
    async def order(order_id: str, db: sandbox.Database = Depends(shop_db)) -> dict:
        stock = await db.get("stock", "lamp", 0)
        if stock < 1:
            raise HTTPException(409, "sold out")
        await db.put("stock", "lamp", stock - 1)
        await db.put("orders", order_id, {"sku": "lamp"})
        return {"left": stock - 1}

    return app


def orders_app() -> FastAPI:
    """Places orders: counts them in its database, charges payments, publishes an event."""
    app = FastAPI()

    @app.post("/orders/{order_id}", status_code=201)
    async def place(
        order_id: str,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        producer: sandbox.Producer = Depends(sandbox.producer),
    ) -> dict:
        placed = await db.get("counters", "placed", 0)
        await db.put("counters", "placed", placed + 1)
        charge = await http.post("http://payments/charges", json={"order": order_id})
        await producer.send("orders", {"order": order_id}, key=order_id)
        await sandbox.sleep(0.01)
        return {"placed": placed + 1, "charge_status": charge.status_code, "charge": charge.json()}

    return app


def payments_app() -> FastAPI:
    app = FastAPI()

    @app.post("/charges", status_code=201)
    async def charge(body: dict) -> dict:
        return {"charged": body["order"]}

    return app


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    async def echo() -> dict:
        return {"ok": True}

    return app


# --- helpers ----------------------------------------------------------------------------


def call(world: sandbox.World, *requests: tuple[str, str, dict]) -> list[sandbox.Response]:
    """Run one workload client that makes ``requests`` in order; return the responses."""
    responses: list[sandbox.Response] = []

    async def caller(client: sandbox.Client) -> None:
        for method, url, kwargs in requests:
            responses.append(await client.http.request(method, url, **kwargs))

    world.add_client("caller", caller)
    world.run()
    return responses


def serve(factory, *requests: tuple[str, str, dict], seed: int = 1) -> tuple[sandbox.World, list[sandbox.Response]]:
    world = sandbox.World(seed=seed)
    world.add_service("api", factory)
    return world, call(world, *requests)


# --- parameters -------------------------------------------------------------------------


def test_path_parameter_is_converted_to_its_declared_type():
    """A path parameter declared int reaches the endpoint as an int."""
    _, [r] = serve(params_app, ("GET", "http://api/items/42", {}))
    assert r.status_code == 200
    assert r.json()["id"] == 42


def test_query_parameter_is_read_and_defaults_when_absent():
    """A query parameter takes the value sent, or its default when none is sent."""
    _, [sent, absent] = serve(
        params_app,
        ("GET", "http://api/items/1?q=lamps", {}),
        ("GET", "http://api/items/1", {"params": {}}),
    )
    assert sent.json()["q"] == "lamps"
    assert absent.json()["q"] == "none"


def test_query_parameter_given_with_params_reaches_the_endpoint():
    """params= on the HTTP client becomes the query string."""
    _, [r] = serve(params_app, ("GET", "http://api/items/1", {"params": {"q": "a b"}}))
    assert r.json()["q"] == "a b"


def test_header_parameter_is_read():
    """A Header parameter x_token reads the X-Token header."""
    _, [r] = serve(params_app, ("GET", "http://api/items/1", {"headers": {"X-Token": "secret"}}))
    assert r.json()["token"] == "secret"


def test_idempotency_key_header_reaches_the_endpoint():
    """The Idempotency-Key header a client sends arrives unchanged."""
    _, [r] = serve(params_app, ("GET", "http://api/items/1", {"headers": {"Idempotency-Key": "order-17"}}))
    assert r.json()["idempotency_key"] == "order-17"


def test_traceparent_header_reaches_the_endpoint_without_tracing():
    """With tracing off, a traceparent header the client sets arrives unchanged."""
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _, [r] = serve(params_app, ("GET", "http://api/items/1", {"headers": {"traceparent": tp}}))
    assert r.json()["traceparent"] == tp


def test_traceparent_header_carries_the_callers_span_with_tracing():
    """With tracing on, the endpoint sees a traceparent naming the caller's CLIENT span."""
    world = sandbox.World(seed=4, tracing=True)
    world.add_service("api", params_app)
    [r] = call(world, ("GET", "http://api/items/1", {}))
    [client_span] = [s for s in world.spans() if s.resource.attributes["service.instance.id"] == "caller"]
    ctx = client_span.context
    assert r.json()["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"


def test_pydantic_body_is_validated_and_the_model_returned():
    """A pydantic body is parsed into the model, and a returned model is serialised with the route's status code."""
    _, [r] = serve(params_app, ("POST", "http://api/items", {"json": {"name": "lamp", "qty": 2}}))
    assert r.status_code == 201
    assert r.json() == {"name": "LAMP", "qty": 4}


def test_dependency_that_needs_another_dependency_is_resolved():
    """A dependency depending on another one gets its value (2 * 10)."""
    _, [r] = serve(deps_app, ("GET", "http://api/nested", {}))
    assert r.json() == {"value": 20}


def test_async_yield_dependency_gives_its_value_and_cleans_up():
    """An async yield dependency hands its value to the endpoint and runs its cleanup after it."""
    _, [r, log] = serve(deps_app, ("GET", "http://api/yield", {}), ("GET", "http://api/log", {}))
    assert r.json() == {"session": "session", "log": ["open"]}
    assert log.json() == ["open", "closed"]


def test_plain_def_yield_dependency_gives_its_value_and_cleans_up():
    """A plain ``def`` yield dependency (FastAPI's documented get_db pattern) gives its value and cleans up."""
    _, [r, log] = serve(deps_app, ("GET", "http://api/sync-yield", {}), ("GET", "http://api/log", {}))
    assert r.status_code == 200
    assert r.json() == {"session": "sync session", "log": ["sync open"]}
    assert log.json() == ["sync open", "sync closed"]


def test_plain_def_dependency_runs_inline_on_the_worlds_thread():
    """A plain ``def`` dependency runs inline, on the thread that runs the world, not in a thread pool."""
    _, [r] = serve(deps_app, ("GET", "http://api/def-dependency", {}))
    assert r.json() == {"thread": threading.get_ident()}


def test_plain_def_endpoint_runs_inline_on_the_worlds_thread():
    """A plain ``def`` endpoint runs inline, on the thread that runs the world, not in a thread pool."""
    _, [r] = serve(deps_app, ("GET", "http://api/def-endpoint", {}))
    assert r.status_code == 200
    assert r.json() == {"thread": threading.get_ident()}


# --- results ----------------------------------------------------------------------------


def test_returned_pydantic_model_becomes_json():
    """An endpoint returning a pydantic model answers 200 with the model's fields."""
    _, [r] = serve(results_app, ("GET", "http://api/model", {}))
    assert (r.status_code, r.json()) == (200, {"name": "lamp", "qty": 3})
    assert r.headers["Content-Type"] == "application/json"


def test_returned_dict_becomes_json():
    """An endpoint returning a dict answers 200 with it as JSON."""
    _, [r] = serve(results_app, ("GET", "http://api/dict", {}))
    assert (r.status_code, r.json()) == (200, {"a": [1, 2], "b": None})


def test_json_response_keeps_its_status_code():
    """A returned JSONResponse is sent as is, with its own status code."""
    _, [r] = serve(results_app, ("GET", "http://api/json-response", {}))
    assert (r.status_code, r.json()) == (202, {"accepted": True})


def test_plain_response_keeps_status_body_and_media_type():
    """A returned Response keeps its status, raw body and content type."""
    _, [r] = serve(results_app, ("GET", "http://api/raw-response", {}))
    assert r.status_code == 203
    assert r.text == "plain words"
    assert r.headers["content-type"].startswith("text/plain")


def test_http_exception_gives_its_status_and_detail():
    """HTTPException(409, detail) answers 409 with FastAPI's {"detail": ...} body."""
    world, [r] = serve(results_app, ("GET", "http://api/conflict", {}))
    assert (r.status_code, r.json()) == (409, {"detail": "already reserved"})
    assert world.errors == []  # an HTTPException is an answer, not a crash


def test_http_exception_headers_such_as_retry_after_travel_back():
    """A Retry-After header set on an HTTPException reaches the caller."""
    _, [r] = serve(results_app, ("GET", "http://api/busy", {}))
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"


def test_streaming_response_sends_every_chunk():
    """A StreamingResponse's chunks arrive concatenated."""
    world, [r] = serve(results_app, ("GET", "http://api/stream", {}))
    assert world.errors == []
    assert (r.status_code, r.text) == (200, "abcd")


def test_http_middleware_runs_around_each_request():
    """An @app.middleware("http") function runs around the endpoint and can add a header."""
    world, [r] = serve(middleware_app, ("GET", "http://api/ok", {}))
    assert world.errors == []
    assert r.status_code == 200
    assert r.headers["x-served-by"] == "middleware"


def test_unknown_route_is_404_with_fastapis_body():
    """A path no route matches answers 404 {"detail": "Not Found"}."""
    _, [r] = serve(results_app, ("GET", "http://api/no/such/route", {}))
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})


def test_invalid_body_is_422_with_fastapis_error_shape():
    """A body that fails validation answers 422 with a list of errors, each with loc, msg and type."""
    _, [r] = serve(params_app, ("POST", "http://api/items", {"json": {"name": "lamp", "qty": "many"}}))
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", "qty"]
    assert error["type"] == "int_parsing"
    assert "integer" in error["msg"]


def test_invalid_body_422_is_exactly_what_fastapi_sends_under_testclient():
    """The 422 body served in the sandbox is byte for byte what TestClient gets from the same app."""
    body = {"name": "lamp"}
    _, [r] = serve(params_app, ("POST", "http://api/items", {"json": body}))
    with TestClient(params_app()) as tc:
        expected = tc.post("/items", json=body)
    assert r.status_code == expected.status_code == 422
    assert r.json() == expected.json()
    assert r.json()["detail"][0]["loc"] == ["body", "qty"]


def test_unhandled_exception_is_500_and_recorded_in_world_errors():
    """An exception escaping an endpoint answers 500 and is recorded in world.errors."""
    world, [r] = serve(results_app, ("GET", "http://api/boom", {}))
    assert r.status_code == 500
    [error] = world.errors
    assert (error.node, error.where, error.type, error.message) == ("api-0", "GET /boom", "ValueError", "kaput")
    assert "ValueError: kaput" in error.traceback


def test_world_keeps_serving_after_an_unhandled_exception():
    """After a 500 the same replica still answers other requests."""
    world, responses = serve(
        results_app,
        ("GET", "http://api/boom", {}),
        ("GET", "http://api/ok", {}),
        ("GET", "http://api/boom", {}),
        ("GET", "http://api/dict", {}),
    )
    assert [r.status_code for r in responses] == [500, 200, 500, 200]
    assert len(world.errors) == 2


# --- virtual time and interleaving ------------------------------------------------------


def test_sandbox_sleep_advances_virtual_time_by_its_argument():
    """``await sandbox.sleep(0.25)`` in an endpoint lets exactly 0.25 virtual seconds pass."""
    _, [r] = serve(time_app, ("GET", "http://api/sandbox-sleep", {}))
    assert r.json()["slept"] == pytest.approx(0.25, abs=1e-12)
    assert r.elapsed > 0.25


def test_asyncio_sleep_in_an_endpoint_is_a_500_naming_sandbox_sleep():
    """``await asyncio.sleep(0.1)`` in an endpoint fails with ForeignAwaitError pointing to sandbox.sleep."""
    world, [r] = serve(time_app, ("GET", "http://api/asyncio-sleep", {}))
    assert r.status_code == 500
    [error] = world.errors
    assert error.type == "ForeignAwaitError"
    assert "sandbox.sleep" in error.message


def test_asyncio_sleep_zero_in_an_endpoint_is_a_500_naming_sandbox_sleep():
    """``await asyncio.sleep(0)`` (a bare yield) fails with ForeignAwaitError pointing to sandbox.sleep."""
    world, [r] = serve(time_app, ("GET", "http://api/asyncio-sleep-0", {}))
    assert r.status_code == 500
    [error] = world.errors
    assert error.type == "ForeignAwaitError"
    assert "sandbox.sleep" in error.message


def oversell(seed: int) -> tuple:
    world = sandbox.World(seed=seed)
    world.add_database("shop-db")
    world.add_service("shop", shop_app, replicas=2)
    statuses = {}

    async def stocker(client: sandbox.Client) -> None:
        await client.http.post("http://shop/stock", json={"qty": 1})

    async def buyer(client: sandbox.Client) -> None:
        r = await client.http.post(f"http://shop/orders/{client.name}")
        statuses[client.name] = r.status_code

    world.add_client("stocker", stocker)
    world.add_client("buyer-a", buyer, start=0.1)
    world.add_client("buyer-b", buyer, start=0.1)
    world.run()
    db = world.database("shop-db")
    return dict(sorted(statuses.items())), db.read("stock", "lamp"), sorted(db.rows("orders")), world.fingerprint()


def test_concurrent_check_then_act_orders_both_sell_the_last_unit():
    """Two concurrent orders for the last unit both read stock 1 and both succeed: two sold, stock 0."""
    statuses, stock, orders, _ = oversell(seed=8)
    assert statuses == {"buyer-a": 201, "buyer-b": 201}
    assert orders == ["buyer-a", "buyer-b"]
    assert stock == 0  # one unit, two sales: stock should have gone to -1 or one order refused


def test_oversell_outcome_is_the_same_for_the_same_seed():
    """The interleaving that oversells is fixed by the seed: two runs give the same outcome and log."""
    assert oversell(seed=8) == oversell(seed=8)


def test_lifespan_startup_delays_serving_until_it_completes():
    """Requests arriving before the lifespan startup has finished are dropped; later ones are served."""
    world = sandbox.World(seed=2)
    world.add_service("api", slow_start_app)
    outcomes = []

    async def early(client: sandbox.Client) -> None:
        try:
            await client.http.get("http://api/", timeout=0.5)
            outcomes.append("early answered")
        except sandbox.RequestTimeout:
            outcomes.append(("early timed out", client.now))

    async def late(client: sandbox.Client) -> None:
        r = await client.http.get("http://api/", timeout=0.5)
        outcomes.append(("late", r.status_code, r.json()))

    world.add_client("early", early)
    world.add_client("late", late, start=1.0)
    world.run()
    assert outcomes == [("early timed out", 0.5), ("late", 200, {"warm": True})]
    assert [(e[0], e[2]) for e in world.recorder.entries("service.ready")] == [(1.0, "api-0")]


# --- service to service -----------------------------------------------------------------


def orders_world(seed: int = 3) -> sandbox.World:
    world = sandbox.World(seed=seed)
    world.add_database("orders-db")
    world.add_service("orders", orders_app)
    world.add_service("payments", payments_app)
    return world


def test_service_calls_another_service_and_uses_database_and_producer():
    """An endpoint reaches its database, another service and the broker in one request."""
    world = orders_world()
    responses = call(world, ("POST", "http://orders/orders/o1", {}), ("POST", "http://orders/orders/o2", {}))
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[1].json() == {"placed": 2, "charge_status": 201, "charge": {"charged": "o2"}}
    assert world.database("orders-db").read("counters", "placed") == 2
    assert world.errors == []


def test_http_client_timeout_raises_request_timeout_also_an_httpx_timeout():
    """A callee slower than the timeout makes the call raise RequestTimeout, an httpx.TimeoutException, at the timeout."""
    world = sandbox.World(seed=1)
    world.add_service("api", time_app)
    caught = []

    async def caller(client: sandbox.Client) -> None:
        try:
            await client.http.get("http://api/slow", timeout=1.0)
        except httpx.TimeoutException as exc:
            caught.append((type(exc), client.now))

    world.add_client("c", caller)
    world.run()
    assert caught == [(sandbox.RequestTimeout, 1.0)]


def test_http_client_waits_for_a_callee_within_its_timeout():
    """A callee that answers within the timeout is waited for."""
    _, [r] = serve(time_app, ("GET", "http://api/slow", {"timeout": 3.0}))
    assert r.json() == {"slow": True}
    assert 2.0 < r.elapsed < 2.1


def replicas_hit(seed: int) -> list[str]:
    world = sandbox.World(seed=seed)
    world.add_service("api", echo_app, replicas=3)
    call(world, *[("GET", "http://api/echo", {})] * 30)
    return [e[2] for e in world.recorder.entries("http.request")]


def test_load_balancing_spreads_requests_over_replicas():
    """Thirty requests to a three-replica service reach every replica, none more than 20 times."""
    hits = replicas_hit(seed=6)
    assert len(hits) == 30
    counts = {name: hits.count(name) for name in ("api-0", "api-1", "api-2")}
    assert all(1 <= n <= 20 for n in counts.values()), counts


def test_load_balancing_is_the_same_for_the_same_seed():
    """The replica each request goes to is fixed by the seed."""
    assert replicas_hit(seed=6) == replicas_hit(seed=6)
    assert replicas_hit(seed=6) != replicas_hit(seed=7)


def test_load_balancing_skips_a_crashed_replica():
    """Requests to a service go only to its live replicas."""
    world = sandbox.World(seed=6)
    world.add_service("api", echo_app, replicas=3)
    world.crash("api-1")
    responses = call(world, *[("GET", "http://api/echo", {})] * 12)
    assert [r.status_code for r in responses] == [200] * 12
    assert {e[2] for e in world.recorder.entries("http.request")} == {"api-0", "api-2"}


# --- the same apps under FastAPI's TestClient -------------------------------------------


def test_testclient_database_dependency_persists_across_requests():
    """Under TestClient the database dependency is an in-memory store that keeps writes between requests."""
    app = orders_app()
    sandbox.connect_local(app, payments=payments_app())
    with TestClient(app) as tc:
        first = tc.post("/orders/o1")
        second = tc.post("/orders/o2")
    assert (first.status_code, second.status_code) == (201, 201)
    assert [first.json()["placed"], second.json()["placed"]] == [1, 2]


def test_testclient_http_client_reaches_apps_connected_locally():
    """Under TestClient the HTTP client calls the apps given to sandbox.connect_local, in process."""
    app = orders_app()
    sandbox.connect_local(app, payments=payments_app())
    with TestClient(app) as tc:
        r = tc.post("/orders/o9")
    assert r.json()["charge_status"] == 201
    assert r.json()["charge"] == {"charged": "o9"}


def test_testclient_producer_records_what_was_sent():
    """Under TestClient the producer appends each message to app.state.chaos_dojo_sent."""
    app = orders_app()
    sandbox.connect_local(app, payments=payments_app())
    with TestClient(app) as tc:
        tc.post("/orders/o1")
        tc.post("/orders/o2")
    assert app.state.chaos_dojo_sent == [
        {"topic": "orders", "key": "o1", "value": {"order": "o1"}, "headers": {}},
        {"topic": "orders", "key": "o2", "value": {"order": "o2"}, "headers": {}},
    ]


def test_testclient_runs_a_lifespan_that_uses_sandbox_sleep():
    """Under TestClient sandbox.sleep is a real (short) sleep, so a lifespan using it starts."""
    with TestClient(slow_start_app_fast()) as tc:
        r = tc.get("/")
    assert (r.status_code, r.json()) == (200, {"warm": True})


def slow_start_app_fast() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await sandbox.sleep(0.001)
        yield {"warm": True}

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def root(request: Request) -> dict:
        return {"warm": request.state.warm}

    return app


def test_testclient_without_connect_local_names_the_missing_service():
    """Under TestClient, calling a service that was not connected fails with UnknownServiceError saying how to connect it."""
    app = orders_app()
    with TestClient(app, raise_server_exceptions=True) as tc:
        with pytest.raises(sandbox.UnknownServiceError, match="connect_local"):
            tc.post("/orders/o1")


def fan_out_app() -> FastAPI:
    app = FastAPI()

    @app.get("/slow/{seconds}")
    async def slow(seconds: float):
        await sandbox.sleep(seconds)
        if seconds > 1:
            raise HTTPException(504, "too slow")
        return {"slept": seconds, "host": sandbox.hostname()}

    @app.get("/fan")
    async def fan(http: sandbox.HttpClient = Depends(sandbox.http_client)):
        first, second = await sandbox.gather(http.get("http://api/slow/0.2"), http.get("http://api/slow/0.3"))
        return {"results": [first.json(), second.json()]}

    @app.get("/fan-fails")
    async def fan_fails():
        async def boom() -> None:
            await sandbox.sleep(0.1)
            raise ValueError("boom")

        async def fine() -> str:
            await sandbox.sleep(0.2)
            return "fine"

        outcome = await sandbox.gather(boom(), fine(), return_exceptions=True)
        return {"outcome": [repr(x) for x in outcome]}

    return app


def test_gather_runs_awaitables_concurrently_in_virtual_time():
    """sandbox.gather waits for all its awaitables at once: 0.2 s and 0.3 s calls take about 0.3 s together."""
    world, (r,) = serve(fan_out_app, ("GET", "http://api/fan", {}))
    assert r.status_code == 200
    assert [x["slept"] for x in r.json()["results"]] == [0.2, 0.3]
    assert 0.3 < r.elapsed < 0.35


def test_gather_can_return_exceptions_in_place():
    """With return_exceptions=True, gather puts a failure in its slot instead of raising it."""
    world, (r,) = serve(fan_out_app, ("GET", "http://api/fan-fails", {}))
    assert r.json() == {"outcome": ["ValueError('boom')", "'fine'"]}


def test_hostname_names_the_replica_serving_the_request():
    """sandbox.hostname() inside an endpoint is the name of the replica's node, like socket.gethostname()."""
    world, (r,) = serve(fan_out_app, ("GET", "http://api/slow/0", {}))
    assert r.json()["host"] == "api-0"
    assert sandbox.hostname() == "localhost"


# --- regressions found in review -------------------------------------------------------


def anyio_app() -> FastAPI:
    """anyio deadlines and task groups around slow awaits, each reporting how long it took in virtual time."""
    app = FastAPI()

    @app.get("/fail-after")
    async def fail_after(clock: sandbox.Clock = Depends(sandbox.clock)) -> dict:
        start = clock.monotonic()
        try:
            with anyio.fail_after(1.0):
                await sandbox.sleep(10)
        except TimeoutError:
            return {"timed_out": True, "after": clock.monotonic() - start}
        return {"timed_out": False, "after": clock.monotonic() - start}

    @app.get("/move-on")
    async def move_on(clock: sandbox.Clock = Depends(sandbox.clock)) -> dict:
        start = clock.monotonic()
        with anyio.move_on_after(1.0) as scope:
            await sandbox.sleep(10)
        return {"cancelled_caught": scope.cancelled_caught, "after": clock.monotonic() - start}

    @app.get("/task-group")
    async def task_group(clock: sandbox.Clock = Depends(sandbox.clock)) -> dict:
        start = clock.monotonic()
        log: list[str] = []

        async def fail() -> None:
            await sandbox.sleep(0.1)
            raise RuntimeError("payment service said no")

        async def slow() -> None:
            await sandbox.sleep(10)
            log.append("slow finished")

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(fail)
                group.start_soon(slow)
                await sandbox.sleep(5)
                log.append("host body finished")
        except BaseExceptionGroup as group_error:
            log.append(f"group raised {group_error.exceptions!r}")
        return {"log": log, "after": clock.monotonic() - start}

    @app.get("/spin")
    async def spin() -> dict:
        while True:  # a retry loop without backoff
            await sandbox.sleep(0)

    return app


def mailing_app() -> FastAPI:
    """Places an order and sends its confirmation e-mail from a BackgroundTask, through an 8 s slow mail server."""
    app = FastAPI()

    async def send_confirmation(order_id: str, db: sandbox.Database) -> None:
        await sandbox.sleep(8.0)
        await db.put("sent", order_id, True)

    @app.post("/orders", status_code=201)
    async def place(background: BackgroundTasks, db: sandbox.Database = Depends(sandbox.database("mail-db"))) -> dict:
        background.add_task(send_confirmation, "o1", db)
        return {"id": "o1"}

    return app


def test_anyio_fail_after_cuts_a_slow_await_at_its_deadline():
    """anyio.fail_after(1.0) around a 10 s sleep raises TimeoutError after exactly 1 virtual second."""
    _, [r] = serve(anyio_app, ("GET", "http://api/fail-after", {"timeout": None}))
    assert r.json()["timed_out"] is True
    assert r.json()["after"] == pytest.approx(1.0, abs=1e-9)


def test_anyio_move_on_after_cuts_a_slow_await_at_its_deadline():
    """anyio.move_on_after(1.0) around a 10 s sleep moves on after exactly 1 virtual second, cancelled_caught set."""
    _, [r] = serve(anyio_app, ("GET", "http://api/move-on", {"timeout": None}))
    assert r.json()["cancelled_caught"] is True
    assert r.json()["after"] == pytest.approx(1.0, abs=1e-9)


def test_a_failing_task_group_child_cancels_its_siblings_and_the_host():
    """When one child of an anyio task group raises, its sibling and the host body are cancelled at once."""
    _, [r] = serve(anyio_app, ("GET", "http://api/task-group", {"timeout": None}))
    assert r.json()["log"] == ["group raised (RuntimeError('payment service said no'),)"]
    assert r.json()["after"] == pytest.approx(0.1, abs=1e-9)


def poller_app() -> FastAPI:
    """A lifespan that starts a background poller in a task group; the poller dies on its third round."""
    from contextlib import asynccontextmanager

    import anyio

    rounds = []

    async def poll() -> None:
        while True:
            await sandbox.sleep(0.5)
            rounds.append(len(rounds))
            if len(rounds) == 3:
                raise KeyError("cursor")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/rounds")
    async def count() -> dict:
        return {"rounds": len(rounds)}

    return app


def test_a_background_task_that_dies_in_the_lifespans_task_group_is_recorded():
    """A lifespan task group's child that raises is recorded in world.errors, named, at the time it died (the
    lifespan's block is never left, so nothing else would ever report it); the replica goes on serving."""
    world = sandbox.World(seed=1)
    world.add_service("api", poller_app)
    seen = []

    async def later(client: sandbox.Client) -> None:
        await client.sleep(3.0)
        seen.append(await client.http.get("http://api/rounds", timeout=1.0))

    world.add_client("caller", later)
    world.run()
    [r] = seen
    [error] = world.errors
    assert (error.node, error.type, error.time) == ("api-0", "KeyError", pytest.approx(1.5))
    assert "background task" in error.where and "poll" in error.where and "lifespan" in error.where
    assert r.status_code == 200 and r.json() == {"rounds": 3}


def test_a_task_that_never_lets_time_pass_is_stopped_with_livelock_error(monkeypatch):
    """A loop on `await sandbox.sleep(0)` is stopped with LivelockError; the caller times out and run(until=...) returns."""
    monkeypatch.setattr("sandbox._runtime.SPIN_LIMIT", 1_000)  # the default, 100,000 resumptions, takes ~1 s of wall time
    world = sandbox.World(seed=1)
    world.add_service("api", anyio_app)
    timed_out = []

    async def caller(client: sandbox.Client) -> None:
        try:
            await client.http.get("http://api/spin", timeout=1.0)
        except sandbox.RequestTimeout:
            timed_out.append(client.now)

    world.add_client("c", caller)
    world.run(until=5)
    assert world.now == 5
    assert timed_out == [pytest.approx(1.0)]
    [error] = world.errors
    assert (error.node, error.where, error.type) == ("api-0", "GET /spin", "LivelockError")
    assert "sandbox.sleep(0.1)" in error.message


def test_a_slow_background_task_does_not_delay_the_reply():
    """The reply is sent when the response is complete; a BackgroundTask then runs on, and finishes, after it."""
    world = sandbox.World(seed=1)
    world.add_database("mail-db")
    world.add_service("api", mailing_app)
    responses = []

    async def buyer(client: sandbox.Client) -> None:
        responses.append(await client.http.post("http://api/orders", timeout=1.0))

    world.add_client("buyer", buyer)
    world.run(settle=10)
    [r] = responses
    assert (r.status_code, r.json()) == (201, {"id": "o1"})
    assert r.elapsed < 0.01
    assert world.database("mail-db").rows("sent") == {"o1": True}
    (sent,) = [e for e in world.recorder.entries("db.write") if e[3] == "sent"]
    assert sent[0] > 8.0


# --- locks inside one replica -------------------------------------------------------------


def locked_counter_app() -> FastAPI:
    app = FastAPI()
    lock = anyio.Lock()
    loop_lock = asyncio.Lock()

    @app.post("/anyio")
    async def with_anyio_lock(db: sandbox.Database = Depends(sandbox.database("locks-db"))):
        async with lock:
            n = await db.get("t", "n", 0)
            await db.put("t", "n", n + 1)
        return {"n": n + 1}

    @app.post("/asyncio")
    async def with_asyncio_lock(db: sandbox.Database = Depends(sandbox.database("locks-db"))):
        async with loop_lock:
            n = await db.get("t", "m", 0)
            await db.put("t", "m", n + 1)
        return {"n": n + 1}

    return app


def _five_callers(path: str) -> sandbox.World:
    world = sandbox.World(seed=4)
    world.add_database("locks-db")
    world.add_service("api", locked_counter_app)

    async def caller(client: sandbox.Client) -> None:
        await client.http.post(f"http://api{path}")

    for i in range(5):
        world.add_client(f"c{i}", caller)
    world.run()
    return world


def test_an_anyio_lock_serializes_requests_in_one_replica():
    """anyio.Lock works in virtual time: five concurrent read-modify-writes under it lose no update."""
    world = _five_callers("/anyio")
    assert world.database("locks-db").read("t", "n") == 5
    assert world.errors == []


def test_a_contended_asyncio_lock_fails_with_advice_to_use_anyio():
    """A contended asyncio.Lock cannot wait without asyncio's loop: the error points to anyio.Lock."""
    world = _five_callers("/asyncio")
    assert world.errors and {e.type for e in world.errors} == {"ForeignAwaitError"}
    assert "anyio.Lock()" in world.errors[0].message



def test_a_task_closed_while_it_holds_an_anyio_lock_lets_go_quietly():
    """When a run is over and a replica's task still holds an anyio.Lock, closing that task's coroutine
    (what the garbage collector does with a dropped world) releases the lock without an error (it once
    raised "The current task is not holding this lock", reported as an ignored exception)."""

    def holder_app() -> FastAPI:
        app = FastAPI()
        lock = anyio.Lock()

        @app.post("/hold")
        async def hold():
            async with lock:
                await sandbox.sleep(60)
            return {}

        return app

    world = sandbox.World(seed=1)
    world.add_service("api", holder_app)

    async def caller(client: sandbox.Client) -> None:
        await client.http.post("http://api/hold", timeout=120)

    world.add_client("c", caller)
    world.run(until=1.0)
    tasks = [t for t in world.service("api").instances[0].tasks.values() if "hold" in t.name or "POST" in t.name]
    assert tasks, [t.name for t in world.service("api").instances[0].tasks.values()]
    for task in tasks:
        task.coro.close()  # no task is current here, as in the garbage collector


def test_an_anyio_lock_made_by_the_factory_works_inside_a_running_asyncio_loop():
    """A Jupyter kernel runs an asyncio loop around every cell: an anyio.Lock made in create_app must
    still be the sandbox's (it was bound to asyncio, and every request using it answered 500)."""
    import asyncio

    def counter_app() -> FastAPI:
        app = FastAPI()
        lock = anyio.Lock()
        count = {"n": 0}

        @app.post("/inc")
        async def inc():
            async with lock:
                n = count["n"]
                await sandbox.sleep(0.01)
                count["n"] = n + 1
            return count

        return app

    async def in_a_kernel() -> sandbox.World:
        world = sandbox.World(seed=3)
        world.add_service("api", counter_app)

        async def caller(client: sandbox.Client) -> None:
            await client.http.post("http://api/inc")

        for i in range(3):
            world.add_client(f"c{i}", caller)
        world.run()
        return world

    world = asyncio.run(in_a_kernel())
    assert world.errors == []


def test_an_anyio_capacity_limiter_is_a_bulkhead_in_virtual_time():
    """anyio.CapacityLimiter(2) lets two requests at a time into the slow section and queues the rest in order (a
    bulkhead, as module 06 builds one); its statistics and errors are anyio's."""
    inside: list[int] = []
    most: list[int] = []

    def app() -> FastAPI:
        api = FastAPI()
        limiter = anyio.CapacityLimiter(2)

        @api.post("/slow")
        async def slow():
            async with limiter:
                inside.append(1)
                most.append(len(inside))
                await sandbox.sleep(1.0)
                inside.pop()
            return {"borrowed": limiter.borrowed_tokens, "total": limiter.total_tokens}

        @api.post("/misuse")
        async def misuse():
            try:
                limiter.release()
            except RuntimeError as exc:
                return {"error": str(exc)}
            return {"error": None}

        return api

    world = sandbox.World(seed=4)
    world.add_service("api", app)
    done: dict[str, float] = {}

    async def caller(client: sandbox.Client) -> None:
        await client.http.post("http://api/slow")
        done[client.name] = client.now

    for i in range(5):
        world.add_client(f"c{i}", caller)
    answers = []

    async def misuser(client: sandbox.Client) -> None:
        answers.append((await client.http.post("http://api/misuse")).json())

    world.add_client("m", misuser)
    world.run()
    assert world.errors == []
    assert max(most) == 2
    finished = sorted(round(t) for t in done.values())
    assert finished == [1, 1, 2, 2, 3]
    assert answers == [{"error": "this borrower is not holding any of this CapacityLimiter's tokens"}]
    from sandbox._anyio import _CapacityLimiter

    with pytest.raises(TypeError, match=r"total_tokens=0: give a whole number >= 1"):
        _CapacityLimiter(0)
