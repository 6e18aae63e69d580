"""Mutant (declared AP): last-writer-wins on the absolute stock, gossiped until delivered.

Always answers, and the anti-entropy loop retries, so the replicas do converge. But each
replica keeps the stock as an absolute value stamped with its clock; when both sides of a
partition adjusted the same sku, the merge keeps the newer value and throws away the
other side's adjustments: the replicas agree on a total that is wrong.
"""

from __future__ import annotations

import contextlib

import anyio
from fastapi import Depends, FastAPI
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "AP"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
GOSSIP_INTERVAL = 0.1
GOSSIP_TIMEOUT = 0.2


class Adjustment(BaseModel):
    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


def peers() -> list[str]:
    me = sandbox.hostname()
    return [r for r in REPLICAS if r != me] if me in REPLICAS else []


def newer(a: dict, b: dict) -> bool:
    """Is ``a`` written after ``b``? (timestamp, then replica name to break ties)"""
    return (a["ts"], a["by"]) > (b["ts"], b["by"])


async def gossip_loop(app: FastAPI) -> None:
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        await sandbox.sleep(GOSSIP_INTERVAL)
        state = {row.key: row.value for row in await disk.scan("stock")}
        for peer in peers() if state else ():
            try:
                await http.post(f"http://{peer}/gossip", json=state, timeout=GOSSIP_TIMEOUT)
            except sandbox.RequestTimeout:
                pass


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(gossip_loop, app)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="inventory", lifespan=lifespan)
    empty = {"stock": 0, "ts": 0.0, "by": ""}

    @app.get("/stock/{sku}")
    async def get_stock(sku: str, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        return Stock(sku=sku, stock=(await disk.get("stock", sku, empty))["stock"])

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(
        sku: str, adj: Adjustment, disk: sandbox.Database = Depends(sandbox.disk), clock=Depends(sandbox.clock)
    ) -> Stock:
        async with disk.transaction() as tx:
            row = await tx.get("stock", sku, empty, for_update=True)
            row = {"stock": row["stock"] + adj.delta, "ts": max(clock.time(), row["ts"]), "by": sandbox.hostname()}
            await tx.put("stock", sku, row)
        return Stock(sku=sku, stock=row["stock"])

    @app.post("/gossip")
    async def receive_gossip(state: dict[str, dict], disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        for sku, theirs in state.items():
            async with disk.transaction() as tx:
                mine = await tx.get("stock", sku, empty, for_update=True)
                if newer(theirs, mine):
                    await tx.put("stock", sku, theirs)
        return {"merged": len(state)}

    return app
