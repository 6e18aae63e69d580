"""The prompt given to the assistant:

    "a highly available, strongly consistent inventory service with 3 replicas:
    GET /stock/{sku}, POST /stock/{sku}/adjust"

What came back is below: clean, commented, and correct on the happy path. Each replica
keeps the stock on its own disk, applies an adjustment locally, answers at once, and
tells the other replicas about it in the background. Reads are served from the local
copy, so they are fast and never fail. It declares itself strongly consistent.
"""

from fastapi import BackgroundTasks, Depends, FastAPI
from pydantic import BaseModel

import sandbox

# --- FIX REGION 1: declare what the service keeps when the network splits: "CP" or "AP" ---
#: Strongly consistent: every replica has the same data (see the docstring).
CAP_CHOICE = "CP"
# --- END FIX REGION 1 ---

#: The cluster: three replicas, each reachable by its node name.
REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
#: How long to wait for a peer to acknowledge a replicated write (seconds).
REPLICATION_TIMEOUT = 0.2


class Adjustment(BaseModel):
    """Add ``delta`` units to the stock (negative: remove them)."""

    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


class Replicated(BaseModel):
    """An adjustment another replica applied, sent to us so that we apply it too."""

    sku: str
    delta: int


def peers() -> list[str]:
    """The other replicas of the cluster (none when running alone, as in staging)."""
    me = sandbox.hostname()
    return [r for r in REPLICAS if r != me] if me in REPLICAS else []


# --- FIX REGION 2: how a replica stores an adjustment and passes it on (CP: through a majority; AP: a state
# --- that merges without losing or double-counting, resent until every replica has it) ---
async def apply(disk: sandbox.Database, sku: str, delta: int) -> int:
    """Add ``delta`` to the local stock of ``sku``, atomically; the new stock."""
    async with disk.transaction() as tx:
        stock = await tx.get("stock", sku, 0, for_update=True)
        await tx.put("stock", sku, stock + delta)
    return stock + delta


async def replicate(http: sandbox.HttpClient, sku: str, delta: int) -> None:
    """Send the adjustment to every other replica (best effort: they are usually up)."""
    for peer in peers():
        try:
            await http.post(f"http://{peer}/replicate", json={"sku": sku, "delta": delta}, timeout=REPLICATION_TIMEOUT)
        except Exception:
            pass  # the peer is down or slow: it will catch up
# --- END FIX REGION 2 ---


def create_app() -> FastAPI:
    """One replica of the inventory service."""
    app = FastAPI(title="inventory")

    # --- FIX REGION 3: when a replica answers, and with what (CP: refuse rather than answer without a
    # --- majority: 503 if applied nowhere, 504 if unknown; AP: always answer from the local copy) ---
    @app.get("/stock/{sku}")
    async def get_stock(sku: str, disk: sandbox.Database = Depends(sandbox.disk)) -> Stock:
        # Served from the local copy: fast, and available even if the other replicas are down.
        return Stock(sku=sku, stock=await disk.get("stock", sku, 0))

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(
        sku: str,
        adj: Adjustment,
        background: BackgroundTasks,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        stock = await apply(disk, sku, adj.delta)
        # Replicate asynchronously so that the client does not wait for the other replicas.
        background.add_task(replicate, http, sku, adj.delta)
        return Stock(sku=sku, stock=stock)

    @app.post("/replicate")
    async def receive_replica(msg: Replicated, disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        await apply(disk, msg.sku, msg.delta)
        return {"ok": True}
    # --- END FIX REGION 3 ---

    return app
