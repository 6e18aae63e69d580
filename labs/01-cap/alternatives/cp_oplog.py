"""A correct fix, declared CP, unlike the reference: the leader replicates a log of operations.

Where the reference sends the followers the new stock of a sku, numbered, this one keeps what
Raft keeps: an append-only **log of adjustments**. Each adjustment is appended at the leader
with the next index; a shipper per follower (a loop started by the lifespan) pushes the log's
missing tail to its follower and learns how far the follower's log goes; the **commit index** is
the last entry a majority has (the leader and one follower), and committed entries are applied
to the stock. A request waits until its entry is committed (200, with the stock right after it),
or answers 504 when that takes too long: the entry stays in the log and may still be committed
later, so its outcome is unknown. The leader never answers 503 but while it recovers.

A replica that starts with an empty disk: the leader takes the longest log among *all* the
other replicas (every follower's log is a prefix of the leader's, and a committed entry is on
at least one of them), treats it as committed and serves again; a follower needs nothing, since
its shipper finds its log empty and sends it everything again.
"""

from __future__ import annotations

import contextlib

import anyio
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import sandbox

CAP_CHOICE = "CP"
PRIMARY = "inventory-0"

REPLICAS = ("inventory-0", "inventory-1", "inventory-2")
FORWARD_TIMEOUT = 0.4
#: How long a request waits for its entry to be committed; a shipper's wait for its follower.
COMMIT_TIMEOUT = 0.3
SHIP_TIMEOUT = 0.1
#: A shipper with nothing new still checks on its follower this often (seconds).
HEARTBEAT = 0.1


class Adjustment(BaseModel):
    """Add ``delta`` units to the stock (negative: remove them)."""

    delta: int


class Stock(BaseModel):
    sku: str
    stock: int


class Entry(BaseModel):
    """One adjustment in the log: its index, and the stock of its sku once it is applied."""

    index: int
    sku: str
    delta: int
    after: int


class Append(BaseModel):
    entries: list[Entry]


def me() -> str:
    return sandbox.hostname()


def cluster() -> tuple[str, ...]:
    return REPLICAS if me() in REPLICAS else (me(),)


def followers() -> list[str]:
    return [r for r in cluster() if r != PRIMARY] if me() in REPLICAS else []


def is_leader() -> bool:
    return me() == PRIMARY or me() not in REPLICAS


def key(index: int) -> str:
    return f"{index:09d}"


class Leader:
    """What the leader keeps in memory: how far each follower's log goes, and who is waiting."""

    def __init__(self) -> None:
        self.ready = False
        self.appending = anyio.Lock()
        self.match = {f: 0 for f in followers()}
        self.news = {f: anyio.Event() for f in followers()}
        self.committed = anyio.Event()

    def wake_shippers(self) -> None:
        for event in self.news.values():
            event.set()


async def read_log(disk: sandbox.Database, after: int = 0) -> list[Entry]:
    """The entries after index ``after``, in order."""
    entries = [Entry(**row.value) for row in await disk.scan("log") if row.value["index"] > after]
    return sorted(entries, key=lambda e: e.index)


async def advance_commit(leader: Leader, disk: sandbox.Database) -> None:
    """Commit every entry a majority has (this replica, and enough followers), applying it to the stock."""
    needed = len(cluster()) // 2  # followers, with the leader a majority
    async with leader.appending:
        last = await disk.get("meta", "last", 0)
        commit = await disk.get("meta", "commit", 0)
        counts = sorted(leader.match.values(), reverse=True)
        agreed = min(last, counts[needed - 1]) if needed else last
        if agreed <= commit:
            return
        async with disk.transaction() as tx:
            for entry in await read_log(disk, commit):
                if entry.index <= agreed:
                    await tx.put("stock", entry.sku, entry.after)
            await tx.put("meta", "commit", agreed)
    leader.committed.set()
    leader.committed = anyio.Event()


async def ship(app: FastAPI, leader: Leader, peer: str) -> None:
    """Keep ``peer``'s log up with the leader's: send what it lacks, learn how far it goes."""
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        with anyio.move_on_after(HEARTBEAT):
            await leader.news[peer].wait()
        leader.news[peer] = anyio.Event()
        if not leader.ready:
            continue
        entries = await read_log(disk, leader.match[peer])
        try:
            r = await http.post(f"http://{peer}/append", json={"entries": [e.model_dump() for e in entries]},
                                timeout=SHIP_TIMEOUT)
        except sandbox.RequestTimeout:
            continue
        if r.status_code != 200:
            continue
        theirs = r.json()["last"]
        if theirs < leader.match[peer] or (entries and theirs < entries[0].index - 1):
            leader.match[peer] = theirs  # it lost its disk, or lacks earlier entries: send from there
            leader.news[peer].set()
            continue
        leader.match[peer] = theirs
        await advance_commit(leader, disk)


async def recover(app: FastAPI, leader: Leader) -> None:
    """Before leading with an empty disk, take the longest log of all the other replicas, as committed."""
    disk = await sandbox.resolve(app, sandbox.disk)
    http = await sandbox.resolve(app, sandbox.http_client)
    if await disk.get("meta", "formatted", False):
        leader.ready = True
        return
    logs: dict[str, list[Entry]] = {}
    while len(logs) < len(followers()):
        for peer in [f for f in followers() if f not in logs]:
            try:
                r = await http.get(f"http://{peer}/log", timeout=SHIP_TIMEOUT)
            except sandbox.RequestTimeout:
                continue
            if r.status_code == 200:
                logs[peer] = [Entry(**e) for e in r.json()["entries"]]
        if len(logs) < len(followers()):
            await sandbox.sleep(HEARTBEAT)
    longest = max(logs.values(), key=len, default=[])
    async with leader.appending, disk.transaction() as tx:
        for entry in longest:
            await tx.put("log", key(entry.index), entry.model_dump())
            await tx.put("stock", entry.sku, entry.after)
            await tx.put("tail", entry.sku, entry.after)
        await tx.put("meta", "last", len(longest))
        await tx.put("meta", "commit", len(longest))
        await tx.put("meta", "formatted", True)
    leader.ready = True
    leader.wake_shippers()


def create_app() -> FastAPI:
    """One replica of the inventory service."""
    leader = Leader()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            if is_leader():
                tasks.start_soon(recover, app, leader)
                for peer in followers():
                    tasks.start_soon(ship, app, leader, peer)
            yield
            tasks.cancel_scope.cancel()

    app = FastAPI(title="inventory", lifespan=lifespan)
    storing = anyio.Lock()

    async def forward(http: sandbox.HttpClient, method: str, path: str, body: dict | None = None) -> JSONResponse:
        try:
            r = await http.request(method, f"http://{PRIMARY}{path}", json=body, timeout=FORWARD_TIMEOUT)
        except sandbox.RequestTimeout:
            raise HTTPException(504, "the leader did not answer in time: it may or may not have applied it") from None
        return JSONResponse(r.json(), status_code=r.status_code)

    @app.get("/stock/{sku}")
    async def get_stock(
        sku: str,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        if not is_leader():
            return await forward(http, "GET", f"/stock/{sku}")
        if not leader.ready:
            raise HTTPException(503, "the leader is recovering its log: try again soon")
        return Stock(sku=sku, stock=await disk.get("stock", sku, 0))

    @app.post("/stock/{sku}/adjust")
    async def adjust_stock(
        sku: str,
        adj: Adjustment,
        disk: sandbox.Database = Depends(sandbox.disk),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
    ) -> Stock:
        if not is_leader():
            return await forward(http, "POST", f"/stock/{sku}/adjust", adj.model_dump())
        if not leader.ready:
            raise HTTPException(503, "the leader is recovering its log: not applied, try again soon")
        async with leader.appending, disk.transaction() as tx:
            index = await tx.get("meta", "last", 0, for_update=True) + 1
            after = await tx.get("tail", sku, 0, for_update=True) + adj.delta
            entry = Entry(index=index, sku=sku, delta=adj.delta, after=after)
            await tx.put("log", key(index), entry.model_dump())
            await tx.put("tail", sku, after)
            await tx.put("meta", "last", index)
        if not followers():
            await advance_commit(leader, disk)
        leader.wake_shippers()
        with anyio.move_on_after(COMMIT_TIMEOUT):
            while await disk.get("meta", "commit", 0) < index:
                await leader.committed.wait()
        if await disk.get("meta", "commit", 0) < index:
            raise HTTPException(504, "not committed in time: a follower may have it, so it may still take effect")
        return Stock(sku=sku, stock=entry.after)

    @app.post("/append")
    async def append(msg: Append, disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        async with storing, disk.transaction() as tx:
            last = await tx.get("meta", "last", 0, for_update=True)
            for entry in msg.entries:
                if entry.index == last + 1:
                    await tx.put("log", key(entry.index), entry.model_dump())
                    last = entry.index
            await tx.put("meta", "last", last)
        return {"last": last}

    @app.get("/log")
    async def whole_log(disk: sandbox.Database = Depends(sandbox.disk)) -> dict:
        entries = sorted((row.value for row in await disk.scan("log")), key=lambda e: e["index"])
        return {"entries": entries}

    return app
