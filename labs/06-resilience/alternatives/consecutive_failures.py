"""A correct fix unlike the reference: a breaker counting consecutive failures, and gRPC's retry throttling.

* The breaker (Polly's classic circuit breaker) opens after ``FAILURES_TO_OPEN``
  consecutive failed calls, stays open ``BREAK_FOR`` seconds, then lets one probe through.
* Retries are throttled as gRPC's ``retryThrottling`` does: a bucket of ``MAX_TOKENS``
  tokens, a failure takes one, a success gives back ``TOKEN_RATIO``; a retry is allowed only
  while the bucket is more than half full.
* Backoff is AWS's "decorrelated jitter": each wait is drawn between the base and three
  times the last wait, capped.
* One deadline per order, the calls' timeouts cut from it; a charge of unknown fate is 202.
"""

import random
import time

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from pydantic import BaseModel, Field

import sandbox

DEADLINE = 2.9
FAILURES_TO_OPEN = 20
BREAK_FOR = 1.5
MAX_TOKENS, TOKEN_RATIO = 10.0, 0.1
BASE, CAP = 0.03, 0.3


class Order(BaseModel):
    order_id: str
    sku: str
    qty: int = Field(gt=0)
    amount: int = Field(gt=0)


def create_app() -> FastAPI:
    app = FastAPI(title="checkout")
    gauge = Gauge("circuit_breaker_state", "0 closed, 1 open, 2 half-open", ["dependency"],
                  registry=sandbox.metrics_registry(app))
    state = {"breaker": "closed", "failures": 0, "until": 0.0, "probe": False, "tokens": MAX_TOKENS}
    codes = {"closed": 0, "open": 1, "half_open": 2}
    gauge.labels("inventory").set(0)

    def move(to: str) -> None:
        sandbox.event("breaker", name="inventory", before=state["breaker"], after=to)
        state["breaker"] = to
        gauge.labels("inventory").set(codes[to])

    def outcome(ok: bool, probe: bool) -> None:
        state["tokens"] = min(MAX_TOKENS, state["tokens"] + TOKEN_RATIO) if ok else max(0.0, state["tokens"] - 1)
        if probe:
            state["probe"] = False
            if ok:
                state["failures"] = 0
                move("closed")
            else:
                state["until"] = time.monotonic() + BREAK_FOR
                move("open")
        elif state["breaker"] == "closed":
            state["failures"] = 0 if ok else state["failures"] + 1
            if state["failures"] >= FAILURES_TO_OPEN:
                state["until"] = time.monotonic() + BREAK_FOR
                move("open")

    async def call_inventory(http: sandbox.HttpClient, order: Order, deadline: float) -> bool:
        wait = BASE
        for attempt in range(3):
            if attempt:
                if state["tokens"] <= MAX_TOKENS / 2:
                    return False
                wait = min(CAP, random.uniform(BASE, wait * 3))
                await sandbox.sleep(wait)
            if state["breaker"] == "open" and time.monotonic() >= state["until"]:
                move("half_open")
            probe = state["breaker"] == "half_open" and not state["probe"]
            if state["breaker"] == "open" or (state["breaker"] == "half_open" and not probe):
                return False
            state["probe"] = state["probe"] or probe
            left = min(deadline, time.monotonic() + 1.4) - time.monotonic()
            if left < 0.05:
                if probe:
                    state["probe"] = False
                return False
            try:
                r = await http.post("http://inventory/reservations", timeout=min(0.3, left),
                                    json={"order_id": order.order_id, "sku": order.sku, "qty": order.qty})
                ok = r.status_code == 200
            except sandbox.RequestTimeout:
                ok = False
            outcome(ok, probe)
            if ok:
                return True
        return False

    @app.post("/orders", status_code=201)
    async def place_order(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> JSONResponse:
        deadline = time.monotonic() + DEADLINE
        if not await call_inventory(http, order, deadline):
            return JSONResponse({"detail": "inventory unavailable, nothing charged"}, status_code=503,
                                headers={"Retry-After": "2"})
        while (left := deadline - time.monotonic()) > 0.02:
            try:
                r = await http.post("http://payments/charges", json={"order_id": order.order_id,
                                                                     "amount": order.amount},
                                    headers={"Idempotency-Key": order.order_id}, timeout=min(0.7, left))
                if r.status_code == 201:
                    return JSONResponse({"order_id": order.order_id, "status": "confirmed"}, status_code=201)
            except sandbox.RequestTimeout:
                pass
            await sandbox.sleep(random.uniform(0.02, 0.1))
        return JSONResponse({"order_id": order.order_id, "status": "pending"}, status_code=202)

    return app
