"""A correct fix, declared AP, unlike the reference: operations with ids, pushed until acknowledged.

Where the reference gossips its whole state (a PN-counter: two grow-only counters per replica,
merged by maximum), this one is **operation-based**: every adjustment gets an id no other has
(the replica that took it, and that replica's count of adjustments), and a replica keeps the
set of operations it knows. Adding an operation it already knows changes nothing, so a message
delivered twice or late counts once; operations commute, so their order does not matter.

Each replica answers from its own copy at once, and keeps an **outbox on disk** per other
replica: a sender loop (started by the lifespan) pushes the outbox, in batches, until the
other replica acknowledges them; a lost message or a partition only delays them.
"""

from __future__ import annotations

import contextlib

import anyio
from fastapi import Depends, FastAPI
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "AP"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
PUSH_INTERVAL = 0.05
PUSH_TIMEOUT = 0.2
BATCH = 50


class Adjustment(BaseModel):
    """Add ``delta`` units to the stock (negative: remove them)."""

    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


class Op(BaseModel):
    """One adjustment, named by the replica that took it and its number there."""

    origin: str
    n: int
    sku: str
    delta: int

    @property
    def id(self) -> str:
        return f"{self.origin}/{self.n:09d}"


def peers() -> list[str]:
    me = sandbox.hostname()
    return [r for r in REPLICAS if r != me] if me in REPLICAS else []


async def learn(tx: sandbox.Transaction, ops: list[dict]) -> int:
    """Add the operations not known yet to the known set and to the stock (in the caller's transaction);
    how many were new."""
    new = 0
    for raw in ops:
        op = Op(**raw)
        if await tx.get("ops", op.id, None, for_update=True) is not None:
            continue  # a duplicate, a resend, or one we took ourselves: already counted
        await tx.put("ops", op.id, raw)
        stock = await tx.get("stock", op.sku, 0, for_update=True)
        await tx.put("stock", op.sku, stock + op.delta)
        new += 1
    return new


async def push_loop(app: FastAPI, writing: anyio.Lock) -> None:
    """Every PUSH_INTERVAL seconds, send each peer the operations it has not acknowledged, oldest first."""
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        await sandbox.sleep(PUSH_INTERVAL)
        for peer in peers():
            pending = await disk.scan("outbox", prefix=f"{peer}|", limit=BATCH)
            if not pending:
                continue
            try:
                r = await http.post(f"http://{peer}/ops", json=[row.value for row in pending], timeout=PUSH_TIMEOUT)
            except sandbox.RequestTimeout:
                continue  # lost, cut off or slow: pushed again next round (the peer ignores what it knows)
            if r.status_code == 200:
                async with writing:
                    for row in pending:
                        await disk.delete("outbox", row.key)


def create_app() -> FastAPI:
    """One replica of the inventory service."""
    # One writer at a time on this replica's disk (a row lock does not cover a row not yet created).
    writing = anyio.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(push_loop, app, writing)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="inventory", lifespan=lifespan)

    @app.get("/stock/{sku}")
    async def get_stock(sku: str, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        return Stock(sku=sku, stock=await disk.get("stock", sku, 0))

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(sku: str, adj: Adjustment, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        me = sandbox.hostname()
        async with writing, disk.transaction() as tx:  # counted here and queued for the others, or neither
            n = await tx.get("meta", "taken", 0, for_update=True) + 1
            await tx.put("meta", "taken", n)
            op = Op(origin=me, n=n, sku=sku, delta=adj.delta)
            await learn(tx, [op.model_dump()])
            for peer in peers():
                await tx.put("outbox", f"{peer}|{op.id}", op.model_dump())
            stock = await tx.get("stock", sku, 0)
        return Stock(sku=sku, stock=stock)

    @app.post("/ops")
    async def receive_ops(ops: list[dict], disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        async with writing, disk.transaction() as tx:
            new = await learn(tx, ops)
        return {"new": new}

    return app
