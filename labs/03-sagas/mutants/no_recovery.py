"""Mutant: compensates in reverse order and retries idempotently, but keeps the saga's state in memory.

Everything the reference solution does while its replica lives: steps retried with the
saga's id until a definite answer, a refusal compensated in reverse (refund, then release).
But the saga log is a dict in the replica's memory and there is no recovery: when the
orchestrator is killed between two steps, the restarted replica starts from an empty dict,
and the saga stays half done forever: stock held and money kept for an order nobody will
ship. Works without faults; caught by any Kill of the orchestrator mid-saga.
"""

from __future__ import annotations

import uuid

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

PRICES = {"lamp": 2_500, "kettle": 3_900, "teapot": 1_800, "desk": 14_900}
STEPS = ("reserve", "charge", "ship")
TIMEOUT = 0.5
BACKOFF = 0.05
MAX_BACKOFF = 0.4
REFUSALS = {"reserve": 409, "charge": 402, "ship": 422}


class OrderRequest(BaseModel):
    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    card: str = Field(min_length=12)
    address: str


def _call(saga: dict, step: str) -> tuple[str, str, dict | None]:
    oid = saga["id"]
    if step == "reserve":
        return "POST", "http://inventory/reservations", {"id": f"res-{oid}", "order_id": oid, "sku": saga["sku"],
                                                          "qty": saga["qty"]}
    if step == "charge":
        return "POST", "http://payments/charges", {"id": f"ch-{oid}", "order_id": oid, "amount": saga["amount"],
                                                    "card": saga["card"]}
    return "POST", "http://shipping/shipments", {"id": f"shp-{oid}", "order_id": oid, "sku": saga["sku"],
                                                  "qty": saga["qty"], "address": saga["address"]}


def _undo(saga: dict, step: str) -> tuple[str, str, dict | None]:
    if step == "charge":
        return "POST", "http://payments/refunds", {"charge_id": f"ch-{saga['id']}"}
    return "DELETE", f"http://inventory/reservations/res-{saga['id']}", None


async def _until_definite(http: sandbox.HttpClient, method: str, url: str, body: dict | None) -> tuple[bool, str]:
    delay = BACKOFF
    while True:
        try:
            r = await http.request(method, url, timeout=TIMEOUT, **({"json": body} if body is not None else {}))
        except sandbox.RequestTimeout:
            r = None
        if r is not None and r.status_code < 300:
            return True, ""
        if r is not None and 400 <= r.status_code < 500:
            return False, r.text
        await sandbox.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF)


def create_app() -> FastAPI:
    app = FastAPI(title="orders")
    sagas: dict[str, dict] = {}  # the saga log, in memory: gone when the replica dies

    @app.post("/orders", status_code=201)
    async def place_order(req: OrderRequest, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        if req.sku not in PRICES:
            raise HTTPException(404, f"unknown product {req.sku!r}")
        oid = f"ord-{uuid.uuid4().hex[:10]}"
        saga = sagas[oid] = {"id": oid, "sku": req.sku, "qty": req.qty, "amount": PRICES[req.sku] * req.qty,
                             "card": req.card, "address": req.address, "done": []}
        for step in STEPS:
            ok, why = await _until_definite(http, *_call(saga, step))
            if not ok:
                for done in reversed(saga["done"]):
                    if done != "ship":
                        await _until_definite(http, *_undo(saga, done))
                raise HTTPException(REFUSALS[step], f"order {oid} refused at {step}: {why}")
            saga["done"].append(step)
        return {"id": oid, "customer": req.customer, "sku": req.sku, "qty": req.qty, "amount": saga["amount"],
                "status": "confirmed"}

    return app
