"""How many simulated requests per CPU second the sandbox runs, against raw SimPy.

One workload, simulated three ways in the same process, plus one reference:

* **sandbox, tracing off** - ``World(seed)``: ``CLIENTS`` workload clients each make
  ``REQUESTS`` calls of ``POST /items/{key}`` to a real FastAPI app over the simulated
  network; the endpoint reads the row from a database node (``sandbox.database``),
  writes it back incremented and returns a dict.
* **sandbox, tracing on** - the same with ``World(seed, tracing=True)``.
* **sandbox, metrics on** - the same with ``World(seed, metrics=True)`` (tracing off): every request
  counted and timed in prometheus_client histograms, a scrape every virtual second.
* **raw SimPy** - the same hops and latencies written by hand, as a competent SimPy
  user would: processes, ``simpy.Store`` inboxes, ``env.timeout`` for every network
  hop and database operation, a dict as the table, no FastAPI.
* **reference: FastAPI alone** - the same app and requests called in-process, one
  after another, with no simulation: FastAPI's own cost per request, which no
  sandbox can avoid. It separates what the sandbox adds from what FastAPI costs.
* **FastAPI's TestClient** - what a learner would otherwise use: the same app and
  requests through ``fastapi.testclient.TestClient``, one after another, no network.
* **where the added cost goes** - the same service written as a bare ASGI app (no
  FastAPI) in the sandbox and alone, and the sandbox with one client making every
  request: the sandbox's own machinery (sandbox bare - bare alone), FastAPI's part
  inside the sandbox (sandbox - sandbox bare) against FastAPI alone, and what
  interleaving concurrent requests costs.

Every run is timed in CPU time of this process (``time.process_time``): on a shared
machine the wall clock counts other processes' turns too.

Then the order system (``sandbox/examples/order_system.py``) at about 1,000 orders per
virtual second: how many virtual seconds one core simulates per CPU second.

The raw program draws its latencies from streams seeded exactly as the sandbox seeds
its own (``chaos-dojo:{seed}:{name}`` through SHA-256), so the two are one and the same
simulation: they must finish at the same virtual time with the same table, lost
updates included. The benchmark checks that before it reports a number.

Run it from the repository root::

    python benchmarks/bench_sandbox.py            # full run: table of rates and ratios
    python benchmarks/bench_sandbox.py --quick    # a few seconds
    python benchmarks/bench_sandbox.py --profile  # also cProfile the sandbox, per-request breakdown
    python benchmarks/bench_sandbox.py --orders-only   # only the order system's table

The ratios are the point (STYLE.md: timing is a ratio against a baseline measured in the
same run); the absolute rates depend on the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import inspect
import json
import os
import platform
import pstats
import random
import sys
import sysconfig
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import simpy
from fastapi import Depends, FastAPI
from pydantic import BaseModel

import sandbox
from sandbox.http import build_request

# --- the workload --------------------------------------------------------------------------

SEED = 7
CLIENTS = 50  # concurrent workload clients
REQUESTS = 40  # requests each client makes, one after another
KEYS = 10  # distinct rows; few, so that concurrent read-then-write loses updates
REPEATS = 5  # timed runs per configuration; the best one counts
GOAL_OFF = 1 / 3  # sandbox (tracing off) must reach this fraction of raw SimPy's rate
GOAL_ON = 1 / 5  # ... and this with tracing on
#: Issue 11: what the sandbox adds beyond FastAPI's own cost (sandbox - FastAPI alone), as a multiple of raw
#: SimPy's whole simulation of the same request: at most this with tracing off, and at most GOAL_ADDED_ON with it on.
GOAL_ADDED_OFF = 1.0
GOAL_ADDED_ON = 2.0

#: The order system at about 1,000 orders per virtual second (``run_orders``): customers at once, for
#: every order going through (deep shelves: stock check, reservation, charge, event, email) and for the
#: example's own shelves (empty within a second: most orders are then refused at the stock check).
ORDER_CUSTOMERS_STOCKED = 370
ORDER_CUSTOMERS_EXAMPLE = 165
ORDER_SECONDS = 2.0  # virtual seconds of shopping timed (after the shop opens)
GOAL_ORDERS = 1.0  # virtual seconds per CPU second: at least real time on one core

SERVICE = "items"
REPLICA = "items-0"
DB = "items-db"
TABLE = "items"

# The real clock. Inside sandbox tasks the sandbox answers time.perf_counter() with the
# node's virtual clock, and a GC callback can run in the middle of a task: unwrap it.
perf_counter = inspect.unwrap(time.perf_counter)


@dataclass(frozen=True)
class Config:
    """The size of one run and the seed it starts from."""

    seed: int = SEED
    clients: int = CLIENTS
    requests: int = REQUESTS
    keys: int = KEYS

    @property
    def total(self) -> int:
        return self.clients * self.requests


@dataclass(frozen=True)
class Latencies:
    """The sandbox's default latency settings, read from a real World (never copied by hand)."""

    link_latency: float
    link_jitter: float
    db_latency: float
    db_jitter: float


@dataclass(frozen=True)
class Outcome:
    """What one simulated run did: requests completed, final table, virtual end time, CPU time."""

    completed: int
    table: dict[str, int]
    virtual_end: float
    cpu: float  # CPU seconds of this process (time.process_time) in the timed window
    gc: float = 0.0  # seconds of it spent in the cyclic garbage collector
    spans: int = 0


class GcTimer:
    """CPU time spent in the cyclic garbage collector while in the ``with`` block (``time.process_time``, which
    the sandbox leaves alone inside its tasks, where a collection may start)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.total += time.process_time() - self._start

    def __enter__(self) -> GcTimer:
        gc.collect()
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def sandbox_latencies() -> Latencies:
    world = sandbox.World(seed=0)
    world.add_database(DB)
    link = world.network.defaults
    if link.distribution != "normal" or link.loss or link.duplicate or link.reorder:
        raise SystemExit(
            f"the sandbox's default link is now {link!r}; the raw SimPy baseline models a lossless "
            f"normal(latency, jitter) link: update run_raw() to match before comparing"
        )
    db = world.databases[DB]
    return Latencies(link.latency, link.jitter, db.latency, db.jitter)


# --- (a) the sandbox: a real FastAPI app --------------------------------------------------


class Increment(BaseModel):
    by: int = 1


def create_app() -> FastAPI:
    """The service under test: read a counter from the database, write it back incremented."""
    app = FastAPI()

    @app.post("/items/{key}")
    async def increment(key: str, body: Increment, db: sandbox.Database = Depends(sandbox.database(DB))):
        value = await db.get(TABLE, key, 0)
        await db.put(TABLE, key, value + body.by)
        return {"key": key, "value": value + body.by}

    return app


def create_bare_app() -> Any:
    """The same service as ``create_app`` written as a bare ASGI app, without FastAPI: the same database calls
    (through the same ``sandbox.database`` dependency), the same JSON in and out. In a world it costs the
    sandbox's own machinery and almost nothing else, so the benchmark can tell what the sandbox adds from how
    FastAPI runs inside it.
    """
    provide = sandbox.database(DB)
    local = SimpleNamespace(app=None)  # the request the dependency reads outside a world (for app.state)

    async def app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
        message = await receive()
        key = scope["path"].rsplit("/", 1)[1]
        by = json.loads(message["body"])["by"]
        db = await provide(local)
        value = await db.get(TABLE, key, 0)
        await db.put(TABLE, key, value + by)
        body = json.dumps({"key": key, "value": value + by}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    app.state = SimpleNamespace()  # type: ignore[attr-defined]
    local.app = app
    return app


async def workload(client: sandbox.Client, cfg: Config, done: list[int]) -> None:
    for _ in range(cfg.requests):
        key = f"k{client.random.randrange(cfg.keys)}"
        r = await client.http.post(f"http://{SERVICE}/items/{key}", json={"by": 1})
        if r.status_code != 200:
            raise AssertionError(f"{client.name} t={client.now:.6f}: {r.status_code} {r.text}")
        done[0] += 1


def build_world(cfg: Config, tracing: bool, factory: Callable[[], Any] = create_app,
                metrics: bool = False) -> tuple[sandbox.World, list[int]]:
    world = sandbox.World(seed=cfg.seed, tracing=tracing, metrics=metrics)
    world.add_database(DB)
    world.add_service(SERVICE, factory, isolate_module=False)
    done = [0]
    for i in range(cfg.clients):
        world.add_client(f"client-{i}", workload, cfg, done)
    return world, done


def run_sandbox(cfg: Config, tracing: bool, profiler: cProfile.Profile | None = None, read_spans: bool = False,
                factory: Callable[[], Any] = create_app, metrics: bool = False) -> Outcome:
    """Build a world (not timed), then time ``world.run()`` (and ``world.spans()`` if ``read_spans``).

    The sandbox builds the SDK spans of its automatic instrumentation when they are first
    read; ``read_spans`` puts that cost inside the timed window too. ``factory`` builds the
    service (``create_bare_app``: the same service without FastAPI).
    """
    world, done = build_world(cfg, tracing, factory, metrics)
    with GcTimer() as gc_time:
        if profiler is not None:
            profiler.enable()
        start = time.process_time()
        world.run()
        if read_spans:
            world.spans()
        cpu = time.process_time() - start
        if profiler is not None:
            profiler.disable()
    if world.errors:
        raise AssertionError(f"seed={cfg.seed}: the service failed: {world.errors[0]}\n{world.errors[0].traceback}")
    return Outcome(done[0], world.database(DB).rows(TABLE), world.now, cpu, gc_time.total, len(world.spans()))


# --- (b) raw SimPy: the same hops and latencies, by hand ----------------------------------


def stream(seed: int, name: str) -> random.Random:
    """A ``random.Random`` seeded as the sandbox seeds its stream ``name`` (sandbox/_streams.py)."""
    digest = hashlib.sha256(f"chaos-dojo:{seed}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def normal_delay(rng: random.Random, mean: float, sd: float) -> Callable[[], float]:
    """Draws of a normal(mean, sd) delay, clipped at 0."""
    gauss = rng.gauss

    def draw() -> float:
        d = gauss(mean, sd)
        return d if d > 0.0 else 0.0

    return draw


def run_raw(cfg: Config, lat: Latencies) -> Outcome:
    """The workload in plain SimPy: one process per client, per request handler and per DB operation.

    Requests land in the destination's inbox (a ``simpy.Store``) after the link's delay
    and a dispatcher process takes them out; the database replies into the waiting
    handler's reply event (as the sandbox's own pending-reply events), the service
    replies into the client's inbox. Every hop is an ``env.timeout`` whose delay is
    drawn, when the message is sent, from that link's own seeded stream.
    """
    env = simpy.Environment()
    timeout, process, event = env.timeout, env.process, env.event
    table: dict[str, int] = {}
    service_inbox = simpy.Store(env)
    db_inbox = simpy.Store(env)
    to_db = normal_delay(stream(cfg.seed, f"network/{REPLICA}->{DB}"), lat.link_latency, lat.link_jitter)
    from_db = normal_delay(stream(cfg.seed, f"network/{DB}->{REPLICA}"), lat.link_latency, lat.link_jitter)
    db_op = normal_delay(stream(cfg.seed, f"storage/{DB}"), lat.db_latency, lat.db_jitter)
    completed = [0]

    def database():
        while True:
            op = yield db_inbox.get()
            process(execute(*op))

    def execute(kind, key, value, reply):
        yield timeout(db_op())  # the server's per-operation latency
        if kind == "get":
            result = table.get(key, 0)
        else:
            table[key] = value
            result = None
        yield timeout(from_db())  # db -> service
        reply.succeed(result)

    def service():
        while True:
            request = yield service_inbox.get()
            process(handle(*request))

    def handle(key, by, client_inbox, to_client):
        reply = event()
        yield timeout(to_db())  # service -> db: read
        db_inbox.put(("get", key, None, reply))
        value = yield reply
        reply = event()
        yield timeout(to_db())  # service -> db: write
        db_inbox.put(("put", key, value + by, reply))
        yield reply
        yield timeout(to_client())  # service -> client
        client_inbox.put({"key": key, "value": value + by})

    def client(name):
        keys = stream(cfg.seed, f"client/{name}")
        to_service = normal_delay(stream(cfg.seed, f"network/{name}->{REPLICA}"), lat.link_latency, lat.link_jitter)
        to_client = normal_delay(stream(cfg.seed, f"network/{REPLICA}->{name}"), lat.link_latency, lat.link_jitter)
        inbox = simpy.Store(env)
        for _ in range(cfg.requests):
            key = f"k{keys.randrange(cfg.keys)}"
            yield timeout(to_service())  # client -> service
            service_inbox.put((key, 1, inbox, to_client))
            yield inbox.get()
            completed[0] += 1

    process(database())
    process(service())
    clients = [process(client(f"client-{i}")) for i in range(cfg.clients)]
    with GcTimer() as gc_time:
        start = time.process_time()
        env.run(until=env.all_of(clients))
        cpu = time.process_time() - start
    return Outcome(completed[0], dict(sorted(table.items())), env.now, cpu, gc_time.total)


# --- reference: FastAPI's own cost, with no simulation at all ----------------------------


def run_fastapi_alone(cfg: Config, factory: Callable[[], Any] = create_app) -> Outcome:
    """The same app and requests, called in-process one after another: FastAPI's own cost per request.

    Outside a World, ``sandbox.database`` gives the in-memory local store (the
    TestClient mode), so the endpoint runs the same dependency and the same storage
    code but never waits: no network, no virtual time, no SimPy. The scope and the
    request bytes are those the sandbox builds. A floor: no simulated request can
    cost less than this plus the simulation itself. ``factory``: as in ``run_sandbox``.
    """
    app = factory()
    keys = stream(cfg.seed, "fastapi-alone")
    requests = [
        build_request("POST", f"http://{SERVICE}/items/k{keys.randrange(cfg.keys)}", json={"by": 1})
        for _ in range(cfg.total)
    ]
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    with GcTimer() as gc_time:
        start = time.process_time()
        for i, request in enumerate(requests):
            scope = {
                "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
                "method": request.method, "scheme": "http", "path": request.path,
                "raw_path": request.path.encode(), "root_path": "", "query_string": request.query_string,
                "headers": request.headers, "server": (REPLICA, 80), "client": ("client-0", 40000 + i), "state": {},
            }

            async def receive(body: bytes = request.body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            coro = app(scope, receive, send)
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:
                raise AssertionError("the app suspended although the local store never waits")
        cpu = time.process_time() - start
    if statuses != [200] * cfg.total:
        raise AssertionError(f"FastAPI alone answered {sorted(set(statuses))}, expected only 200")
    table = app.state.chaos_dojo_databases[DB].rows(TABLE)
    return Outcome(len(statuses), table, 0.0, cpu, gc_time.total)


def run_testclient(cfg: Config) -> Outcome:
    """The same app and requests through FastAPI's TestClient, one after another: what a learner would
    otherwise use. As under FastAPI alone, ``sandbox.database`` is the in-memory local store outside a World.

    The client is opened once (``with TestClient(app)``: the app's lifespan and TestClient's event-loop
    thread start once, not per request); the requests are those of ``run_fastapi_alone``.
    """
    with warnings.catch_warnings():  # Starlette's advice about httpx versions is not this benchmark's business
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = create_app()
    keys = stream(cfg.seed, "fastapi-alone")
    paths = [f"/items/k{keys.randrange(cfg.keys)}" for _ in range(cfg.total)]
    statuses: list[int] = []
    with TestClient(app, base_url=f"http://{SERVICE}") as client:
        post = client.post
        with GcTimer() as gc_time:
            start = time.process_time()
            for path in paths:
                statuses.append(post(path, json={"by": 1}).status_code)
            cpu = time.process_time() - start
    if statuses != [200] * cfg.total:
        raise AssertionError(f"TestClient answered {sorted(set(statuses))}, expected only 200")
    return Outcome(len(statuses), app.state.chaos_dojo_databases[DB].rows(TABLE), 0.0, cpu, gc_time.total)


# --- the order system at 1,000 orders per virtual second -----------------------------------


@dataclass(frozen=True)
class Orders:
    """One timed stretch of the order system: orders placed, virtual seconds, CPU and wall seconds."""

    label: str
    customers: int
    orders: int
    virtual: float
    cpu: float
    wall: float

    @property
    def speed(self) -> float:
        """Virtual seconds simulated per CPU second (1: real time on one core)."""
        return self.virtual / self.cpu


async def stock_deep_shelves(client: sandbox.Client) -> None:
    """A clerk who stocks a billion of every SKU in every warehouse: no order is refused for stock."""
    from sandbox.examples import order_system

    for sku in order_system.PRICES:
        for warehouse in order_system.WAREHOUSES:
            await client.http.put(f"http://inventory/stock/{sku}/{warehouse}", json={"qty": 10**9})


def order_world(seed: int, customers: int, *, stocked: bool, tracing: bool) -> sandbox.World:
    """``order_system.build_world`` (two replicas per service, the slow lossy orders <-> payments link), with
    customers who keep shopping, and with ``stocked`` a clerk who stocks deep shelves."""
    from sandbox.examples import order_system

    return order_system.build_world(seed, clients=customers, orders_per_client=10**9, tracing=tracing,
                                    clerk=stock_deep_shelves if stocked else None, wall_limit=None)


def run_orders(label: str, seed: int, customers: int, seconds: float, *, stocked: bool, tracing: bool) -> Orders:
    """Run the order system to the opening of the shop (not timed), then ``seconds`` of shopping, timed by the
    process's CPU clock (one core) and the wall clock."""
    from sandbox.examples import order_system

    world = order_world(seed, customers, stocked=stocked, tracing=tracing)
    world.run(until=order_system.SHOP_OPENS)
    cpu_start, start = time.process_time(), perf_counter()
    world.run(until=order_system.SHOP_OPENS + seconds)
    cpu, wall = time.process_time() - cpu_start, perf_counter() - start
    if world.errors:
        raise AssertionError(f"seed={seed}: the order system failed: {world.errors[0]}")
    orders = sum(1 for op in world.history if op.f == "place-order" and op.type != "invoke")
    return Orders(label, customers, orders, seconds, cpu, wall)


def orders_table(seed: int, seconds: float, repeats: int) -> None:
    """The order system at about 1,000 orders per virtual second: virtual seconds per CPU second (best run)."""
    configs = (
        (f"every order goes through, {ORDER_CUSTOMERS_STOCKED} customers", ORDER_CUSTOMERS_STOCKED, True, False),
        ("  the same, tracing on", ORDER_CUSTOMERS_STOCKED, True, True),
        (f"the example's shelves, {ORDER_CUSTOMERS_EXAMPLE} customers", ORDER_CUSTOMERS_EXAMPLE, False, False),
    )
    best: dict[str, Orders] = {}
    for _ in range(repeats):
        for label, customers, stocked, tracing in configs:
            run = run_orders(label, seed, customers, seconds, stocked=stocked, tracing=tracing)
            if label not in best or run.cpu < best[label].cpu:
                best[label] = run
    print(f"\nthe order system (sandbox/examples/order_system.py, 2 replicas per service, the slow lossy orders <-> "
          f"payments link), seed={seed}:\n{seconds:g} virtual seconds of shopping timed after the shop opens; best of "
          f"{repeats}; CPU time of this process (one core)")
    print()
    print(f"{'configuration':<48}{'orders/virtual s':>17}{'CPU s/virtual s':>17}{'virtual s/CPU s':>17}"
          f"{'goal':>7}   met")
    for label, *_ in configs:
        o = best[label]
        met = "yes" if o.speed >= GOAL_ORDERS else f"NO (needs {GOAL_ORDERS / o.speed:.1f}x faster)"
        print(f"{label:<48}{o.orders / o.virtual:>17,.0f}{o.cpu / o.virtual:>17.2f}{o.speed:>17.2f}"
              f"{'>= ' + fraction(GOAL_ORDERS):>7}   {met}")
    print("(with the example's shelves, stock runs out within the first second: after that most orders end at the "
          "stock check,\nwhich costs a fraction of an order that goes through)")


# --- measuring -----------------------------------------------------------------------------


def best_of(repeats: int, configs: dict[str, Callable[[], Outcome]]) -> dict[str, Outcome]:
    """The fastest of ``repeats`` runs of each configuration, taken in turn (off, on, raw, off, ...).

    Taking turns spreads any change in machine load over every configuration alike.
    """
    best: dict[str, Outcome] = {}
    for _ in range(repeats):
        for key, run in configs.items():
            outcome = run()
            if key not in best or outcome.cpu < best[key].cpu:
                best[key] = outcome
    return best


def check(cfg: Config, timed: dict[str, Outcome]) -> str:
    """Check that the runs did the same work; return a one-line summary."""
    seed = f"seed={cfg.seed}"
    off, on, raw, bare, metered = timed["off"], timed["on"], timed["raw"], timed["bare"], timed["metrics"]
    if (metered.table, metered.virtual_end) != (off.table, off.virtual_end):
        raise AssertionError(f"{seed}: metrics on changed the run: table {metered.table} at t={metered.virtual_end!r}, "
                             f"without them {off.table} at t={off.virtual_end!r}")
    for name, o in (("sandbox (tracing off)", off), ("sandbox (tracing on)", on), ("raw SimPy", raw),
                    ("sandbox, bare ASGI app", bare), ("sandbox, one client", timed["one client"])):
        if o.completed != cfg.total:
            raise AssertionError(f"{seed}: {name} completed {o.completed} requests, expected {cfg.total}")
        stored = sum(o.table.values())
        if not 0 < stored <= o.completed:
            raise AssertionError(f"{seed}: {name} stored {stored} increments for {o.completed} requests")
    if off.table != raw.table or on.table != raw.table or bare.table != raw.table:
        raise AssertionError(
            f"{seed}: final tables differ: sandbox off {off.table}, on {on.table}, bare {bare.table}, raw {raw.table}. Both draw "
            f"from identically seeded streams, so they should be one simulation: check that run_raw() still "
            f"matches the sandbox's hops and stream names"
        )
    if not off.virtual_end == on.virtual_end == bare.virtual_end == raw.virtual_end:
        raise AssertionError(
            f"{seed}: virtual end times differ: sandbox off {off.virtual_end!r}, on {on.virtual_end!r}, "
            f"bare {bare.virtual_end!r}, raw {raw.virtual_end!r}"
        )
    if on.spans != 4 * cfg.total:
        raise AssertionError(f"{seed}: tracing recorded {on.spans} spans, expected 4 per request ({4 * cfg.total})")
    for name, o in (("FastAPI alone", timed["alone"]), ("TestClient", timed["testclient"]), ("bare app alone", timed["bare alone"])):
        if sum(o.table.values()) != cfg.total:
            raise AssertionError(f"{seed}: {name} stored {sum(o.table.values())} increments for {cfg.total} "
                                 f"requests made one at a time")
    stored = sum(raw.table.values())
    return (
        f"checks passed: {cfg.total} requests completed in every run; the same final table in the four simulations "
        f"({stored} increments stored, {cfg.total - stored} lost to concurrent read-then-write); "
        f"the same virtual end time, t={raw.virtual_end:.6f} s; {on.spans} spans with tracing on"
    )


def fraction(x: float) -> str:
    return f"1/{round(1 / x)}" if x < 1 and abs(1 / x - round(1 / x)) < 1e-9 else f"{x:g}"


def report(cfg: Config, repeats: int, timed: dict[str, Outcome], summary: str) -> None:
    rate = {k: cfg.total / o.cpu for k, o in timed.items()}
    us = {k: 1e6 * o.cpu / cfg.total for k, o in timed.items()}
    print(f"\nseed={cfg.seed}: {cfg.clients} clients x {cfg.requests} requests = {cfg.total} requests per run, "
          f"{cfg.keys} keys; best of {repeats} timed runs after a warm-up")
    print()
    rows = (
        ("sandbox, tracing off", "off"), ("sandbox, tracing on", "on"), ("  + reading every span", "read"),
        ("sandbox, metrics on (tracing off)", "metrics"),
        ("raw SimPy", "raw"), ("reference: FastAPI alone", "alone"),
        ("FastAPI's TestClient (what a learner would otherwise use)", "testclient"),
        ("sandbox, the same service as a bare ASGI app (no FastAPI)", "bare"),
        ("reference: that bare app alone", "bare alone"),
        (f"sandbox, tracing off, one client x {cfg.total} requests", "one client"),
    )
    width = max(len(label) for label, _ in rows) + 2
    print(f"{'configuration':<{width}}{'requests/CPU s':>19}{'us/request':>12}{'CPU s':>9}{'of it in GC':>13}")
    for label, key in rows:
        o = timed[key]
        print(f"{label:<{width}}{rate[key]:>19,.0f}{us[key]:>12.1f}{o.cpu:>9.3f}{o.gc / o.cpu:>13.1%}")
    print()
    print(f"{'ratio':<34}{'measured':>10}{'goal':>9}   met")
    for label, key, goal in (
        ("sandbox/raw, tracing off", "off", GOAL_OFF),
        ("sandbox/raw, tracing on", "on", GOAL_ON),
        ("sandbox/raw, tracing on, spans read", "read", GOAL_ON),
    ):
        ratio = rate[key] / rate["raw"]
        met = "yes" if ratio >= goal else f"NO (needs {goal / ratio:.1f}x faster)"
        print(f"{label:<34}{ratio:>10.3f}{'>= ' + fraction(goal):>9}   {met}")
    for label, key, goal in (
        ("added beyond FastAPI / raw, off", "off", GOAL_ADDED_OFF),
        ("added beyond FastAPI / raw, on", "on", GOAL_ADDED_ON),
    ):
        added = (us[key] - us["alone"]) / us["raw"]
        met = "yes" if added <= goal else f"NO (needs {added / goal:.1f}x less added)"
        print(f"{label:<34}{added:>10.2f}{'<= ' + f'{goal:g}':>9}   {met}")
    print()
    print(f"FastAPI alone (the same app and requests in-process, no simulation) costs {us['alone']:.1f} us/request: "
          f"even a sandbox adding\nnothing beyond raw SimPy's own simulation would reach only raw/(raw + FastAPI alone) = "
          f"{us['raw'] / (us['raw'] + us['alone']):.3f}.\nWhat the sandbox adds beyond FastAPI's own cost: "
          f"{us['off'] - us['alone']:.1f} us/request with tracing off ({(us['off'] - us['alone']) / us['raw']:.1f}x raw "
          f"SimPy's whole simulation), {us['on'] - us['alone']:.1f} with tracing on "
          f"({(us['on'] - us['alone']) / us['raw']:.1f}x).\nThe sandbox (tracing off) against FastAPI's TestClient, "
          f"what a learner would otherwise use: {us['off'] / us['testclient']:.2f}x its time per request.")
    print(f"Metrics on (tracing off) against off: {us['metrics'] / us['off']:.2f}x the time per request "
          f"({us['metrics'] - us['off']:+.1f} us/request).")
    print()
    machinery = us["bare"] - us["bare alone"]
    inside = us["off"] - us["bare"]
    print(f"Where the added cost goes (tracing off): the sandbox's own machinery, with the bare app (sandbox bare - "
          f"bare alone), costs {machinery:.1f} us/request\n({machinery / us['raw']:.2f}x raw SimPy); FastAPI's "
          f"part inside the sandbox (sandbox - sandbox bare) costs {inside:.1f} us/request, against "
          f"{us['alone'] - us['bare alone']:.1f} alone\n(FastAPI alone - bare alone): FastAPI's own code runs "
          f"{inside - (us['alone'] - us['bare alone']):+.1f} us/request slower inside the sandbox. One client "
          f"making every request one after another\ncosts {us['one client']:.1f} us/request against "
          f"{us['off']:.1f} with {cfg.clients} clients interleaved ({us['off'] - us['one client']:+.1f} us/request for "
          f"interleaving).")
    print()
    print(summary)


# --- profiling -----------------------------------------------------------------------------

Func = tuple[str, int, str]
STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])


def passthrough(func: Func) -> bool:
    """Builtins and the standard library: their time is charged to whoever called them."""
    path = func[0]
    if path == "~" or path.startswith("<"):
        return True
    return os.path.realpath(path).startswith(STDLIB + os.sep) and "site-packages" not in path


def component(func: Func) -> str:
    """The component a (non-passthrough) function belongs to."""
    path = func[0].replace(os.sep, "/")
    if "/sandbox/" in path:
        name = path.rsplit("/", 1)[1]
        return {
            "_runtime.py": "sandbox  task driver (_runtime: Task._step/_resume, ctx, loop guard)",
            "services.py": "sandbox  ASGI glue (services: scope, _serve, _Exchange)",
            "nodes.py": "sandbox  RPC (nodes: call, reply, _replied, deadlines)",
            "network.py": "sandbox  network (network: send, _Arrival, sample_delay)",
            "http.py": "sandbox  HTTP client (http: build_request, Response)",
            "storage.py": "sandbox  storage (storage: transport, Store, DatabaseNode)",
            "tracing.py": "sandbox  tracing glue (tracing.py)",
            "world.py": "sandbox  event log (world.record, next_id)",
            "deps.py": "sandbox  dependencies (deps: provide_database)",
            "clients.py": "sandbox  workload client (clients)",
        }.get(name, f"sandbox  other ({name})")
    if "/benchmarks/" in path or path.endswith("bench_sandbox.py"):
        return "workload endpoint + client body (this benchmark)"
    if "/simpy/" in path:
        return "SimPy event loop"
    if "/opentelemetry/" in path:
        return "OpenTelemetry SDK"
    if "/fastapi/" in path:
        if "/dependencies/" in path:
            return "FastAPI  solve_dependencies / body parsing"
        if "/fastapi/encoders.py" in path:
            return "FastAPI  serialization (jsonable_encoder)"
        if "/_compat" in path:
            return "FastAPI  validation (pydantic adapter)"
        if "/fastapi/routing.py" in path:
            return "FastAPI  request handler (routing.py)"
        return "FastAPI  other"
    if "/pydantic" in path:
        return "FastAPI  validation (pydantic)"
    if "/starlette/" in path:
        if "/routing.py" in path:
            return "Starlette routing (route matching)"
        if "/middleware/" in path or "/applications.py" in path or "_exception_handler" in path:
            return "Starlette middleware stack"
        if "/requests.py" in path or "/datastructures.py" in path:
            return "Starlette request object"
        if "/responses.py" in path:
            return "Starlette response (render, send)"
        return "Starlette other"
    if "/anyio/" in path or "/sniffio/" in path:
        return "anyio / sniffio"
    return "other third-party"


def breakdown(stats: pstats.Stats) -> dict[str, float]:
    """Self time (s) by component; builtin and stdlib time goes to their callers, split by call edge."""
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    shares: dict[Func, dict[str, float]] = {}

    def share(func: Func, seen: frozenset[Func]) -> dict[str, float]:
        if func in shares:
            return shares[func]
        if not passthrough(func):
            result = {component(func): 1.0}
        else:
            callers = table[func][4] if func in table else {}
            weights = {c: (edge[2] or edge[3] or edge[0]) for c, edge in callers.items() if c not in seen}
            total = sum(weights.values())
            if not total:
                result = {"python runtime (no caller)": 1.0}
            else:
                result = {}
                for caller, weight in weights.items():
                    for comp, part in share(caller, seen | {func}).items():
                        result[comp] = result.get(comp, 0.0) + part * weight / total
        shares[func] = result
        return result

    out: dict[str, float] = {}
    for func, (_cc, _nc, tt, _ct, _callers) in table.items():
        for comp, part in share(func, frozenset()).items():
            out[comp] = out.get(comp, 0.0) + tt * part
    return out


def short(func: Func) -> str:
    path, line, name = func
    if path == "~":
        return name
    path = path.replace(os.sep, "/")
    checkout = str(Path(__file__).resolve().parent.parent).replace(os.sep, "/") + "/"
    for marker in ("/site-packages/", checkout, "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})"


def print_top(stats: pstats.Stats, key: int, title: str, n: int, per: int) -> None:
    """The top ``n`` functions by tottime (key=2) or cumtime (key=3), per request and in total."""
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(table.items(), key=lambda kv: kv[1][key], reverse=True)[:n]
    print(f"\n  top {n} by {title}")
    print(f"  {'ncalls':>9} {'calls/req':>9} {'tottime s':>10} {'us/req':>8} {'cumtime s':>10} {'us/req':>8}  function")
    for func, (_cc, nc, tt, ct, _callers) in rows:
        print(f"  {nc:>9} {nc / per:>9.2f} {tt:>10.4f} {1e6 * tt / per:>8.2f} {ct:>10.4f} {1e6 * ct / per:>8.2f}  {short(func)}")


def profile(cfg: Config, timed: dict[str, Outcome]) -> None:
    for label, tracing in (("tracing off", False), ("tracing on", True)):
        run_sandbox(cfg, tracing)  # warm
        profiler = cProfile.Profile()
        gc.disable()  # a collection would be charged to whichever function happened to allocate
        try:
            outcome = run_sandbox(cfg, tracing, profiler)
        finally:
            gc.enable()
        stats = pstats.Stats(profiler)
        per = outcome.completed
        best = timed["on" if tracing else "off"]
        profiled_us = 1e6 * outcome.cpu / per
        plain_us = 1e6 * best.cpu / per
        gc_us = 1e6 * best.gc / per
        print(f"\n=== cProfile: sandbox, {label}, {per} requests, cyclic GC off while profiling "
              f"({profiled_us:.1f} us/request under the profiler; {plain_us:.1f} without, of which {gc_us:.1f} in GC) ===")
        print_top(stats, 3, "cumulative time", 30, per)
        print_top(stats, 2, "total (self) time", 30, per)
        parts = breakdown(stats)
        total = sum(parts.values())
        work_us = plain_us - gc_us
        print(f"\n  self time by component (builtins and stdlib charged to their callers); 'est. us/req' scales each "
              f"profiled share\n  to the unprofiled {work_us:.1f} us/request outside the GC (cProfile inflates "
              f"call-heavy code most: read the estimates as approximate)")
        print(f"  {'component':<72}{'profiled us/req':>16}{'share':>8}{'est. us/req':>13}")
        for comp, secs in sorted(parts.items(), key=lambda kv: kv[1], reverse=True):
            print(f"  {comp:<72}{1e6 * secs / per:>16.1f}{secs / total:>8.1%}{work_us * secs / total:>13.1f}")
        print(f"  {'cyclic garbage collector (measured in the timed run, not profiled)':<72}{'':>16}{'':>8}{gc_us:>13.1f}")
        groups: dict[str, float] = {}
        for comp, secs in parts.items():
            head = comp.split()[0]
            group = {"FastAPI": "FastAPI + Starlette + pydantic + anyio", "Starlette": "FastAPI + Starlette + pydantic + anyio",
                     "anyio": "FastAPI + Starlette + pydantic + anyio", "sandbox": "sandbox (all modules)",
                     "SimPy": "SimPy event loop", "OpenTelemetry": "OpenTelemetry SDK"}.get(head, "other")
            groups[group] = groups.get(group, 0.0) + secs
        print(f"  {'-' * 109}")
        groups["cyclic garbage collector"] = 0.0
        for group, secs in sorted(groups.items(), key=lambda kv: kv[1], reverse=True):
            est = gc_us if group == "cyclic garbage collector" else work_us * secs / total
            print(f"  {group:<72}{1e6 * secs / per:>16.1f}{secs / total:>8.1%}{est:>13.1f}")
        print(f"  {'total':<72}{profiled_us:>16.1f}{'':>8}{plain_us:>13.1f}")


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run: 10 clients x 10 requests, best of 3")
    parser.add_argument("--profile", action="store_true", help="also run the sandbox under cProfile (tracing off and on)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"the seed of every run (default {SEED})")
    parser.add_argument("--repeats", type=int, default=None, help=f"timed runs per configuration (default {REPEATS})")
    parser.add_argument("--orders-only", action="store_true", help="only the order system's table")
    args = parser.parse_args(argv)

    cfg = Config(seed=args.seed)
    repeats = args.repeats or REPEATS
    if args.quick:
        cfg = replace(cfg, clients=10, requests=10)
        repeats = args.repeats or 3
    order_seconds, order_repeats = (0.5, 1) if args.quick else (ORDER_SECONDS, args.repeats or 3)
    if args.orders_only:
        orders_table(cfg.seed, order_seconds, order_repeats)
        return 0
    lat = sandbox_latencies()
    versions = ", ".join(f"{p} {version(p)}" for p in ("simpy", "fastapi", "starlette", "pydantic", "opentelemetry-sdk"))
    print(f"Chaos Dojo sandbox benchmark (seed={cfg.seed})")
    print(f"Python {platform.python_version()} on {platform.machine()}; {versions}")
    print(f"links normal({lat.link_latency:g}, {lat.link_jitter:g}) s clipped at 0; "
          f"database op normal({lat.db_latency:g}, {lat.db_jitter:g}) s")

    configs: dict[str, Callable[[], Outcome]] = {
        "off": lambda: run_sandbox(cfg, tracing=False),
        "on": lambda: run_sandbox(cfg, tracing=True),
        "read": lambda: run_sandbox(cfg, tracing=True, read_spans=True),
        "metrics": lambda: run_sandbox(cfg, tracing=False, metrics=True),
        "raw": lambda: run_raw(cfg, lat),
        "alone": lambda: run_fastapi_alone(cfg),
        "testclient": lambda: run_testclient(cfg),
        "bare": lambda: run_sandbox(cfg, tracing=False, factory=create_bare_app),
        "bare alone": lambda: run_fastapi_alone(cfg, create_bare_app),
        "one client": lambda: run_sandbox(replace(cfg, clients=1, requests=cfg.total), tracing=False),
    }
    for run in configs.values():  # warm-up: imports, FastAPI's caches, the allocator
        run()
    timed = best_of(repeats, configs)
    summary = check(cfg, timed)
    report(cfg, repeats, timed, summary)
    orders_table(cfg.seed, order_seconds, order_repeats)
    if args.profile:
        profile(cfg, timed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
