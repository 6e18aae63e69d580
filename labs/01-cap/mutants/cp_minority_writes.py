"""Mutant (declared CP): a replica that cannot reach the leader serves from its own copy.

Correct while the network holds: everything goes through the leader and a majority. On
the minority side of a partition, though, a follower "stays available": when the leader
does not answer, it applies the adjustment to its local copy and answers 200, and answers
reads from that copy. The leader never hears of those writes: acknowledged adjustments
are lost, and reads on the two sides disagree. It still claims CP. The step missed:
refuse rather than guess.
"""

from __future__ import annotations

import contextlib

import anyio
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "CP"
#: The replica that orders every request; the checks then expect answers where a majority *with it* is connected.
PRIMARY = "inventory-0"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
#: How long a follower waits for the leader, and the leader for a follower's acknowledgement (seconds).
FORWARD_TIMEOUT = 0.4
REPLICATION_TIMEOUT = 0.15
#: How long a recovering replica waits for another's state, and between two rounds of asking.
RECOVERY_TIMEOUT = 0.15
RECOVERY_PAUSE = 0.05


class Adjustment(BaseModel):
    """Add ``delta`` units to the stock (negative: remove them)."""

    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


class Proposal(BaseModel):
    """The stock the leader proposes for a sku, with a number no other proposal ever had."""

    sku: str
    stock: int
    seq: int


def cluster() -> tuple[str, ...]:
    """The replicas: the three of the world, or this machine alone in staging."""
    me = sandbox.hostname()
    return REPLICAS if me in REPLICAS else (me,)


def leader() -> str:
    return PRIMARY if PRIMARY in cluster() else cluster()[0]


def others() -> list[str]:
    return [r for r in cluster() if r != sandbox.hostname()]


async def forward(http: sandbox.HttpClient, method: str, path: str, body: dict | None = None) -> JSONResponse:
    """Relay a request to the leader and its answer back. No answer in time: 504, since the leader
    may have received it and applied it (only the leader can say "not applied": its 503 is relayed)."""
    try:
        r = await http.request(method, f"http://{leader()}{path}", json=body, timeout=FORWARD_TIMEOUT)
    except sandbox.RequestTimeout:
        raise HTTPException(504, f"no answer from the leader {leader()} in time: it may or may not have applied "
                                 f"it") from None
    return JSONResponse(r.json(), status_code=r.status_code)


async def replicate(http: sandbox.HttpClient, peer: str, proposal: Proposal) -> bool | None:
    """Send ``proposal`` to ``peer``: True if it stored it, False if it said it did not, None if no answer came."""
    try:
        r = await http.post(f"http://{peer}/replica", json=proposal.model_dump(), timeout=REPLICATION_TIMEOUT)
    except sandbox.RequestTimeout:
        return None
    return True if r.status_code == 200 else False if r.status_code == 503 else None


async def propose(http: sandbox.HttpClient, proposal: Proposal) -> str:
    """Send ``proposal`` to every follower at once: "stored" as soon as a majority holds it (this replica
    counts, once it commits), "refused" if every follower said no, "unknown" otherwise."""
    followers = others()
    needed = len(cluster()) // 2  # followers' acknowledgements: with this replica, a majority
    if needed == 0:
        return "stored"
    answers: list[bool | None] = []
    enough = anyio.Event()

    async def ask(peer: str) -> None:
        answers.append(await replicate(http, peer, proposal))
        if answers.count(True) >= needed or len(answers) == len(followers):
            enough.set()

    async with anyio.create_task_group() as tasks:
        for peer in followers:
            tasks.start_soon(ask, peer)
        await enough.wait()
        tasks.cancel_scope.cancel()  # a majority has it: the slower follower may still store it, or not
    if answers.count(True) >= needed:
        return "stored"
    return "refused" if answers.count(False) == len(followers) else "unknown"


async def recover(app: FastAPI, status: dict) -> None:
    """Make this replica's disk whole before it serves. A disk with the ``formatted`` mark survived a
    restart: nothing to do. An empty one (first start, or a lost disk) learns what the others hold:
    the leader from every other replica, a follower from the leader; the newest copy of each sku wins."""
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    if await disk.get("meta", "formatted", False):
        status["ready"] = True
        return
    sources = others() if sandbox.hostname() == leader() else [leader()]
    heard: dict[str, dict] = {}
    while len(heard) < len(sources):
        for peer in [p for p in sources if p not in heard]:
            try:
                r = await http.get(f"http://{peer}/replica", timeout=RECOVERY_TIMEOUT)
            except sandbox.RequestTimeout:
                continue
            if r.status_code == 200:
                heard[peer] = r.json()
        if len(heard) < len(sources):
            await sandbox.sleep(RECOVERY_PAUSE)
    async with status["storing"]:
        async with disk.transaction() as tx:
            numbers = await tx.get("meta", "proposals", 0, for_update=True)
            for state in heard.values():
                numbers = max(numbers, state["proposals"])
                for sku, theirs in state["rows"].items():
                    mine = await tx.get("stock", sku, {"stock": 0, "seq": 0}, for_update=True)
                    numbers = max(numbers, theirs["seq"])
                    if theirs["seq"] > mine["seq"]:
                        await tx.put("stock", sku, theirs)
            await tx.put("meta", "proposals", numbers)
            await tx.put("meta", "formatted", True)
    status["ready"] = True


def create_app() -> FastAPI:
    """One replica of the inventory service."""
    status: dict = {"ready": False, "storing": anyio.Lock()}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(recover, app, status)  # in the background: the replica answers the others meanwhile
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="inventory", lifespan=lifespan)
    locks: dict[str, anyio.Lock] = {}
    numbering = anyio.Lock()

    async def next_number(disk: sandbox.Database) -> int:
        """A proposal number never used before, persisted before it is used."""
        async with numbering, disk.transaction() as tx:
            n = await tx.get("meta", "proposals", 0, for_update=True) + 1
            await tx.put("meta", "proposals", n)
        return n

    def refuse_until_recovered() -> None:
        if not status["ready"]:
            raise HTTPException(503, "recovering a lost disk from the other replicas: not applied, try again soon")

    @app.get("/stock/{sku}")
    async def get_stock(
        sku: str,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        if sandbox.hostname() != leader():
            try:
                return await forward(http, "GET", f"/stock/{sku}")
            except HTTPException:
                pass  # the leader is unreachable: answer from the local copy rather than fail the client
        else:
            refuse_until_recovered()
        row = await disk.get("stock", sku, {"stock": 0, "seq": 0})
        return Stock(sku=sku, stock=row["stock"])

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(
        sku: str,
        adj: Adjustment,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        if sandbox.hostname() != leader():
            try:
                return await forward(http, "POST", f"/stock/{sku}/adjust", adj.model_dump())
            except HTTPException:
                # The leader is unreachable: accept the write here rather than fail the client.
                async with status["storing"], disk.transaction() as tx:
                    row = await tx.get("stock", sku, {"stock": 0, "seq": 0}, for_update=True)
                    await tx.put("stock", sku, {"stock": row["stock"] + adj.delta, "seq": row["seq"]})
                return Stock(sku=sku, stock=row["stock"] + adj.delta)
        refuse_until_recovered()
        async with locks.setdefault(sku, anyio.Lock()):
            row = await disk.get("stock", sku, {"stock": 0, "seq": 0})
            proposal = Proposal(sku=sku, stock=row["stock"] + adj.delta, seq=await next_number(disk))
            outcome = await propose(http, proposal)
            if outcome == "refused":
                raise HTTPException(503, "every other replica refused it: not applied anywhere")
            if outcome == "unknown":
                raise HTTPException(504, "no majority answered in time: a replica may have stored it, so it may "
                                         "or may not take effect")
            await disk.put("stock", sku, {"stock": proposal.stock, "seq": proposal.seq})
        return Stock(sku=sku, stock=proposal.stock)

    @app.post("/replica")
    async def store_replica(proposal: Proposal, disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        async with status["storing"], disk.transaction() as tx:
            row = await tx.get("stock", proposal.sku, {"stock": 0, "seq": 0}, for_update=True)
            if proposal.seq > row["seq"]:
                await tx.put("stock", proposal.sku, {"stock": proposal.stock, "seq": proposal.seq})
        return {"stored": proposal.seq}

    @app.get("/replica")
    async def replica_state(disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        """What this replica holds, for one that lost its disk (answered while recovering too)."""
        rows = {row.key: row.value for row in await disk.scan("stock")}
        return {"rows": rows, "proposals": await disk.get("meta", "proposals", 0)}

    return app
