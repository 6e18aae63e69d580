"""Mutant (declared CP): with other replicas to disagree with, refuse every write.

Consistency bought the cheap way. Alone (in staging) the replica serves as usual; in the
cluster, every adjustment is answered 503 ("not applied", and it is not) and every read
answers the stock that therefore never changes. No read is ever stale and no acknowledged
write is ever lost, because nothing is ever acknowledged. But a CP service gives up
availability only where no majority is reachable; this one gives it up everywhere, with
no fault at all. The step missed: a majority that is connected serves.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "CP"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")


class Adjustment(BaseModel):
    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


def create_app() -> FastAPI:
    app = FastAPI(title="inventory")

    @app.get("/stock/{sku}")
    async def get_stock(sku: str, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        return Stock(sku=sku, stock=await disk.get("stock", sku, 0))

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(sku: str, adj: Adjustment, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        if sandbox.hostname() in REPLICAS:
            raise HTTPException(503, "the other replicas might disagree: refused to stay consistent, not applied")
        async with disk.transaction() as tx:  # alone: nobody to disagree with
            stock = await tx.get("stock", sku, 0, for_update=True) + adj.delta
            await tx.put("stock", sku, stock)
        return Stock(sku=sku, stock=stock)

    return app
