"""A checkout calling an inventory, with a circuit breaker and retries counted through prometheus_client (the
metrics tests' services: ``isolate_module=True``, so each replica runs this module afresh, as its own process)."""

from __future__ import annotations

import time

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge

import sandbox
from sandbox.metrics import BREAKER_STATE, BREAKER_STATES

#: Made on prometheus_client's default registry, as module-level metrics usually are: per replica in a world.
PLACED = Counter("checkout_orders_placed", "Orders the checkout accepted")

#: Consecutive failures that open the breaker, and how long it stays open (virtual seconds).
FAILURES_TO_OPEN = 3
OPEN_FOR = 1.0


def create_checkout() -> FastAPI:
    app = FastAPI()
    registry = sandbox.metrics_registry(app)
    state_gauge = Gauge(BREAKER_STATE, "0 closed, 1 open, 2 half-open", ["dependency"], registry=registry)
    retries = Counter("retries", "Calls sent again", ["dependency"], registry=registry)
    breaker = {"state": "closed", "failures": 0, "opened_at": 0.0}

    def move(to: str) -> None:
        breaker["state"] = to
        state_gauge.labels("inventory").set(BREAKER_STATES[to])

    move("closed")

    @app.post("/checkout")
    async def checkout(http: sandbox.HttpClient = Depends(sandbox.http_client)) -> JSONResponse:
        if breaker["state"] == "open":
            if time.monotonic() - breaker["opened_at"] < OPEN_FOR:
                return JSONResponse({"error": "inventory unavailable"}, status_code=503, headers={"Retry-After": "1"})
            move("half_open")
        for attempt in range(2):
            if attempt:
                retries.labels("inventory").inc()
            try:
                r = await http.post("http://inventory/reserve", timeout=0.3)
            except sandbox.RequestTimeout:
                continue
            if r.status_code == 200:
                breaker["failures"] = 0
                move("closed")
                PLACED.inc()
                return JSONResponse({"placed": True})
        breaker["failures"] += 1
        if breaker["state"] == "half_open" or breaker["failures"] >= FAILURES_TO_OPEN:
            breaker["opened_at"] = time.monotonic()
            move("open")
        return JSONResponse({"error": "inventory unavailable"}, status_code=503, headers={"Retry-After": "1"})

    return app


def create_inventory() -> FastAPI:
    app = FastAPI()

    @app.post("/reserve")
    async def reserve() -> dict:
        await sandbox.sleep(0.004)
        return {"reserved": True}

    return app


def shopper(orders: int, every: float):
    """A workload placing ``orders`` orders, one every ``every`` virtual seconds."""

    async def workload(client: sandbox.Client) -> None:
        for i in range(orders):
            async with client.operation("checkout", i) as op:
                try:
                    r = await client.http.post("http://checkout/checkout", timeout=2.0)
                except sandbox.RequestTimeout:
                    op.info("timeout")
                else:
                    op.ok(r.status_code)
            await sandbox.sleep(every)

    return workload


def build_world(seed: int, *, metrics: bool = True, outage: bool = True, **options) -> sandbox.World:
    """Checkout (2 replicas) and inventory, four shoppers, and (``outage``) inventory cut off from 3 s to 6 s."""
    from sandbox.faults import Partition, Schedule

    world = sandbox.World(seed, metrics=metrics, **options)
    world.add_service("inventory", create_inventory)
    world.add_service("checkout", create_checkout, replicas=2)
    for i in range(4):
        world.add_client(f"shopper-{i}", shopper(100, 0.1))
    if outage:
        world.inject(Schedule([Partition("checkout", "inventory", start=3.0, duration=3.0)]))
    return world
