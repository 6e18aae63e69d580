"""The reference solution: an orchestrated saga that survives its orchestrator.

Four changes to the generated code:

1. **The saga's state lives in orders-db**, written before and after every step
   (``sagas/{order_id}``: the order, the steps done, the status). A replica that
   dies mid-saga loses nothing another replica cannot read.
2. **Every step is retried with the saga's id as its idempotency key** (``res-``,
   ``ch-``, ``shp-`` + the order id) until the participant gives a definite answer:
   201 (done) or a 4xx refusal. A timeout or a 5xx says nothing about whether the
   step happened; asking again with the same id does, and cannot do it twice.
3. **A refused step compensates what was done, in reverse order**: refund the
   charge, then release the stock (each retried until acknowledged, also by id).
4. **Recovery**: each replica runs a loop (started by the app's lifespan) that
   finds sagas left unfinished (no progress for ``STALE`` seconds, their driver
   dead or cut off) and drives them to the end, finishing or compensating. Two
   drivers on one saga are safe: the participants give both the same answers.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import anyio
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

PRICES = {"lamp": 2_500, "kettle": 3_900, "teapot": 1_800, "desk": 14_900}
STEPS = ("reserve", "charge", "ship")
#: Compensations undo the steps last first: refund, then release (shipping is the last step: nothing undoes it).
COMPENSATION_ORDER = ("charge", "reserve")
#: How long to wait for one call, and the backoff between retries (doubling, capped).
TIMEOUT = 0.5
BACKOFF = 0.05
MAX_BACKOFF = 0.4
#: How often the recovery loop looks, and how long a saga may go without progress before it is taken over.
RECOVERY_INTERVAL = 0.3
STALE = 1.0
#: What a refusal of each step tells the customer.
REFUSALS = {"reserve": 409, "charge": 402, "ship": 422}


class OrderRequest(BaseModel):
    """What a customer sends to place an order."""

    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    card: str = Field(min_length=12)
    address: str


class Order(BaseModel):
    """A placed order."""

    id: str
    customer: str
    sku: str
    qty: int
    amount: int  # cents
    status: str = "confirmed"


# --- the saga ------------------------------------------------------------------------------


def _call(saga: dict, step: str) -> tuple[str, str, dict | None]:
    """(method, url, body) of ``step`` of ``saga``; ids derive from the saga's id, so retries are safe."""
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
    oid = saga["id"]
    if step == "charge":
        return "POST", "http://payments/refunds", {"charge_id": f"ch-{oid}"}
    return "DELETE", f"http://inventory/reservations/res-{oid}", None


async def _until_definite(http: sandbox.HttpClient, method: str, url: str, body: dict | None) -> tuple[bool, str]:
    """Send the request until the answer is definite: (True, "") on 2xx, (False, why) on a 4xx refusal."""
    delay = BACKOFF
    while True:
        try:
            kwargs = {"json": body} if body is not None else {}
            r = await http.request(method, url, timeout=TIMEOUT, **kwargs)
        except sandbox.RequestTimeout:
            r = None  # done or not? Only asking again (same id) can tell
        if r is not None and r.status_code < 300:
            return True, ""
        if r is not None and 400 <= r.status_code < 500:
            return False, r.text
        await sandbox.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF)


async def _save(db: sandbox.Database, saga: dict) -> None:
    saga["updated"] = time.time()
    await db.put("sagas", saga["id"], saga)


async def drive(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
    """Take ``saga`` from wherever it stands to completed or compensated; return it."""
    if saga["status"] == "running":
        for step in STEPS:
            if step in saga["done"]:
                continue
            ok, why = await _until_definite(http, *_call(saga, step))
            if ok:
                saga["done"].append(step)
            else:
                saga["status"], saga["refused"] = "compensating", {"step": step, "detail": why}
            await _save(db, saga)
            if not ok:
                break
        else:
            saga["status"] = "completed"
            await _save(db, saga)
    if saga["status"] == "compensating":
        for step in COMPENSATION_ORDER:
            if step in saga["done"] and step not in saga["undone"]:
                await _until_definite(http, *_undo(saga, step))
                saga["undone"].append(step)
                await _save(db, saga)
        saga["status"] = "compensated"
        await _save(db, saga)
    return saga


async def recover(db: sandbox.Database, http: sandbox.HttpClient) -> None:
    """Drive every saga that made no progress for ``STALE`` seconds (its driver died) to its end."""
    for row in await db.scan("sagas"):
        saga = row.value
        if saga["status"] not in ("running", "compensating") or time.time() - saga["updated"] < STALE:
            continue
        saga["updated"] = time.time()
        try:  # claim it; if another replica just did, leave it to that one
            await db.put("sagas", saga["id"], saga, if_version=row.version)
        except sandbox.VersionConflict:
            continue
        await drive(saga, db, http)


async def recovery_loop(app: FastAPI) -> None:
    """Run ``recover`` every ``RECOVERY_INTERVAL`` seconds, for as long as the replica lives."""
    db = await sandbox.resolve(app, sandbox.database("orders-db"))
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        try:
            await recover(db, http)
        except sandbox.SimulatedFailure:
            pass  # orders-db unreachable for now: try again next round
        await sandbox.sleep(RECOVERY_INTERVAL)


# --- the service ---------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The orders service: places an order as a saga across inventory, payments and shipping."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(recovery_loop, app)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="orders", lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def place_order(
        req: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Order:
        if req.sku not in PRICES:
            raise HTTPException(404, f"unknown product {req.sku!r}")
        order_id = f"ord-{uuid.uuid4().hex[:10]}"
        saga = {
            "id": order_id, "customer": req.customer, "sku": req.sku, "qty": req.qty,
            "amount": PRICES[req.sku] * req.qty, "card": req.card, "address": req.address,
            "status": "running", "done": [], "undone": [], "refused": None,
        }
        await _save(db, saga)  # persisted before the first step: recovery can see it from now on
        saga = await drive(saga, db, http)
        if saga["status"] != "completed":
            refused = saga["refused"]
            raise HTTPException(REFUSALS[refused["step"]], f"order {order_id} refused at {refused['step']}: "
                                                           f"{refused['detail']}")
        return Order(id=order_id, customer=req.customer, sku=req.sku, qty=req.qty, amount=saga["amount"])

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, db: sandbox.Database = Depends(sandbox.database("orders-db"))) -> dict:
        saga = await db.get("sagas", order_id)
        if saga is None:
            raise HTTPException(404, f"no order {order_id!r}")
        return {k: saga[k] for k in ("id", "customer", "sku", "qty", "amount", "status")}

    return app
