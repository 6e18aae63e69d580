"""Mutant (declared AP): a correct PN-counter, but each adjustment is gossiped once.

Always answers, and the merge is right (entry-wise maximum, so a message duplicated or
reordered changes nothing). But a replica tells the others about an adjustment once, in
the background, right after answering; a message lost or cut off by a partition is never
sent again, so the replicas stay apart for ever. The step missed: resend (anti-entropy)
until every replica has it.
"""

from __future__ import annotations

import anyio
from fastapi import BackgroundTasks, Depends, FastAPI
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "AP"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
GOSSIP_TIMEOUT = 0.2

Counter = dict[str, list[int]]


class Adjustment(BaseModel):
    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


def peers() -> list[str]:
    me = sandbox.hostname()
    return [r for r in REPLICAS if r != me] if me in REPLICAS else []


def total(counter: Counter) -> int:
    return sum(p - n for p, n in counter.values())


async def tell_peers(http: sandbox.HttpClient, sku: str, counter: Counter) -> None:
    for peer in peers():
        try:
            await http.post(f"http://{peer}/gossip", json={sku: counter}, timeout=GOSSIP_TIMEOUT)
        except sandbox.RequestTimeout:
            pass  # lost: never sent again


def create_app() -> FastAPI:
    app = FastAPI(title="inventory")
    writing = anyio.Lock()  # one writer at a time on this replica's disk

    @app.get("/stock/{sku}")
    async def get_stock(sku: str, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        return Stock(sku=sku, stock=total(await disk.get("counters", sku, {})))

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(
        sku: str,
        adj: Adjustment,
        background: BackgroundTasks,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        me = sandbox.hostname()
        async with writing, disk.transaction() as tx:
            counter = await tx.get("counters", sku, {}, for_update=True)
            p, n = counter.get(me, [0, 0])
            counter[me] = [p + adj.delta, n] if adj.delta >= 0 else [p, n - adj.delta]
            await tx.put("counters", sku, counter)
        background.add_task(tell_peers, http, sku, {me: counter[me]})
        return Stock(sku=sku, stock=total(counter))

    @app.post("/gossip")
    async def receive_gossip(state: dict[str, Counter], disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        for sku, theirs in state.items():
            async with writing, disk.transaction() as tx:
                mine = await tx.get("counters", sku, {}, for_update=True)
                for replica, (p, n) in theirs.items():
                    old = mine.get(replica, [0, 0])
                    mine[replica] = [max(old[0], p), max(old[1], n)]
                await tx.put("counters", sku, mine)
        return {"merged": len(state)}

    return app
