"""Mutant (declared AP): each adjustment is sent to the other replicas until they acknowledge it.

Always answers from the local copy, and nothing is lost: a replica keeps sending an
adjustment to each other replica, round after round, until that replica acknowledges it, so
after a partition heals every replica has heard of every adjustment. But what it sends is the
delta, and the receiver adds every delta it receives. A message duplicated by the network,
or one that arrived after the sender gave up waiting for the acknowledgement and sent it
again, is added twice, and the replicas converge on a wrong total, or never agree. The step
missed: a state that merges (a PN-counter), so that receiving something twice changes nothing.
"""

from __future__ import annotations

import contextlib
import uuid

import anyio
from fastapi import Depends, FastAPI
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "AP"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
RESEND_INTERVAL = 0.1
SEND_TIMEOUT = 0.2


class Adjustment(BaseModel):
    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


class Delta(BaseModel):
    sku: str
    delta: int


def peers() -> list[str]:
    me = sandbox.hostname()
    return [r for r in REPLICAS if r != me] if me in REPLICAS else []


async def resend_loop(app: FastAPI) -> None:
    """Every RESEND_INTERVAL seconds, send each peer the deltas it has not acknowledged yet."""
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        await sandbox.sleep(RESEND_INTERVAL)
        for row in await disk.scan("outbox"):
            peer = row.value["peer"]
            try:
                r = await http.post(f"http://{peer}/delta", json=row.value["delta"], timeout=SEND_TIMEOUT)
            except sandbox.RequestTimeout:
                continue  # lost or slow: sent again next round
            if r.status_code == 200:
                await disk.delete("outbox", row.key)


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(resend_loop, app)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="inventory", lifespan=lifespan)
    writing = anyio.Lock()  # one writer at a time on this replica's disk

    async def add(disk: sandbox.Database, sku: str, delta: int) -> int:
        async with writing, disk.transaction() as tx:
            stock = await tx.get("stock", sku, 0, for_update=True) + delta
            await tx.put("stock", sku, stock)
        return stock

    @app.get("/stock/{sku}")
    async def get_stock(sku: str, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        return Stock(sku=sku, stock=await disk.get("stock", sku, 0))

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(sku: str, adj: Adjustment, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        stock = await add(disk, sku, adj.delta)
        for peer in peers():  # to be sent until acknowledged (the outbox is on disk: a crash loses nothing)
            await disk.put("outbox", str(uuid.uuid4()), {"peer": peer, "delta": {"sku": sku, "delta": adj.delta}})
        return Stock(sku=sku, stock=stock)

    @app.post("/delta")
    async def receive_delta(msg: Delta, disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        await add(disk, msg.sku, msg.delta)
        return {"ok": True}

    return app
