"""Mutant (declared CP): a replica that cannot reach the leader serves from its own copy.

Correct while the network holds: everything goes through the leader and a majority. On
the minority side of a partition, though, a follower "stays available": it applies the
adjustment to its local copy and answers 200, and answers reads from that copy. The
leader never hears of those writes: acknowledged adjustments are lost, and reads on the
two sides disagree. It still claims CP.
"""


from __future__ import annotations

import anyio
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "CP"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
#: How long a follower waits for the leader, and the leader for a follower's acknowledgement (seconds).
FORWARD_TIMEOUT = 0.4
REPLICATION_TIMEOUT = 0.15


class Adjustment(BaseModel):
    """Add ``delta`` units to the stock (negative: remove them)."""

    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


class Replica(BaseModel):
    """The leader's committed-to-be value of a sku, numbered so that a late copy loses to a newer one."""

    sku: str
    stock: int
    seq: int


def cluster() -> tuple[str, ...]:
    """The replicas: the three of the world, or this machine alone in staging."""
    me = sandbox.hostname()
    return REPLICAS if me in REPLICAS else (me,)


def leader() -> str:
    return cluster()[0]


async def forward(http: sandbox.HttpClient, method: str, path: str, body: dict | None = None) -> JSONResponse | None:
    """Relay a request to the leader and its answer back; 503 if the leader cannot be reached."""
    try:
        r = await http.request(method, f"http://{leader()}{path}", json=body, timeout=FORWARD_TIMEOUT)
    except sandbox.RequestTimeout:
        return None  # the caller falls back to serving locally
    return JSONResponse(r.json(), status_code=r.status_code)


async def replicate(http: sandbox.HttpClient, peer: str, value: Replica) -> bool:
    try:
        r = await http.post(f"http://{peer}/replica", json=value.model_dump(), timeout=REPLICATION_TIMEOUT)
    except sandbox.RequestTimeout:
        return False
    return r.status_code == 200


def create_app() -> FastAPI:
    """One replica of the inventory service."""
    app = FastAPI(title="inventory")
    locks: dict[str, anyio.Lock] = {}

    @app.get("/stock/{sku}")
    async def get_stock(
        sku: str,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        if sandbox.hostname() != leader() and sandbox.hostname() in REPLICAS:
            relayed = await forward(http, "GET", f"/stock/{sku}")
            if relayed is not None:
                return relayed
        row = await disk.get("stock", sku, {"stock": 0, "seq": 0})
        return Stock(sku=sku, stock=row["stock"])

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(
        sku: str,
        adj: Adjustment,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        me = sandbox.hostname()
        if me != leader():
            relayed = await forward(http, "POST", f"/stock/{sku}/adjust", adj.model_dump())
            if relayed is not None:
                return relayed
            # The leader is unreachable: accept the write here rather than fail the client.
            async with disk.transaction() as tx:
                row = await tx.get("stock", sku, {"stock": 0, "seq": 0}, for_update=True)
                await tx.put("stock", sku, {"stock": row["stock"] + adj.delta, "seq": row["seq"]})
            return Stock(sku=sku, stock=row["stock"] + adj.delta)
        async with locks.setdefault(sku, anyio.Lock()):
            row = await disk.get("stock", sku, {"stock": 0, "seq": 0})
            value = Replica(sku=sku, stock=row["stock"] + adj.delta, seq=row["seq"] + 1)
            peers = [p for p in cluster() if p != me]
            acks = 1 + sum(await sandbox.gather(*(replicate(http, p, value) for p in peers)))
            if acks <= len(cluster()) // 2:
                raise HTTPException(503, f"only {acks} of {len(cluster())} replicas reachable: no majority, not applied")
            await disk.put("stock", sku, {"stock": value.stock, "seq": value.seq})
        return Stock(sku=sku, stock=value.stock)

    @app.post("/replica")
    async def store_replica(value: Replica, disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        async with disk.transaction() as tx:
            row = await tx.get("stock", value.sku, {"stock": 0, "seq": 0}, for_update=True)
            if value.seq > row["seq"]:
                await tx.put("stock", value.sku, {"stock": value.stock, "seq": value.seq})
        return {"stored": value.seq}

    return app
