"""A correct fix unlike the reference: requests only record orders; background workers drive every saga.

Where the reference drives each saga inside its request and keeps a recovery loop for the sagas whose
request died, this orchestrator has one way of driving a saga, for new and abandoned ones alike:

1. ``POST /orders`` writes the saga (``pending``) to orders-db and then only *waits*: it reads the saga
   back every 0.1 s and tells the customer what the record says: 201 once it is completed, the refusal
   once it is compensated, and 504 ("still being processed, ask ``GET /orders/{id}``") after 3.5 s,
   which is no lie either way.
2. Each replica runs workers (started by the lifespan, each saga as a task of its own in its task group)
   that pick up every saga that is ``pending``, or unfinished and untouched for ``STALE`` seconds, and
   drive it from its record. There is no claim and no version check: two workers driving one saga get
   the same answers from the participants (the ids are stable, the participants idempotent by them,
   and a refusal is remembered), so the worst a stale save can do is make a worker repeat a step.
3. A worker sends a step a few times in a row and, while the answer stays unknown, *leaves the saga
   as it is* for a later round instead of waiting on: the step stays in doubt, and in doubt a step is
   asked again (with the same id), never compensated.
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
REFUSALS = {"reserve": 409, "charge": 402, "ship": 422}
#: One call's timeout; how many attempts a worker makes in one round, and the pause between them.
TIMEOUT = 0.5
ATTEMPTS_PER_ROUND = 3
PAUSE = 0.1
#: How often workers look for sagas, and how long an unfinished saga must be untouched before any worker
#: (on any replica) picks it up again.
LOOK_EVERY = 0.1
STALE = 1.0
#: How long a request waits for its saga to end before answering 504, and how often it looks.
ANSWER_WITHIN = 3.5
POLL = 0.1


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


class NoAnswerYet(Exception):
    """A step's answer is still unknown after this round's attempts: try the saga again later."""


def _step(saga: dict, step: str) -> tuple[str, str, dict | None]:
    oid = saga["id"]
    if step == "reserve":
        return "POST", "http://inventory/reservations", {"id": f"res-{oid}", "order_id": oid, "sku": saga["sku"],
                                                          "qty": saga["qty"]}
    if step == "charge":
        return "POST", "http://payments/charges", {"id": f"ch-{oid}", "order_id": oid, "amount": saga["amount"],
                                                    "card": saga["card"]}
    return "POST", "http://shipping/shipments", {"id": f"shp-{oid}", "order_id": oid, "sku": saga["sku"],
                                                  "qty": saga["qty"], "address": saga["address"]}


def _compensation(saga: dict, step: str) -> tuple[str, str, dict | None] | None:
    """The compensation of ``step`` (None for ship: the last step has none)."""
    oid = saga["id"]
    if step == "charge":
        return "POST", "http://payments/refunds", {"charge_id": f"ch-{oid}"}
    if step == "reserve":
        return "DELETE", f"http://inventory/reservations/res-{oid}", None
    return None


async def _send(http: sandbox.HttpClient, call: tuple[str, str, dict | None]) -> tuple[bool, str]:
    """(True, "") if ``call`` was done, (False, why) if refused; NoAnswerYet if no definite answer came."""
    method, url, body = call
    for attempt in range(ATTEMPTS_PER_ROUND):
        if attempt:
            await sandbox.sleep(PAUSE * attempt)
        try:
            r = await http.request(method, url, timeout=TIMEOUT, **({"json": body} if body is not None else {}))
        except sandbox.RequestTimeout:
            continue
        if r.status_code < 300:
            return True, ""
        if r.status_code < 500:
            return False, r.text
    raise NoAnswerYet(url)


async def _touch(db: sandbox.Database, saga: dict) -> None:
    saga["touched"] = time.time()
    await db.put("sagas", saga["id"], saga)


async def advance(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> None:
    """Take ``saga`` as far as the answers allow: to its end, or until a step's answer stays unknown."""
    await _touch(db, saga)  # this worker is on it: others leave it alone for STALE seconds
    while saga["status"] in ("pending", "running"):
        step = next(s for s in STEPS if s not in saga["done"])
        ok, why = await _send(http, _step(saga, step))
        if ok:
            saga["done"].append(step)
            saga["status"] = "completed" if len(saga["done"]) == len(STEPS) else "running"
        else:
            saga["status"], saga["refused"] = "compensating", {"step": step, "detail": why}
        await _touch(db, saga)
    if saga["status"] == "compensating":
        for step in reversed(saga["done"]):
            undo = _compensation(saga, step)
            if undo is not None and step not in saga["undone"]:
                await _send(http, undo)  # a compensation is never refused: 2xx, or no answer yet
                saga["undone"].append(step)
                await _touch(db, saga)
        saga["status"] = "compensated"
        await _touch(db, saga)


async def workers(app: FastAPI, tasks: anyio.abc.TaskGroup) -> None:
    """Every ``LOOK_EVERY`` seconds, start a task for each saga that wants driving and that this replica
    is not driving already: pending ones at once, unfinished ones once untouched for ``STALE`` seconds."""
    db = await sandbox.resolve(app, sandbox.database("orders-db"))
    http = await sandbox.resolve(app, sandbox.http_client)
    driving: set[str] = set()

    async def work(saga: dict) -> None:
        try:
            await advance(saga, db, http)
        except (NoAnswerYet, sandbox.SimulatedFailure):
            pass  # in doubt, or orders-db out of reach: the saga waits for a later round, as it is
        finally:
            driving.discard(saga["id"])

    while True:
        try:
            for row in await db.scan("sagas"):
                saga = row.value
                if saga["id"] in driving or saga["status"] in ("completed", "compensated"):
                    continue
                if saga["status"] == "pending" or time.time() - saga["touched"] >= STALE:
                    driving.add(saga["id"])
                    tasks.start_soon(work, saga)
        except sandbox.SimulatedFailure:
            pass
        await sandbox.sleep(LOOK_EVERY)


def create_app() -> FastAPI:
    """The orders service: requests record sagas and wait; each replica's workers drive them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(workers, app, tasks)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="orders", lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def place_order(req: OrderRequest, db: sandbox.Database = Depends(sandbox.database("orders-db"))) -> Order:
        if req.sku not in PRICES:
            raise HTTPException(404, f"unknown product {req.sku!r}")
        oid = f"ord-{uuid.uuid4().hex[:10]}"
        saga = {"id": oid, "customer": req.customer, "sku": req.sku, "qty": req.qty,
                "amount": PRICES[req.sku] * req.qty, "card": req.card, "address": req.address,
                "status": "pending", "done": [], "undone": [], "refused": None, "touched": time.time()}
        await db.put("sagas", oid, saga)
        deadline = time.time() + ANSWER_WITHIN
        while time.time() < deadline:
            await sandbox.sleep(POLL)
            with contextlib.suppress(sandbox.SimulatedFailure):
                saga = await db.get("sagas", oid) or saga
            if saga["status"] == "completed":
                return Order(id=oid, customer=req.customer, sku=req.sku, qty=req.qty, amount=saga["amount"])
            if saga["status"] == "compensated":
                refused = saga["refused"]
                raise HTTPException(REFUSALS[refused["step"]],
                                    f"order {oid} refused at {refused['step']}: {refused['detail']}")
        raise HTTPException(504, f"order {oid} is still being processed; ask GET /orders/{oid}")

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, db: sandbox.Database = Depends(sandbox.database("orders-db"))) -> dict:
        saga = await db.get("sagas", order_id)
        if saga is None:
            raise HTTPException(404, f"no order {order_id!r}")
        return {k: saga[k] for k in ("id", "customer", "sku", "qty", "amount", "status")}

    return app
