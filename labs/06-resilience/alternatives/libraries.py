"""A correct fix built on maintained libraries: tenacity for the retries, purgatory for the breaker.

What a team would reach for instead of writing the patterns by hand, each used through its
documented API and running on the sandbox's virtual time:

* **tenacity** (``AsyncRetrying``) retries the reservation and the charge: full jitter
  (``wait_random_exponential``), at most ``ATTEMPTS`` attempts, no retry that would end after
  the deadline (``stop_before_delay``), and its sleep is ``sandbox.sleep`` (the ``sleep=``
  argument; its default would be ``asyncio.sleep``, which the sandbox refuses). tenacity reads
  ``time.monotonic`` and ``random.uniform``, which answer from the world inside a service.
* **A retry budget** (Finagle's RetryBudget) is one more tenacity ``retry`` strategy
  (``Budget``): no library in the course's stack keeps one.
* **purgatory** (``AsyncCircuitBreakerFactory``) is the breaker: it opens after ``THRESHOLD``
  consecutive failures and half-opens ``OPEN_FOR`` seconds later (it reads ``time.time``, the
  node's clock). Its half-open state lets every request through until one answers; resilience4j
  lets a set number through (``permittedNumberOfCallsInHalfOpenState``), and so does this checkout:
  one probe at a time, the others refused. Its listeners hear of a move only when the request that
  made it ends, so each move is read from the breaker's state around every call and reported then
  (``sandbox.event("breaker", ...)``, the ``circuit_breaker_state`` gauge).
* One deadline per order; a charge of unknown fate is 202 (pending), inventory unavailable is 503
  with ``Retry-After``.
"""

import time

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Gauge
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from pydantic import BaseModel, Field
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_all,
    retry_base,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

import sandbox

DEADLINE, INVENTORY_SHARE = 2.8, 1.4
INVENTORY_TIMEOUT, CHARGE_TIMEOUT = 0.25, 0.6
ATTEMPTS, BASE = 3, 0.05
BUDGET_RATIO, BUDGET_CAP = 0.1, 5.0
THRESHOLD, OPEN_FOR = 20, 1.0
#: purgatory's state names, and the gauge's (and the breaker events') names for them.
STATES = {"closed": ("closed", 0), "opened": ("open", 1), "half-opened": ("half_open", 2)}


class Order(BaseModel):
    order_id: str
    sku: str
    qty: int = Field(gt=0)
    amount: int = Field(gt=0)


class Failed(Exception):
    """The dependency answered, but not with what was asked for: worth another try."""


class Refused(Exception):
    """The breaker is open (or its probe is out): no call was sent."""


class Budget(retry_base):
    """A tenacity retry strategy that allows a retry only while the budget has a token: each order deposits
    BUDGET_RATIO, a retry spends one, at most BUDGET_CAP are saved."""

    def __init__(self) -> None:
        self.tokens = BUDGET_CAP

    def deposit(self) -> None:
        self.tokens = min(BUDGET_CAP, self.tokens + BUDGET_RATIO)

    def __call__(self, retry_state) -> bool:
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def create_app() -> FastAPI:
    """The checkout service: reserve, charge, confirm, with tenacity and purgatory (see the module docstring)."""
    app = FastAPI(title="checkout")
    registry = sandbox.metrics_registry(app)
    gauge = Gauge("circuit_breaker_state", "0 closed, 1 open, 2 half-open", ["dependency"], registry=registry)
    retries = Counter("retries", "Calls sent again", ["dependency"], registry=registry)
    gauge.labels("inventory").set(0)
    breakers = AsyncCircuitBreakerFactory(default_threshold=THRESHOLD, default_ttl=OPEN_FOR)
    budget = Budget()
    seen = {"state": "closed", "probing": False}

    def report(breaker) -> None:
        """Report the breaker's move, if it moved since the last report: purgatory tells its listeners when the
        request that moved it ends, but a move must be on record before the call it lets through."""
        after, code = STATES[breaker.context.state]
        if after != seen["state"]:
            sandbox.event("breaker", name="inventory", before=seen["state"], after=after)
            seen["state"] = after
            gauge.labels("inventory").set(code)

    async def reserve_once(http: sandbox.HttpClient, order: Order, until: float) -> None:
        left = until - time.monotonic()
        if left <= 0.01:
            raise Refused("no time left")
        breaker = await breakers.get_breaker("inventory")
        if breaker.context.state != "closed" and seen["probing"]:
            raise Refused("the breaker's probe is out")
        probe = False
        try:
            async with breaker:  # purgatory: OpenedState if open; half-opens once OPEN_FOR has passed
                report(breaker)
                probe = breaker.context.state == "half-opened"
                seen["probing"] = seen["probing"] or probe
                r = await http.post("http://inventory/reservations", timeout=min(INVENTORY_TIMEOUT, left),
                                    json={"order_id": order.order_id, "sku": order.sku, "qty": order.qty})
                if r.status_code != 200:
                    raise Failed(f"inventory answered {r.status_code}")
        except OpenedState as exc:
            raise Refused("the breaker is open") from exc
        finally:
            if probe:
                seen["probing"] = False
            report(breaker)

    async def charge_once(http: sandbox.HttpClient, order: Order, until: float) -> None:
        r = await http.post("http://payments/charges", json={"order_id": order.order_id, "amount": order.amount},
                            headers={"Idempotency-Key": f"charge-{order.order_id}"},
                            timeout=max(0.01, min(CHARGE_TIMEOUT, until - time.monotonic())))
        if r.status_code != 201:
            raise Failed(f"payments answered {r.status_code}")

    def count_retry(dependency: str):
        return lambda _state: retries.labels(dependency).inc()

    @app.post("/orders", status_code=201)
    async def place_order(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> JSONResponse:
        start = time.monotonic()
        budget.deposit()
        reserving = AsyncRetrying(
            sleep=sandbox.sleep, reraise=True, before_sleep=count_retry("inventory"),
            wait=wait_random_exponential(multiplier=BASE, max=0.4),
            stop=stop_after_attempt(ATTEMPTS) | stop_before_delay(INVENTORY_SHARE - INVENTORY_TIMEOUT),
            retry=retry_all(retry_if_exception_type((Failed, sandbox.RequestTimeout)), budget))
        try:
            await reserving(reserve_once, http, order, start + INVENTORY_SHARE)
        except (Failed, Refused, sandbox.RequestTimeout):
            return JSONResponse({"detail": "inventory is unavailable: nothing was charged; try again later"},
                                status_code=503, headers={"Retry-After": str(max(1, round(OPEN_FOR)))})
        charging = AsyncRetrying(
            sleep=sandbox.sleep, before_sleep=count_retry("payments"),
            wait=wait_random_exponential(multiplier=BASE, max=0.4),
            stop=stop_before_delay(DEADLINE - (time.monotonic() - start) - 0.01),
            retry=retry_if_exception_type((Failed, sandbox.RequestTimeout)))
        try:
            await charging(charge_once, http, order, start + DEADLINE)
        except RetryError:  # no answer in time: it may have gone through
            return JSONResponse({"order_id": order.order_id, "status": "pending"}, status_code=202)
        return JSONResponse({"order_id": order.order_id, "status": "confirmed"}, status_code=201)

    return app
