"""Module 05's blackboard: one shop, its last lamps, and a burst of buyers, five ways.

Everything here is a small world run from a seed (``sandbox.World``), so the notebook
shows real runs, not canned numbers. A shop service ``POST /buy`` takes one unit of a
product's stock (409 when none is left); it runs as two replicas over one database, and
between reading the level and writing it, it prices the order (an ``await``: other requests
run meanwhile). ``STRATEGIES`` names its five versions:

* ``"naive"``: read, check, write (the check-then-act race);
* ``"transaction"``: the same inside a transaction, which at read committed locks nothing;
* ``"process lock"``: the naive code under an ``anyio.Lock`` (one per replica);
* ``"row lock"``: pessimistic, ``SELECT ... FOR UPDATE``, waits bounded, a few tries, then 503;
* ``"compare-and-set"``: optimistic, a conditional write on the row's version, retried a few times.

``burst`` runs N buyers at the same moment and counts what happened (sold, oversold, refused,
conflicts retried, lock waits, throughput); ``contention_figure`` and ``contention_widget``
draw optimistic against pessimistic as contention grows; ``transfers_run`` shows two transfers
in opposite directions deadlocking, and the lock order that prevents it.
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import anyio
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import sandbox

from . import html_table
from .idempotency import Picture, png

SEED = 5
SERVICE, DB = "shop", "shop-db"
#: How long the shop takes to price an order, between reading the stock and writing it (seconds).
PRICING = 0.004
#: How long a transaction waits for a row lock, and how many times the shop tries before answering 503.
LOCK_WAIT = 0.05
ATTEMPTS = 6


class Buy(BaseModel):
    """Buy one unit of ``sku``."""

    sku: str


async def price(sku: str) -> None:
    """Price the order (simulated: it takes PRICING seconds, and other requests run meanwhile)."""
    await sandbox.sleep(PRICING)


def _out_of_stock(sku: str, left: int) -> HTTPException:
    return HTTPException(409, f"no {sku} left ({left})")


def _busy() -> HTTPException:
    return HTTPException(503, "busy, try again shortly", headers={"Retry-After": "1"})


def create_app(strategy: str) -> Any:
    """The shop's app factory for ``strategy`` (one of STRATEGIES).

    Raises:
        sandbox.InvalidParameterError: an unknown strategy.
    """
    if strategy not in STRATEGIES:
        raise sandbox.InvalidParameterError(f"strategy={strategy!r}: choose one of {list(STRATEGIES)}")
    return STRATEGIES[strategy]


def _app(buy) -> FastAPI:
    app = FastAPI(title="shop")

    @app.post("/buy", status_code=201)
    async def endpoint(req: Buy, db: sandbox.Database = Depends(sandbox.database(DB))) -> dict:
        return await buy(db, req.sku)

    return app


async def _naive(db: sandbox.Database, sku: str) -> dict:
    stock = await db.get("stock", sku)  # 1. read
    if stock["qty"] < 1:  # 2. check
        raise _out_of_stock(sku, stock["qty"])
    await price(sku)
    await db.put("stock", sku, {"qty": stock["qty"] - 1})  # 3. write what was read, less one
    return {"sku": sku}


def create_naive_app() -> FastAPI:
    """Read, check, write: two buyers who read "1 left" both buy it."""
    return _app(_naive)


def create_transaction_app() -> FastAPI:
    """The naive code inside a transaction: at read committed, the read locks nothing."""

    async def buy(db: sandbox.Database, sku: str) -> dict:
        async with db.transaction() as tx:
            return await _naive(tx, sku)

    return _app(buy)


def create_process_lock_app() -> FastAPI:
    """The naive code under an ``anyio.Lock``: one lock per process, so one per replica."""
    lock = anyio.Lock()

    async def buy(db: sandbox.Database, sku: str) -> dict:
        async with lock:
            return await _naive(db, sku)

    return _app(buy)


def create_row_lock_app() -> FastAPI:
    """Pessimistic: ``SELECT ... FOR UPDATE`` makes the read and the write one step; waits bounded, then 503."""

    async def buy(db: sandbox.Database, sku: str) -> dict:
        for attempt in range(ATTEMPTS):
            try:
                async with db.transaction(lock_timeout=LOCK_WAIT) as tx:
                    stock = await tx.get("stock", sku, for_update=True)
                    if stock["qty"] < 1:
                        raise _out_of_stock(sku, stock["qty"])
                    await price(sku)
                    await tx.put("stock", sku, {"qty": stock["qty"] - 1})
                    return {"sku": sku, "attempts": attempt + 1}
            except (sandbox.LockTimeout, sandbox.TransactionAborted):
                sandbox.event("conflict", strategy="row lock")
                await sandbox.sleep(0.005 * 2**attempt * _random.uniform(0.5, 1.5))
        raise _busy()

    return _app(buy)


def create_cas_app() -> FastAPI:
    """Optimistic: read the row and its version, check, write only if the version is unchanged; else read again."""

    async def buy(db: sandbox.Database, sku: str) -> dict:
        for attempt in range(ATTEMPTS):
            row = await db.get_row("stock", sku)
            if row.value["qty"] < 1:
                raise _out_of_stock(sku, row.value["qty"])
            await price(sku)
            try:
                await db.put("stock", sku, {"qty": row.value["qty"] - 1}, if_version=row.version)
                return {"sku": sku, "attempts": attempt + 1}
            except sandbox.VersionConflict:
                sandbox.event("conflict", strategy="compare-and-set")  # someone wrote first: read again
        raise _busy()

    return _app(buy)


STRATEGIES = {
    "naive": create_naive_app,
    "transaction": create_transaction_app,
    "process lock": create_process_lock_app,
    "row lock": create_row_lock_app,
    "compare-and-set": create_cas_app,
}


# --- a burst of buyers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """What a burst of buyers did: the answers they got, what the database holds, and what it cost."""

    strategy: str
    buyers: int
    rows: int
    stock: int
    sold: int  # 201 answers
    refused: int  # 409: none left
    busy: int  # 503: gave up waiting
    left: int  # units left in stock, summed over the rows
    conflicts: int  # conflicts the service met and retried (a version changed, a lock wait ran out)
    lock_waits: int  # times a transaction waited for a row lock
    seconds: float  # from the first request to the last answer (virtual)

    @property
    def oversold(self) -> int:
        """Units sold beyond the stock there was: answers of 201 that no unit backed."""
        return max(0, self.sold - self.stock)

    @property
    def lost_updates(self) -> int:
        """Units sold that the stock does not show as gone: stock - left should be the units sold."""
        return self.sold - (self.stock - self.left)

    @property
    def throughput(self) -> float:
        """Sales per virtual second over the burst."""
        return self.sold / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.strategy}: {self.buyers} buyers, {self.stock} in stock -> {self.sold} sold, {self.refused} "
                f"refused, {self.busy} busy; {self.left} left in stock (lost updates: {self.lost_updates}, "
                f"oversold: {self.oversold}); {self.conflicts} conflicts retried, {self.lock_waits} lock waits; "
                f"{self.throughput:.0f} sales/s")


async def _buyer(client: sandbox.Client, sku: str, answers: list) -> None:
    await client.sleep(client.random.uniform(0.0, 0.002))  # all at the same moment, give or take a millisecond
    async with client.operation("buy", {"sku": sku}) as op:
        r = await client.http.post(f"http://{SERVICE}/buy", json={"sku": sku}, timeout=5.0)
        answers.append((r.status_code, client.now))
        op.answered(r)


@lru_cache(maxsize=256)
def burst(strategy: str, buyers: int, seed: int = SEED, *, rows: int = 1, stock: int | None = None,
          replicas: int = 2) -> Burst:
    """``buyers`` buyers at the same moment, spread over ``rows`` products (contention: buyers per row), against
    the shop of ``strategy`` (``replicas`` replicas). ``stock`` units per product (default: enough for every buyer).

    Example::

        print(burst("naive", 8, stock=3))   # more than 3 sold

    Raises:
        sandbox.InvalidParameterError: an unknown strategy, or a count below 1.
    """
    factory = create_app(strategy)
    for name, value in (("buyers", buyers), ("rows", rows), ("replicas", replicas)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise sandbox.InvalidParameterError(f"{name}={value!r}: use a whole number >= 1")
    per_row = stock if stock is not None else -(-buyers // rows)
    skus = [f"item-{i}" for i in range(rows)]
    world = sandbox.World(seed=seed)
    world.add_database(DB, lock_timeout=5.0)
    world.database(DB).load("stock", {sku: {"qty": per_row} for sku in skus})
    world.add_service(SERVICE, factory, replicas=replicas)
    answers: list[tuple[int, float]] = []
    for i in range(buyers):
        world.add_client(f"buyer-{i}", _buyer, skus[i % rows], answers)
    world.run(settle=1.0)
    statuses = [status for status, _ in answers]
    left = sum(world.database(DB).read("stock", sku)["qty"] for sku in skus)
    last = max((t for _, t in answers), default=0.0)
    return Burst(strategy, buyers, rows, per_row * rows, statuses.count(201), statuses.count(409),
                 statuses.count(503), left, sum(1 for e in world.events if e.kind == "conflict"),
                 sum(1 for e in world.recorder.log if e[1] == "db.lock_wait"), round(last, 6))


def oversold_table(buyers: int = 8, stock: int = 3, seed: int = SEED) -> str:
    """Each strategy against ``buyers`` buyers for ``stock`` units, one row: a table."""
    lines = [f"{buyers} buyers at once for {stock} lamps, two replicas (seed {seed})",
             f"{'strategy':16} {'sold':>5} {'refused':>8} {'left':>5} {'oversold':>9} {'lost updates':>13}"]
    for name in STRATEGIES:
        b = burst(name, buyers, seed, stock=stock)
        lines.append(f"{name:16} {b.sold:5} {b.refused:8} {b.left:5} {b.oversold:9} {b.lost_updates:13}")
    return "\n".join(lines)


# --- optimistic against pessimistic ---------------------------------------------------------------

CONTENDERS = ("row lock", "compare-and-set")
BUYERS = (1, 2, 4, 8, 16, 32)


def contention_figure(rows: int = 1, buyers: tuple[int, ...] = BUYERS, seed: int = SEED) -> Picture:
    """For the row lock and the compare-and-set shop, as more buyers arrive at once on ``rows`` products:
    throughput (sales per virtual second), the share of buyers turned away busy (503: the retries ran out),
    and the conflicts retried per sale (work done again)."""
    fig = Picture(figsize=(11.0, 3.4))
    speed, away, cost = fig.subplots(1, 3)
    for name, color in zip(CONTENDERS, ("#1f5fa8", "#d9822b")):
        runs = [burst(name, n, seed, rows=rows) for n in buyers]
        speed.plot(buyers, [r.throughput for r in runs], "o-", color=color, label=name)
        away.plot(buyers, [100 * r.busy / r.buyers for r in runs], "o-", color=color, label=name)
        cost.plot(buyers, [r.conflicts / max(r.sold, 1) for r in runs], "o-", color=color, label=name)
    titles = ("sales per second (virtual)", "buyers turned away busy (503), %", "conflicts retried per sale")
    for ax, title in zip((speed, away, cost), titles):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(buyers), [str(n) for n in buyers])
        ax.set_xlabel(f"buyers at once, on {rows} product{'s' if rows > 1 else ''}")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    speed.legend(fontsize=9, loc="lower right")
    fig.suptitle(f"Contention: pessimistic (row lock) against optimistic (compare-and-set), {ATTEMPTS} tries each, "
                 f"seed {seed}", fontsize=10)
    fig.tight_layout()
    return fig


@lru_cache(maxsize=64)
def _contention_png(rows: int, seed: int) -> bytes:
    return png(contention_figure(rows, seed=seed))


def contention_widget(seeds: tuple[int, ...] = (SEED, SEED + 1, SEED + 2)) -> Any:
    """Sliders for the number of products the buyers spread over (less contention) and the seed; the
    figure of ``contention_figure`` and a table of the runs behind it (each cached)."""
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    rows = widgets.SelectionSlider(options=[1, 2, 4, 8], value=1, description="products (hot rows)", style=style)
    seed = widgets.Dropdown(options=list(seeds), value=seeds[0], description="seed", style=style)
    image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="900px"))
    table = widgets.HTML()

    def redraw(_change: Any = None) -> None:
        image.value = _contention_png(rows.value, seed.value)
        table.value = html_table(["buyers", *CONTENDERS], [
            [str(n), *(f"{b.throughput:.0f}/s, {b.conflicts} conflicts{', ' + str(b.busy) + ' busy' if b.busy else ''}"
                       for b in (burst(name, n, seed.value, rows=rows.value) for name in CONTENDERS))]
            for n in BUYERS])

    rows.observe(redraw, "value")
    seed.observe(redraw, "value")
    redraw()
    return widgets.VBox([widgets.HBox([rows, seed]), image, table])


# --- deadlocks --------------------------------------------------------------------------------


#: The database's lock_timeout in ``transfers_run``: what breaks a deadlock nobody else breaks.
DEADLOCK_WAIT = 2.0


class Move(BaseModel):
    """Move one unit of stock from warehouse ``source`` to ``target``."""

    source: str
    target: str


def create_transfer_app(ordered: bool, lock_timeout: float | None = None) -> Any:
    """A transfer service that locks both rows (FOR UPDATE), in key order if ``ordered``, else source first."""

    def factory() -> FastAPI:
        app = FastAPI(title="shop")

        @app.post("/moves", status_code=201)
        async def move(m: Move, db: sandbox.Database = Depends(sandbox.database(DB))) -> dict:
            keys = sorted((m.source, m.target)) if ordered else [m.source, m.target]
            try:
                async with db.transaction(lock_timeout=lock_timeout) as tx:
                    rows = {}
                    for key in keys:
                        rows[key] = await tx.get("stock", key, for_update=True)
                        await price(key)  # some work between the two locks
                    await tx.put("stock", m.source, {"qty": rows[m.source]["qty"] - 1})
                    await tx.put("stock", m.target, {"qty": rows[m.target]["qty"] + 1})
            except (sandbox.LockTimeout, sandbox.TransactionAborted):
                raise _busy() from None
            return {"moved": 1}

        return app

    return factory


async def _mover(client: sandbox.Client, source: str, target: str, answers: list) -> None:
    async with client.operation("move", {"source": source, "target": target}) as op:
        r = await client.http.post(f"http://{SERVICE}/moves", json={"source": source, "target": target}, timeout=10.0)
        answers.append((client.name, r.status_code, round(client.now, 4)))
        op.answered(r)


def transfers_run(ordered: bool, seed: int = SEED) -> list[tuple[str, int, float]]:
    """Two transfers at the same moment, east -> west and west -> east, on a service whose database waits
    up to DEADLOCK_WAIT seconds for a lock. Returns (who, status, when answered) for each: in request order
    they deadlock until the lock timeout breaks it (one gets 503, the other goes through, both seconds
    later); in key order both finish at once."""
    world = sandbox.World(seed=seed)
    world.add_database(DB, lock_timeout=DEADLOCK_WAIT)
    world.database(DB).load("stock", {"east": {"qty": 5}, "west": {"qty": 5}})
    world.add_service(SERVICE, create_transfer_app(ordered), replicas=2)
    answers: list[tuple[str, int, float]] = []
    world.add_client("east-to-west", _mover, "east", "west", answers)
    world.add_client("west-to-east", _mover, "west", "east", answers)
    world.run(settle=1.0)
    return sorted(answers)
