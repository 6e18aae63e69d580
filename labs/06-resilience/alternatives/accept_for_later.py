"""A correct fix unlike the reference's answer to an outage: accept the order for later (202), and honour it.

When inventory is unavailable, the reference refuses (503: nothing charged, come back later).
This checkout takes the order instead: it writes it to an outbox on its own durable disk and
answers ``202 {"status": "accepted"}``; a relay (a loop started by the app's lifespan) takes
the outbox's orders one at a time, oldest first, while the breaker on inventory is closed,
reserves the stock and charges the card (with the order's ``Idempotency-Key``, so a relay
that is cut off mid-way and tries again charges once), and only then deletes the entry.

An outbox is a queue, and a queue must be bounded: one that grows through a long outage is a
backlog that floods inventory when it comes back. So each replica accepts at most ``CAPACITY``
orders for later (beyond that, 503 with ``Retry-After``), and the relay sends at most one
order every ``RELAY_EVERY`` seconds (the backlog drains within the retry budget).

The rest is written unlike the reference too: a count-based breaker (resilience4j's
``COUNT_BASED`` window: open when ``TRIP`` of the last ``LAST`` calls failed), one probe after
``OPEN_FOR`` seconds; one retry at most, after a jittered wait, paid from a token bucket; one
deadline per order; a charge of unknown fate is 202 (pending).
"""

import contextlib
import random
import time
from collections import deque

import anyio
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from pydantic import BaseModel, Field

import sandbox

DEADLINE, RESERVE_FOR, CALL_TIMEOUT = 2.8, 1.2, 0.25
LAST, TRIP, OPEN_FOR = 20, 14, 1.2
TOKENS_PER_ORDER, MAX_TOKENS = 0.1, 4.0
CAPACITY, RELAY_EVERY = 15, 0.1
OUTBOX = "outbox"


class Order(BaseModel):
    order_id: str
    sku: str
    qty: int = Field(gt=0)
    amount: int = Field(gt=0)


class Inventory:
    """Calls to inventory from one replica, behind a count-based breaker and a retry bucket."""

    CODES = {"closed": 0, "open": 1, "half_open": 2}

    def __init__(self, app: FastAPI) -> None:
        self.gauge = Gauge("circuit_breaker_state", "0 closed, 1 open, 2 half-open", ["dependency"],
                           registry=sandbox.metrics_registry(app))
        self.gauge.labels("inventory").set(0)
        self.state, self.since, self.probe_out = "closed", 0.0, False
        self.last: deque[bool] = deque(maxlen=LAST)
        self.tokens = MAX_TOKENS

    def to(self, state: str) -> None:
        sandbox.event("breaker", name="inventory", before=self.state, after=state)
        self.state, self.since = state, time.monotonic()
        self.gauge.labels("inventory").set(self.CODES[state])

    def outcome(self, ok: bool, probe: bool) -> None:
        if probe:
            self.probe_out = False
            self.last.clear()
            self.to("closed" if ok else "open")
        elif self.state == "closed":
            self.last.append(ok)
            if self.last.count(False) >= TRIP:
                self.to("open")

    async def attempt(self, http: sandbox.HttpClient, order: Order, timeout: float) -> bool | None:
        """One call: True reserved, False failed, None not sent (the breaker is open, or its probe is out)."""
        if self.state == "open" and time.monotonic() - self.since >= OPEN_FOR:
            self.to("half_open")
        probe = self.state == "half_open"
        if self.state == "open" or (probe and self.probe_out):
            return None
        self.probe_out = self.probe_out or probe
        try:
            r = await http.post("http://inventory/reservations", timeout=timeout,
                                json={"order_id": order.order_id, "sku": order.sku, "qty": order.qty})
            ok = r.status_code == 200
        except sandbox.RequestTimeout:
            ok = False
        self.outcome(ok, probe)
        return ok

    async def reserve(self, http: sandbox.HttpClient, order: Order, until: float) -> bool:
        """Reserve by ``until``: the first try, and one retry if the bucket pays for it."""
        for retry in (False, True):
            if retry:
                if self.tokens < 1.0:
                    return False
                self.tokens -= 1.0
                await sandbox.sleep(random.uniform(0.02, 0.12))
            left = until - time.monotonic()
            if left < 0.02:
                return False
            ok = await self.attempt(http, order, min(CALL_TIMEOUT, left))
            if ok is None:
                return False
            if ok:
                return True
        return False


async def charge(http: sandbox.HttpClient, order: Order, until: float) -> bool:
    """Charge by ``until`` (each try the same charge: its key). False: no answer in time, it may have gone through."""
    while (left := until - time.monotonic()) > 0.02:
        try:
            r = await http.post("http://payments/charges", json={"order_id": order.order_id, "amount": order.amount},
                                headers={"Idempotency-Key": f"order-{order.order_id}"}, timeout=min(0.6, left))
            if r.status_code == 201:
                return True
        except sandbox.RequestTimeout:
            pass
        await sandbox.sleep(random.uniform(0.02, 0.15))
    return False


def create_app() -> FastAPI:
    """The checkout service: reserve, charge, confirm; accept for later when inventory is down."""
    waiting = {"count": 0, "next": 0}

    async def relay(app: FastAPI) -> None:
        """While the breaker is closed, see the oldest order of the outbox through, then delete it."""
        disk = await sandbox.resolve(app, sandbox.disk)
        http = await sandbox.resolve(app, sandbox.http_client)
        rows = await disk.scan(OUTBOX)
        waiting.update(count=len(rows), next=int(rows[-1].key) + 1 if rows else 0)
        while True:
            await sandbox.sleep(RELAY_EVERY)
            if inventory.state != "closed" or not (rows := await disk.scan(OUTBOX, limit=1)):
                continue
            order, now = Order(**rows[0].value), time.monotonic()
            if await inventory.reserve(http, order, now + RESERVE_FOR) and await charge(http, order, now + DEADLINE):
                await disk.delete(OUTBOX, rows[0].key)
                waiting["count"] -= 1

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(relay, app)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="checkout", lifespan=lifespan)
    inventory = Inventory(app)

    @app.post("/orders", status_code=201)
    async def place_order(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client),
                          disk: sandbox.Database = Depends(sandbox.disk)) -> JSONResponse:
        start = time.monotonic()
        inventory.tokens = min(MAX_TOKENS, inventory.tokens + TOKENS_PER_ORDER)
        if not await inventory.reserve(http, order, start + RESERVE_FOR):
            if waiting["count"] >= CAPACITY:
                return JSONResponse({"detail": "inventory is unavailable and too many orders wait for it: nothing "
                                               "was charged; try again later"}, status_code=503,
                                    headers={"Retry-After": "2"})
            key = f"{waiting['next']:09d}"
            waiting["count"], waiting["next"] = waiting["count"] + 1, waiting["next"] + 1
            await disk.put(OUTBOX, key, order.model_dump())
            return JSONResponse({"order_id": order.order_id, "status": "accepted"}, status_code=202)
        if not await charge(http, order, start + DEADLINE):
            return JSONResponse({"order_id": order.order_id, "status": "pending"}, status_code=202)
        return JSONResponse({"order_id": order.order_id, "status": "confirmed"}, status_code=201)

    return app
