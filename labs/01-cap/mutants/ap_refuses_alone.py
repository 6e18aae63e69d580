"""Mutant (declared AP): a PN-counter gossiped until delivered, but a replica alone refuses writes.

The merge is right and the gossip never gives up, so whatever is accepted converges. But a
replica that has not heard from any other replica for a moment refuses adjustments (503,
"cut off: not applied"), to be safe. Safe it is, and unavailable: on the minority side of
a partition (and after a restart, until the first gossip round) it answers 503 although it
is alive and the client reached it. An AP service answers every request it receives. The
step missed: answer locally, always.
"""

from __future__ import annotations

import contextlib
import time

import anyio
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "AP"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
GOSSIP_INTERVAL = 0.1
GOSSIP_TIMEOUT = 0.2

Counter = dict[str, list[int]]  # replica -> [added, removed]


class Adjustment(BaseModel):
    """Add ``delta`` units to the stock (negative: remove them)."""

    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


def peers() -> list[str]:
    me = sandbox.hostname()
    return [r for r in REPLICAS if r != me] if me in REPLICAS else []


def total(counter: Counter) -> int:
    return sum(p - n for p, n in counter.values())


def merge(mine: Counter, theirs: Counter) -> Counter:
    """The entry-wise maximum: commutative, associative, idempotent."""
    out = {r: list(v) for r, v in mine.items()}
    for replica, (p, n) in theirs.items():
        old = out.get(replica, [0, 0])
        out[replica] = [max(old[0], p), max(old[1], n)]
    return out


#: When this replica last heard from a peer (its clock, in seconds): kept in memory.
heard = {"at": 0.0}
#: How long without news from any peer before this replica refuses writes.
ALONE_AFTER = 0.3


async def gossip_loop(app: FastAPI) -> None:
    """Send the whole state to every peer every GOSSIP_INTERVAL seconds, for as long as the replica lives."""
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        await sandbox.sleep(GOSSIP_INTERVAL)
        if not peers():
            continue
        state = {row.key: row.value for row in await disk.scan("counters")}
        if not state:
            continue
        for peer in peers():
            try:
                await http.post(f"http://{peer}/gossip", json=state, timeout=GOSSIP_TIMEOUT)
                heard["at"] = time.monotonic()
            except sandbox.RequestTimeout:
                pass  # lost or cut off: the next round sends it again


def create_app() -> FastAPI:
    """One replica of the inventory service."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(gossip_loop, app)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="inventory", lifespan=lifespan)
    # One writer at a time on this replica's disk: a row lock does not cover a row not yet created,
    # so two transactions creating one sku's counter could each overwrite the other.
    writing = anyio.Lock()

    @app.get("/stock/{sku}")
    async def get_stock(sku: str, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        return Stock(sku=sku, stock=total(await disk.get("counters", sku, {})))

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(sku: str, adj: Adjustment, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        me = sandbox.hostname()
        if peers() and time.monotonic() - heard["at"] > ALONE_AFTER:
            # Cut off from every other replica: refuse rather than take a write nobody else has.
            raise HTTPException(503, "cut off from the other replicas: not applied, try another replica")
        async with writing, disk.transaction() as tx:
            counter = await tx.get("counters", sku, {}, for_update=True)
            p, n = counter.get(me, [0, 0])
            counter[me] = [p + adj.delta, n] if adj.delta >= 0 else [p, n - adj.delta]
            await tx.put("counters", sku, counter)
        return Stock(sku=sku, stock=total(counter))

    @app.post("/gossip")
    async def receive_gossip(state: dict[str, Counter], disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        heard["at"] = time.monotonic()
        for sku, theirs in state.items():
            async with writing, disk.transaction() as tx:
                mine = await tx.get("counters", sku, {}, for_update=True)
                merged = merge(mine, theirs)
                if merged != mine:
                    await tx.put("counters", sku, merged)
        return {"merged": len(state)}

    return app
