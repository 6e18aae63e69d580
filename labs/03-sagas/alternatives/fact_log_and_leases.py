"""A correct fix unlike the reference: a log of facts, a lease kept alive while a saga waits, and a
supervisor that runs every saga it takes over as a task of its own.

Where the reference rewrites one record per saga after every step and takes a saga over when that
record has not changed for a second, this orchestrator:

1. **Writes facts, never state.** Each outcome is a row of its own in ``facts``, keyed
   ``<order>/<step>/<what>`` (``done``, ``refused``, ``undone``), written once and never changed;
   where a saga stands is read back from its facts. Two drivers of one saga can add the same fact
   twice, but neither can overwrite what the other learnt.
2. **Holds a lease on each saga it drives.** The saga's row in ``orders`` names its owner and when
   the owner's lease runs out; the driver renews it, with a version check, before every attempt of
   every call. A driver that is alive but waiting (a participant's replies lost for seconds) keeps its
   saga; a driver that is killed, paused or cut off from orders-db stops renewing, and another
   replica takes the saga over when the lease has run out. A driver that finds its lease taken stops:
   the saga is in other hands. It never gives a step up: it asks again, with the same id, until the
   answer is definite (2xx done, 4xx refused).
3. **Recovers with a supervisor**, started by the lifespan, that claims each saga whose lease ran out
   (a conditional write) and starts it as a task of its own in the lifespan's task group: one saga
   stuck behind a lost link does not hold up the others.

The customer hears 201 only for a completed saga, the refusal for a compensated one, and 503 ("still
being processed") if the saga passed to another replica while the request waited.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid

import anyio
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox

PRICES = {"lamp": 2_500, "kettle": 3_900, "teapot": 1_800, "desk": 14_900}
STEPS = ("reserve", "charge", "ship")
#: The steps that have a compensation, in the order they are undone.
UNDO_ORDER = ("charge", "reserve")
REFUSALS = {"reserve": 409, "charge": 402, "ship": 422}
#: One call's timeout, and the backoff between attempts (full jitter, doubling up to the cap).
TIMEOUT = 0.4
BACKOFF = 0.05
MAX_BACKOFF = 0.5
#: How long a lease lasts without renewal, and how often the supervisor looks for expired ones.
LEASE = 2.0
SUPERVISE_EVERY = 0.25


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


class LeaseLost(Exception):
    """Another replica holds this saga now: stop driving it."""


class Lease:
    """This replica's hold on one saga's row in ``orders``: ``renew()`` before each attempt."""

    def __init__(self, db: sandbox.Database, order: dict, version: int, owner: str) -> None:
        self.db, self.order, self.version, self.owner = db, order, version, owner

    async def renew(self) -> None:
        self.order["lease_until"] = time.time() + LEASE
        try:
            self.version = await self.db.put("orders", self.order["id"], self.order, if_version=self.version)
        except sandbox.VersionConflict:
            raise LeaseLost(self.order["id"]) from None
        except sandbox.SimulatedFailure:
            pass  # orders-db out of reach: go on; the lease may run out, and then whoever holds it drives too

    async def finish(self, end: dict) -> None:
        """Write the saga's end into its row (kept whoever holds the lease: the end is a fact)."""
        while True:
            row = await self.db.get_row("orders", self.order["id"])
            value = row.value if row is not None else dict(self.order)
            value["end"] = end
            try:
                await self.db.put("orders", self.order["id"], value, if_version=row.version if row else None)
                return
            except sandbox.VersionConflict:
                continue


def _request(order: dict, step: str, undo: bool = False) -> tuple[str, str, dict | None]:
    oid = order["id"]
    if undo:
        if step == "charge":
            return "POST", "http://payments/refunds", {"charge_id": f"ch-{oid}"}
        return "DELETE", f"http://inventory/reservations/res-{oid}", None
    if step == "reserve":
        return "POST", "http://inventory/reservations", {"id": f"res-{oid}", "order_id": oid, "sku": order["sku"],
                                                          "qty": order["qty"]}
    if step == "charge":
        return "POST", "http://payments/charges", {"id": f"ch-{oid}", "order_id": oid, "amount": order["amount"],
                                                    "card": order["card"]}
    return "POST", "http://shipping/shipments", {"id": f"shp-{oid}", "order_id": oid, "sku": order["sku"],
                                                  "qty": order["qty"], "address": order["address"]}


async def _ask(http: sandbox.HttpClient, lease: Lease, call: tuple[str, str, dict | None]) -> tuple[bool, str]:
    """Send ``call`` until its answer is definite: (True, "") for 2xx, (False, body) for a 4xx refusal.
    A timeout or a 5xx is no answer: wait (jittered backoff) and send the same request again."""
    method, url, body = call
    delay = BACKOFF
    while True:
        await lease.renew()
        try:
            r = await http.request(method, url, timeout=TIMEOUT, **({"json": body} if body is not None else {}))
        except sandbox.RequestTimeout:
            r = None
        if r is not None and r.status_code < 300:
            return True, ""
        if r is not None and 400 <= r.status_code < 500:
            return False, r.text
        await sandbox.sleep(random.uniform(0, delay))
        delay = min(delay * 2, MAX_BACKOFF)


async def _facts(db: sandbox.Database, oid: str) -> dict[str, dict]:
    """The saga's facts: ``{"<step>/<what>": value}``."""
    return {row.key.split("/", 1)[1]: row.value for row in await db.scan("facts", prefix=f"{oid}/")}


async def _fact(db: sandbox.Database, oid: str, step: str, what: str, value: dict | None = None) -> None:
    await db.put("facts", f"{oid}/{step}/{what}", value or {})


async def run_saga(lease: Lease, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
    """Drive the saga of ``lease.order`` from its facts to its end; return the end
    (``{"status": "completed"}`` or ``{"status": "compensated", "step": ..., "detail": ...}``)."""
    order, oid = lease.order, lease.order["id"]
    facts = await _facts(db, oid)
    refused = next(({"step": s, **facts[f"{s}/refused"]} for s in STEPS if f"{s}/refused" in facts), None)
    if refused is None:
        for step in STEPS:
            if f"{step}/done" in facts:
                continue
            ok, why = await _ask(http, lease, _request(order, step))
            if not ok:
                refused = {"step": step, "detail": why}
                await _fact(db, oid, step, "refused", {"detail": why})
                break
            await _fact(db, oid, step, "done")
            facts[f"{step}/done"] = {}
    if refused is None:
        end = {"status": "completed"}
    else:
        for step in UNDO_ORDER:
            if f"{step}/done" in facts and f"{step}/undone" not in facts:
                await _ask(http, lease, _request(order, step, undo=True))
                await _fact(db, oid, step, "undone")
        end = {"status": "compensated", **refused}
    await lease.finish(end)
    return end


async def supervise(app: FastAPI, tasks: anyio.abc.TaskGroup, owner: str) -> None:
    """Every ``SUPERVISE_EVERY`` seconds, claim each unfinished saga whose lease ran out and start it as a
    task of its own."""
    db = await sandbox.resolve(app, sandbox.database("orders-db"))
    http = await sandbox.resolve(app, sandbox.http_client)
    mine: set[str] = set()

    async def recover(lease: Lease) -> None:
        try:
            await run_saga(lease, db, http)
        except (LeaseLost, sandbox.SimulatedFailure):
            pass  # taken over, or orders-db out of reach: the lease runs out and the saga is claimed again
        finally:
            mine.discard(lease.order["id"])

    while True:
        try:
            for row in await db.scan("orders"):
                order = row.value
                if order.get("end") or order["id"] in mine or time.time() < order["lease_until"]:
                    continue
                order["owner"], order["lease_until"] = owner, time.time() + LEASE
                try:
                    version = await db.put("orders", order["id"], order, if_version=row.version)
                except sandbox.VersionConflict:
                    continue  # another replica claimed it first
                mine.add(order["id"])
                tasks.start_soon(recover, Lease(db, order, version, owner))
        except sandbox.SimulatedFailure:
            pass  # orders-db out of reach: look again next round
        await sandbox.sleep(SUPERVISE_EVERY)


def create_app() -> FastAPI:
    """The orders service: each order a saga with a log of facts and a lease, recovered by a supervisor."""
    owner = f"orders-{uuid.uuid4().hex[:8]}"  # this replica, this incarnation

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(supervise, app, tasks, owner)
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
        oid = f"ord-{uuid.uuid4().hex[:10]}"
        order = {"id": oid, "customer": req.customer, "sku": req.sku, "qty": req.qty,
                 "amount": PRICES[req.sku] * req.qty, "card": req.card, "address": req.address,
                 "owner": owner, "lease_until": time.time() + LEASE, "end": None}
        version = await db.insert("orders", oid, order)  # the saga exists (and is leased) before its first step
        try:
            end = await run_saga(Lease(db, order, version, owner), db, http)
        except LeaseLost:
            raise HTTPException(503, f"order {oid} is still being processed; ask GET /orders/{oid}") from None
        if end["status"] != "completed":
            raise HTTPException(REFUSALS[end["step"]], f"order {oid} refused at {end['step']}: {end['detail']}")
        return Order(id=oid, customer=req.customer, sku=req.sku, qty=req.qty, amount=order["amount"])

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, db: sandbox.Database = Depends(sandbox.database("orders-db"))) -> dict:
        order = await db.get("orders", order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id!r}")
        status = (order["end"] or {}).get("status", "in progress")
        return {k: order[k] for k in ("id", "customer", "sku", "qty", "amount")} | {"status": status}

    return app
