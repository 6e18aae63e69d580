"""The reference solution: a checkout that fails fast, and honestly, when inventory is down.

Each pattern of module 06, in the order a request meets it:

* **A deadline** (``DEADLINE`` seconds from the order's arrival): every call's timeout is
  what is left of it, so the shopper has an answer in time whatever happens below.
* **A circuit breaker** on inventory (closed, open, half-open, as resilience4j's
  time-based window): it opens when at least half of the calls of the last ``WINDOW``
  seconds failed (``MIN_CALLS`` or more); while open it refuses at once, sending nothing;
  after ``OPEN_FOR`` seconds one request goes through as a probe (half-open), and its
  answer closes the breaker or opens it again. Each move is reported with
  ``sandbox.event("breaker", ...)`` and shown on the ``circuit_breaker_state`` gauge.
* **Retries with exponential backoff and full jitter** (AWS's "Exponential Backoff and
  Jitter"): at most ``ATTEMPTS`` attempts, each after a random wait in ``[0, BASE * 2**n]``.
* **A retry budget** (Finagle's RetryBudget): each order deposits ``BUDGET_RATIO`` of a
  token, a retry spends one, the bucket holds at most ``BUDGET_CAP``: retries stay a small
  share of the calls when everything fails at once.
* **Honest answers**: inventory unavailable, the order is refused with 503 and a
  ``Retry-After`` (nothing was charged); the charge is retried with the order's
  ``Idempotency-Key`` (a retry is the same charge), and if payments never answers in time the
  order is accepted as pending (202): it may have been charged, so it is not refused.
"""

import math
import random
import time

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field

import sandbox

#: Seconds from an order's arrival to its answer, at the most.
DEADLINE = 2.8
#: Of the deadline, what the inventory step may use (the rest is the charge's).
INVENTORY_SHARE = 1.4
#: Each inventory attempt waits at most this long; a charge attempt at most CHARGE_TIMEOUT.
INVENTORY_TIMEOUT = 0.25
CHARGE_TIMEOUT = 0.6
#: Attempts per inventory call, and the backoff's base (seconds).
ATTEMPTS = 3
BASE = 0.05
#: The retry budget: each order deposits BUDGET_RATIO tokens, a retry spends one, at most BUDGET_CAP saved.
BUDGET_RATIO = 0.1
BUDGET_CAP = 5.0
#: The breaker: over the last WINDOW seconds, at least MIN_CALLS calls and FAILURE_RATE of them failed: open,
#: for OPEN_FOR seconds.
WINDOW = 1.0
MIN_CALLS = 10
FAILURE_RATE = 0.5
OPEN_FOR = 1.0


class Order(BaseModel):
    """An order for ``qty`` of ``sku``, paid ``amount`` cents."""

    order_id: str
    sku: str
    qty: int = Field(gt=0)
    amount: int = Field(gt=0)


class Breaker:
    """A circuit breaker on one dependency, in one replica: closed, open, or half-open.

    ``allow()`` says whether a call may go now (and, half-open, makes it the probe);
    ``record(ok, probe)`` feeds it the call's outcome.
    """

    STATES = {"closed": 0, "open": 1, "half_open": 2}

    def __init__(self, name: str, gauge: Gauge) -> None:
        self.name, self.gauge = name, gauge
        self.state, self.opened_at, self.probing = "closed", 0.0, False
        self.outcomes: list[tuple[float, bool]] = []
        gauge.labels(name).set(0)

    def move(self, to: str) -> None:
        sandbox.event("breaker", name=self.name, before=self.state, after=to)
        self.state = to
        self.gauge.labels(self.name).set(self.STATES[to])

    def retry_after(self) -> int:
        return max(1, math.ceil(self.opened_at + OPEN_FOR - time.monotonic()))

    def allow(self) -> tuple[bool, bool]:
        """(may call, is the probe)."""
        if self.state == "open" and time.monotonic() - self.opened_at >= OPEN_FOR:
            self.move("half_open")
        if self.state == "closed":
            return True, False
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True, True
        return False, False

    def record(self, ok: bool, probe: bool) -> None:
        now = time.monotonic()
        if probe:
            self.probing = False
            if self.state == "half_open":
                if ok:
                    self.outcomes = []
                    self.move("closed")
                else:
                    self.opened_at = now
                    self.move("open")
            return
        if self.state != "closed":
            return  # a call sent before the breaker opened: its answer changes nothing now
        self.outcomes = [(t, o) for t, o in self.outcomes if now - t < WINDOW] + [(now, ok)]
        failed = sum(1 for _t, o in self.outcomes if not o)
        if len(self.outcomes) >= MIN_CALLS and failed >= FAILURE_RATE * len(self.outcomes):
            self.opened_at = now
            self.move("open")


class Checkout:
    """One replica's checkout: its breaker on inventory, its retry budget, its metrics."""

    def __init__(self, app: FastAPI) -> None:
        registry = sandbox.metrics_registry(app)
        gauge = Gauge("circuit_breaker_state", "0 closed, 1 open, 2 half-open", ["dependency"], registry=registry)
        self.breaker = Breaker("inventory", gauge)
        self.retries = Counter("retries", "Calls sent again", ["dependency"], registry=registry)
        self.tokens = BUDGET_CAP

    def refuse(self, detail: str) -> JSONResponse:
        """503 with Retry-After: refused, nothing charged, come back when the breaker may have closed."""
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(self.breaker.retry_after())})

    async def reserve(self, http: sandbox.HttpClient, order: Order, until: float) -> bool:
        """Reserve the order's stock by ``until``: True if inventory said so."""
        body = {"order_id": order.order_id, "sku": order.sku, "qty": order.qty}
        for attempt in range(ATTEMPTS):
            if attempt:
                if self.tokens < 1.0:
                    return False  # the budget is spent: do not add to the storm
                self.tokens -= 1.0
                await sandbox.sleep(random.uniform(0, BASE * 2**attempt))
                self.retries.labels("inventory").inc()
            left = until - time.monotonic()
            if left <= 0.01:
                return False
            allowed, probe = self.breaker.allow()
            if not allowed:
                return False
            try:
                r = await http.post("http://inventory/reservations", json=body, timeout=min(INVENTORY_TIMEOUT, left))
                ok = r.status_code == 200
            except sandbox.RequestTimeout:
                ok = False
            self.breaker.record(ok, probe)
            if ok:
                return True
        return False

    async def charge(self, http: sandbox.HttpClient, order: Order, until: float) -> bool | None:
        """Charge the order by ``until``, the same charge on every attempt (its Idempotency-Key). True: charged;
        None: no answer in time (it may have gone through)."""
        body = {"order_id": order.order_id, "amount": order.amount}
        attempt = 0
        while (left := until - time.monotonic()) > 0.01:
            try:
                r = await http.post("http://payments/charges", json=body, timeout=min(CHARGE_TIMEOUT, left),
                                    headers={"Idempotency-Key": f"charge-{order.order_id}"})
                if r.status_code == 201:
                    return True
            except sandbox.RequestTimeout:
                pass
            attempt += 1
            self.retries.labels("payments").inc()
            await sandbox.sleep(random.uniform(0, min(BASE * 2**attempt, 0.4)))
        return None

    async def place(self, http: sandbox.HttpClient, order: Order) -> JSONResponse:
        """Reserve, charge, confirm, within the deadline."""
        start = time.monotonic()
        self.tokens = min(BUDGET_CAP, self.tokens + BUDGET_RATIO)
        if not await self.reserve(http, order, start + INVENTORY_SHARE):
            return self.refuse("inventory is unavailable: nothing was charged; try again later")
        if await self.charge(http, order, start + DEADLINE) is None:
            return JSONResponse({"order_id": order.order_id, "status": "pending"}, status_code=202)
        return JSONResponse({"order_id": order.order_id, "status": "confirmed"}, status_code=201)


def create_app() -> FastAPI:
    """The checkout service: reserve, charge, confirm; fail fast and honestly (see the module docstring)."""
    app = FastAPI(title="checkout")
    checkout = Checkout(app)

    @app.post("/orders", status_code=201)
    async def place_order(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> JSONResponse:
        return await checkout.place(http, order)

    return app
