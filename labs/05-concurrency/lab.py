"""Lab 05, races and locks: inventory across three warehouses under a burst of concurrent orders.

The learner's ``inventory`` service (two replicas, one database ``inventory-db``) takes
stock for orders (``POST /orders``, after the ``fraud`` service approves each) and moves
stock between warehouses for the rebalancing job (``POST /transfers``). The generated
code reads the stock, checks it and writes it back: two orders that read "1 left" both
take it. Everything else is here and is not edited:

* ``build_world(seed, create_app, **workload)``: the datacenter, not yet run: customers
  ordering in a burst (most of them the same hot product), two rebalancers moving stock in
  opposite directions at the same moments, and a stock-take that locks one warehouse's
  rows for STOCKTAKE seconds while it counts the shelves;
* ``scenario(create_app)``: it as a ``sandbox.explore.Scenario``;
* ``schedules(seed)`` and ``ADVERSARIAL``: the lab's nemesis and hand-written schedules;
* ``invariants()``: stock never negative, stock conserved, every confirmed order backed by
  stock, no deadlock left unresolved (every request answered within the client's patience);
* ``happy_path(create_app)``: the "works in staging" test (FastAPI's TestClient);
* ``check(create_app, bank)``: the self-checks (``"visible"``) and the grading (``"hidden"``);
* ``production(create_app)``: the notebook's "Production" run (the burst, no fault at all);
* ``mutants()`` and ``alternatives()``: the partial fixes that must fail, the correct fixes
  written unlike the reference that must pass.

Example::

    generated = lab.load("generated")
    lab.happy_path(generated.create_app)     # passes
    print(lab.check(generated.create_app))   # Counterexample: lamp@east went to qty -1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import sandbox
from autograder.labs import (
    TestClient,
    alternative_names,
    check_bank,
    grader,
    load_module,
    mutant_names,
    service_factory,
)
from sandbox.checkers import Verdict, stock_conserved, stock_never_negative
from sandbox.checkers._common import quiet
from sandbox.explore import Counterexample, Passed, Scenario
from sandbox.faults import Delay, LockTimeouts, Schedule, SlowStorage

LAB = "05-concurrency"
VISIBLE = 5
HIDDEN = 30
HERE = Path(__file__).resolve().parent

SERVICE = "inventory"
DB = "inventory-db"
FRAUD = "fraud"
STOCKTAKE = "stocktake"
WAREHOUSES = ("east", "west", "north")
#: The opening stock: units of each product in each warehouse.
INITIAL_STOCK: dict[str, dict[str, int]] = {
    "lamp": {"east": 4, "west": 3, "north": 4},
    "kettle": {"east": 3, "west": 3, "north": 2},
    "desk": {"east": 2, "west": 2, "north": 3},
}
#: How often customers pick each product: the lamp is on sale, so most orders want it.
POPULARITY = ("lamp", "lamp", "lamp", "kettle", "desk")
#: How long the fraud service takes to approve an order (seconds), at the least and at the most.
FRAUD_TIME = (0.01, 0.03)
#: How long a client waits for an answer before it gives up on a request (seconds).
PATIENCE = 2.0
#: How many times a client sends a request answered 503 (busy: try again), with backoff.
ATTEMPTS = 4
#: Customers arrive in the first ARRIVAL seconds and think THINK seconds (on average) between orders.
ARRIVAL = 0.3
THINK = 0.1
#: The stock-take: it starts in the first second, locks every row of one warehouse and holds them this long.
STOCKTAKE_TIME = 2.5
#: The database gives up on a lock wait after this long: longer than a client waits. A service that does not
#: bound its own waits (``db.transaction(lock_timeout=...)``) leaves its clients hanging for it.
DB_LOCK_TIMEOUT = 5.0
FAULT_WINDOW = 1.5
SETTLE = 3.0
LIMIT = 60.0

Result = Counterexample | Passed
AppFactory = Callable[[], Any]


# --- loading the lab's modules (folder names have dashes, so they are loaded by path) -------


def load(name: str) -> ModuleType:
    """The module ``name`` of this lab (``"generated"``, ``"solution"``, ``"mutants/NAME"``,
    ``"alternatives/NAME"``), a fresh copy per replica in a world (see ``autograder.labs.load_module``)."""
    return load_module(HERE, name, "chaos_dojo_labs.lab05")


def mutants() -> list[str]:
    """The names of the partial fixes in ``mutants/``, sorted (``"mutants/NAME"``)."""
    return mutant_names(HERE)


def alternatives() -> list[str]:
    """The names of the correct fixes in ``alternatives/`` (unlike the reference in shape), sorted."""
    return alternative_names(HERE)


def stock_key(sku: str, warehouse: str) -> str:
    """The key of a stock row: ``"lamp@east"``."""
    return f"{sku}@{warehouse}"


def opening_rows() -> dict[str, dict]:
    """The ``stock`` table at the start: one row per product and warehouse."""
    return {stock_key(sku, w): {"sku": sku, "warehouse": w, "qty": n}
            for sku, levels in INITIAL_STOCK.items() for w, n in levels.items()}


# --- what surrounds the service (provided, not the learner's) ----------------------------


class FraudCheck(BaseModel):
    """An order to approve."""

    order_id: str
    customer: str


def create_fraud_app() -> FastAPI:
    """The fraud service: ``POST /checks`` approves every order after FRAUD_TIME seconds of thought."""
    app = FastAPI(title="fraud")

    @app.post("/checks")
    async def check(req: FraudCheck) -> dict:
        import random  # seeded by the world inside the sandbox

        await sandbox.sleep(random.uniform(*FRAUD_TIME))
        return {"order_id": req.order_id, "approved": True}

    return app


def create_stocktake_app() -> FastAPI:
    """The stock-take: ``POST /counts/{warehouse}`` locks every stock row of the warehouse (in key
    order, ``SELECT ... FOR UPDATE``), counts the shelves for STOCKTAKE_TIME seconds, and writes the
    counted levels back: while it counts, nobody takes or moves that warehouse's stock."""
    app = FastAPI(title="stocktake")

    @app.post("/counts/{warehouse}")
    async def count(warehouse: str, db: sandbox.Database = Depends(sandbox.database(DB, timeout=None))) -> dict:
        keys = [stock_key(sku, warehouse) for sku in sorted(INITIAL_STOCK)]
        async with db.transaction(lock_timeout=1.0) as tx:
            rows = {key: await tx.get("stock", key, for_update=True) for key in keys}
            await sandbox.sleep(STOCKTAKE_TIME)  # counting the shelves
            for key, row in rows.items():
                if row is None:
                    raise HTTPException(404, f"{key!r} is not stocked")
                await tx.put("stock", key, row)
        return {"warehouse": warehouse, "counted": {k: r["qty"] for k, r in rows.items()}}

    return app


# --- the workload ------------------------------------------------------------------------


async def _until_answered(client: sandbox.Client, url: str, body: dict) -> list[dict]:
    """Send ``body`` until an answer other than 503, at most ATTEMPTS times with a jittered backoff;
    give up at the first request unanswered after PATIENCE seconds. The answers, in order."""
    answers: list[dict] = []
    for attempt in range(ATTEMPTS):
        try:
            r = await client.http.post(url, json=body, timeout=PATIENCE)
        except sandbox.RequestTimeout:
            answers.append({"status": None, "after": PATIENCE})
            return answers
        try:
            detail = r.json()
        except ValueError:
            detail = r.text[:200]
        answers.append({"status": r.status_code, "body": detail})
        if r.status_code != 503:
            return answers
        await client.sleep(0.2 * 2**attempt * client.random.uniform(0.5, 1.0))
    return answers


def _record(op: sandbox.Operation, body: dict, answers: list[dict]) -> None:
    value = {**body, "answers": answers}
    last = answers[-1]["status"]
    if last is None:
        op.info(value, f"no answer within {PATIENCE:g}s")
    elif 200 <= last < 300:
        op.ok(value)
    else:
        op.fail(value)


async def customer(client: sandbox.Client, index: int, orders: int) -> None:
    """One customer placing ``orders`` orders one after the other: an ``order`` operation each,
    ``ok`` if confirmed (201), ``fail`` if refused (409: not enough stock; or 503 to the last
    attempt), ``info`` if an attempt got no answer within PATIENCE seconds."""
    await client.sleep(client.random.uniform(0.0, ARRIVAL))
    for j in range(orders):
        body = {"id": f"order-{index}-{j}", "customer": client.name, "sku": client.random.choice(POPULARITY),
                "warehouse": client.random.choice(WAREHOUSES), "qty": client.random.choice((1, 1, 2))}
        async with client.operation("order", body) as op:
            _record(op, body, await _until_answered(client, f"http://{SERVICE}/orders", body))
        await client.sleep(client.random.expovariate(1.0 / THINK))


async def rebalancer(client: sandbox.Client, direction: int, transfers: int) -> None:
    """A rebalancing job moving one unit at a time around the warehouses, ``direction`` +1
    (east -> west -> north -> east) or -1 (the other way round): two of them, started together,
    move the same product between the same two warehouses in opposite directions at the same
    moments. A ``transfer`` operation each, recorded as orders are."""
    await client.sleep(0.05)
    for i in range(transfers):
        sku = sorted(INITIAL_STOCK)[i % len(INITIAL_STOCK)]
        a = (i // len(INITIAL_STOCK)) % len(WAREHOUSES)
        b = (a + 1) % len(WAREHOUSES)
        source, target = (WAREHOUSES[a], WAREHOUSES[b]) if direction > 0 else (WAREHOUSES[b], WAREHOUSES[a])
        body = {"id": f"move-{client.name}-{i}", "sku": sku, "source": source, "target": target, "qty": 1}
        async with client.operation("transfer", body) as op:
            _record(op, body, await _until_answered(client, f"http://{SERVICE}/transfers", body))
        await client.sleep(client.random.uniform(0.02, 0.06))


async def stocktake_job(client: sandbox.Client) -> None:
    """Counts one warehouse (drawn from the seed) in the first second (a ``stocktake`` operation)."""
    warehouse = client.random.choice(WAREHOUSES)
    await client.sleep(client.random.uniform(0.0, 0.8))
    async with client.operation("stocktake", {"warehouse": warehouse}) as op:
        try:
            r = await client.http.post(f"http://{STOCKTAKE}/counts/{warehouse}", timeout=30.0)
        except sandbox.RequestTimeout:
            op.info(error="no answer")
        else:
            op.answered(r)


# --- the world ----------------------------------------------------------------------------


def build_world(
    seed: int, create_app: AppFactory, *, customers: int = 6, orders: int = 4, transfers: int = 6,
    stocktake: bool = True,
) -> sandbox.World:
    """The datacenter for ``seed``: the learner's inventory service (2 replicas) and inventory-db
    with the opening stock, the fraud and stock-take services, ``customers`` customers
    (``customer-0``...) placing ``orders`` orders each, two rebalancers making ``transfers``
    transfers each, and (if ``stocktake``) the stock-take of one warehouse. Built, not run.

    Raises:
        sandbox.BadSeedError: a bad seed. sandbox.InvalidParameterError: a workload size below 0
        (below 1 for customers and orders).
    """
    for name, value, low in (("customers", customers, 1), ("orders", orders, 1), ("transfers", transfers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise sandbox.InvalidParameterError(f"{name}={value!r}: use a whole number >= {low}")
    world = sandbox.World(seed=seed)
    world.add_database(DB, lock_timeout=DB_LOCK_TIMEOUT)
    world.database(DB).load("stock", opening_rows())
    world.add_service(SERVICE, create_app, replicas=2)
    world.add_service(FRAUD, create_fraud_app, isolate_module=False)
    world.add_service(STOCKTAKE, create_stocktake_app, isolate_module=False)
    for i in range(customers):
        world.add_client(f"customer-{i}", customer, i, orders)
    if transfers:
        world.add_client("rebalancer-0", rebalancer, 1, transfers)
        world.add_client("rebalancer-1", rebalancer, -1, transfers)
    if stocktake:
        world.add_client("stocktake-job", stocktake_job)
    return world


def scenario(create_app: AppFactory, *, rebalancers: bool = True, stocktake: bool = True, **workload: int) -> Scenario:
    """The lab as a scenario to explore: six customers x four orders, 2 x 6 transfers, a stock-take;
    without the rebalancers or the stock-take if told so (the notebook's first runs)."""
    create_app = service_factory(create_app)
    sizes = {"customers": 6, "orders": 4, **({"transfers": 6} if rebalancers else {}), **workload}

    def build(seed: int, customers: int = 6, orders: int = 4, transfers: int = 6) -> sandbox.World:
        return build_world(seed, create_app, customers=customers, orders=orders,
                           transfers=transfers if rebalancers else 0, stocktake=stocktake)

    return Scenario(LAB, build, sizes, settle=SETTLE, limit=LIMIT)


# --- faults ------------------------------------------------------------------------------


def schedules(seed: int) -> Schedule:
    """The lab's nemesis for ``seed``: two faults in the first FAULT_WINDOW seconds, drawn among a
    slow fraud service (its answers late by up to 0.35 s), a slow database (every statement up to
    20 ms slower: the race windows widen), and a database that gives up on lock waits after a few
    milliseconds (``LockTimeouts``: every transaction that waits is aborted). No fault loses a
    request: whatever is asked gets an answer from a correct service within PATIENCE seconds."""
    import random

    rng = random.Random(f"{LAB}/nemesis/{seed}")  # a str seed: the same draw in every process
    faults = []
    for _ in range(2):
        kind = rng.choice(("fraud", "fraud", "slow-db", "lock-timeouts"))
        when = {"start": round(rng.uniform(0.0, FAULT_WINDOW), 3), "duration": round(rng.uniform(0.3, 1.2), 3)}
        if kind == "fraud":
            faults.append(Delay(FRAUD, latency=round(rng.uniform(0.1, 0.35), 3), direction="to", **when))
        elif kind == "slow-db":
            faults.append(SlowStorage(DB, latency=round(rng.uniform(0.005, 0.02), 4), **when))
        else:
            faults.append(LockTimeouts(DB, lock_timeout=round(rng.uniform(0.002, 0.02), 4), **when))
    return Schedule(sorted(faults, key=lambda f: f.start))


#: The pattern's known failure modes, each hit on purpose.
ADVERSARIAL: list[Schedule] = [
    # 1. The fraud service is slow during the burst (0.5 s each way): an order still gets its answer in time, but a lock
    #    held across the call holds up every order of the row behind it, for longer than a customer waits.
    Schedule([Delay(FRAUD, latency=0.5, direction="both", start=0.0, duration=2.0)]),
    # 2. A slow database (every statement 15 ms slower): each read-check-write takes longer, and so does its race window.
    Schedule([SlowStorage(DB, latency=0.015, start=0.0, duration=2.0)]),
    # 3. The database gives up on lock waits after 5 ms for a second: the transactions that wait are aborted, and
    #    must be tried again or answered 503, never 500 and never confirmed.
    Schedule([LockTimeouts(DB, lock_timeout=0.005, start=0.1, duration=1.0)]),
]


# --- the invariants ---------------------------------------------------------------------

#: What a client may be answered, besides "no answer" (a timeout): confirmed, refused, or "busy, try again".
_FINE = {201: "confirmed", 404: "unknown product", 409: "not enough stock", 422: "refused", 503: "busy, try again"}


def _lock_waits(world: sandbox.World) -> list[tuple]:
    """The row-lock waits ``inventory-db`` recorded: (time, row key, waiting transaction, holding transaction)."""
    return [(e[0], e[4], e[5], e[6]) for e in world.recorder.log if e[1] == "db.lock_wait" and e[2] == DB]


def deadlocks(world: sandbox.World) -> list[str]:
    """The deadlocks of two transactions in ``inventory-db``: A waited for a row B held while B waited
    for a row A held (each pair once), told in one line each."""
    waits = _lock_waits(world)
    first: dict[tuple[int, int], tuple] = {}
    for wait in waits:
        first.setdefault((wait[2], wait[3]), wait)
    found = []
    for (a, b), (t1, row1, _, _) in first.items():
        if a < b and (b, a) in first:
            t2, row2 = first[(b, a)][0], first[(b, a)][1]
            found.append(f"t={t1:.4f} transaction {a} waits for {row1!r}, held by transaction {b}; t={t2:.4f} "
                         f"transaction {b} waits for {row2!r}, held by transaction {a}: a deadlock")
    return found


@dataclass(frozen=True)
class NoDeadlockLeftUnresolved:
    """Every order and transfer got an answer within the client's patience (PATIENCE seconds), and a
    meaningful one: 201, 404, 409, 422 or 503 with Retry-After, never a 500. A deadlock the service
    leaves to the database's lock_timeout (DB_LOCK_TIMEOUT, longer than anyone waits), a lock held
    across a slow call, a lock wait retried for ever, or a LockTimeout left unhandled all show here.
    The evidence names the deadlocks the database saw (two transactions each waiting for the other)."""

    name: str = "no_deadlock_left_unresolved"

    def __call__(self, world: sandbox.World) -> Verdict:
        problems: list[tuple[str, Any]] = []
        answered = 0
        for invoke, done in world.history.pairs():
            if invoke.f not in ("order", "transfer"):
                continue
            if done is None or not isinstance(done.value, dict):
                if not quiet(world):
                    return Verdict.unknown(self.name, f"the run stopped before {invoke.process}'s {invoke.f} "
                                                      f"{invoke.value.get('id')} finished: nothing to decide yet")
                problems.append((f"{invoke.process}'s {invoke.f} {invoke.value.get('id')} never finished", invoke))
                continue
            for answer in done.value.get("answers", ()):
                status = answer["status"]
                if status is None:
                    problems.append((f"t={done.time:.4f} {invoke.process}'s {invoke.f} {done.value['id']} got no answer "
                                     f"within {PATIENCE:g}s (sent at t={invoke.time:.4f})", invoke))
                elif status not in _FINE:
                    problems.append((f"{invoke.process}'s {invoke.f} {done.value['id']} was answered {status}: "
                                     f"{answer.get('body')!r}", invoke))
                else:
                    answered += 1
        if problems:
            found = deadlocks(world)
            summary = problems[0][0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            if found:
                summary += f"; the database saw {len(found)} deadlock(s)"
            evidence: list[Any] = []
            for text, op in problems[:6]:
                evidence += [text, op]
            return Verdict.failing(self.name, summary, tuple([*found[:3], *evidence]))
        if not answered:
            return Verdict.unknown(self.name, "no order or transfer got an answer: nothing to check")
        return Verdict.passing(self.name, f"{answered} answers, each within {PATIENCE:g}s and meaningful")


@dataclass(frozen=True)
class OrdersBackedByStock:
    """Every order a customer was told is confirmed (201) is recorded in ``orders``, and was backed by
    stock: per product and warehouse, the units of confirmed orders plus those of transfers out that
    were confirmed are at most the opening stock plus every transfer in that may have happened (any
    not refused with a 4xx). More than that is an order confirmed for stock that was not there."""

    name: str = "orders_backed_by_stock"

    def __call__(self, world: sandbox.World) -> Verdict:
        recorded = world.database(DB).rows("orders")
        taken: dict[str, int] = {}
        came: dict[str, int] = {}
        told: dict[str, list[str]] = {}
        problems: list[str] = []
        confirmed = 0
        for invoke, done in world.history.pairs():
            if done is None or not isinstance(done.value, dict) or invoke.f not in ("order", "transfer"):
                continue
            v = done.value
            last = v["answers"][-1]["status"] if v.get("answers") else None
            if invoke.f == "order" and done.type == "ok":
                confirmed += 1
                row = stock_key(v["sku"], v["warehouse"])
                taken[row] = taken.get(row, 0) + v["qty"]
                told.setdefault(row, []).append(f"{v['id']} ({v['qty']})")
                kept = recorded.get(v["id"])
                if kept is None or (kept.get("sku"), kept.get("warehouse"), kept.get("qty")) != (v["sku"], v["warehouse"], v["qty"]):
                    problems.append(f"t={done.time:.4f} {invoke.process} was told order {v['id']} ({v['qty']} x "
                                    f"{v['sku']} from {v['warehouse']}) is confirmed, but orders holds {kept!r}")
            elif invoke.f == "transfer":
                source, target = stock_key(v["sku"], v["source"]), stock_key(v["sku"], v["target"])
                if done.type == "ok":
                    taken[source] = taken.get(source, 0) + v["qty"]
                if last is None or not 400 <= last < 500:
                    came[target] = came.get(target, 0) + v["qty"]
        opening = opening_rows()
        for row in sorted(taken):
            have = opening.get(row, {}).get("qty", 0) + came.get(row, 0)
            if taken[row] > have:
                problems.append(f"{row}: orders confirmed for {taken[row]} units (with the transfers out), but at most "
                                f"{have} were ever there ({opening.get(row, {}).get('qty', 0)} at the opening + "
                                f"{came.get(row, 0)} moved in); confirmed orders: {', '.join(told.get(row, []))}")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return Verdict.failing(self.name, problems[0] + more, tuple(problems))
        if not confirmed:
            return Verdict.unknown(self.name, "no order was confirmed: nothing to back")
        return Verdict.passing(self.name, f"all {confirmed} confirmed orders recorded and backed by stock")


def invariants() -> list:
    """Stock never negative; stock conserved; every confirmed order backed by stock; no deadlock left unresolved."""
    return [
        stock_never_negative(DB, "stock", "qty"),
        stock_conserved(DB, "stock", "orders", initial=INITIAL_STOCK),
        OrdersBackedByStock(),
        NoDeadlockLeftUnresolved(),
    ]


# --- works in staging ---------------------------------------------------------------------


def happy_path(create_app: AppFactory) -> None:
    """The test the assistant's code passes: two orders, one refused, a transfer and a look-up, one at a
    time, through FastAPI's TestClient (the fraud service in-process)."""
    inventory = create_app()
    sandbox.connect_local(inventory, fraud=create_fraud_app())
    with TestClient(inventory) as client:
        _stock_local(inventory)
        order = {"id": "order-1", "customer": "ada", "sku": "lamp", "warehouse": "east", "qty": 3}
        r = client.post("/orders", json=order)
        assert r.status_code == 201, r.text
        assert client.get("/stock/lamp/east").json()["qty"] == INITIAL_STOCK["lamp"]["east"] - 3
        r = client.post("/orders", json={**order, "id": "order-2", "qty": 2})
        assert r.status_code == 409, r.text
        move = {"id": "move-1", "sku": "lamp", "source": "west", "target": "east", "qty": 2}
        r = client.post("/transfers", json=move)
        assert r.status_code == 201, r.text
        assert client.get("/stock/lamp/east").json()["qty"] == INITIAL_STOCK["lamp"]["east"] - 3 + 2
        assert client.get("/stock/lamp/west").json()["qty"] == INITIAL_STOCK["lamp"]["west"] - 2
        r = client.post("/orders", json={**order, "id": "order-3", "qty": 2})
        assert r.status_code == 201, r.text
        assert client.get("/stock/lamp/east").json()["qty"] == 1


def _stock_local(app: FastAPI) -> None:
    stores = getattr(app.state, "chaos_dojo_databases", None)
    if stores is None:
        stores = app.state.chaos_dojo_databases = {}
    if DB not in stores:
        from sandbox.deps import _LocalWorld

        stores[DB] = sandbox.Store(_LocalWorld, DB, lock_timeout=2.0)
    stores[DB].load("stock", opening_rows())


# --- the checks ---------------------------------------------------------------------------


def check(
    create_app: AppFactory,
    bank: str = "visible",
    *,
    secret: str | None = None,
    shrink: bool = True,
    workers: int | None = None,
    only: tuple[str, ...] = (),
) -> Result:
    """Run the lab's checks on ``create_app``: the ``bank`` of seeds ("visible": VISIBLE seeds, the
    self-checks; "hidden": HIDDEN seeds, grading, drawn from ``secret`` or the grading secret), each
    under its nemesis schedule, then each ADVERSARIAL schedule (paired with the bank's first seeds).
    Returns the first ``Counterexample`` (shrunk unless ``shrink=False``), or ``Passed`` over every
    run. Deterministic: the same inputs give the same result.
    """
    size = VISIBLE if bank == "visible" else HIDDEN
    return check_bank(LAB, bank, size, scenario(create_app), invariants(), schedules, ADVERSARIAL,
                      secret=secret, shrink=shrink, workers=workers, only=only)


def production(create_app: AppFactory) -> Result:
    """The run the notebook's "Production" section shows: the burst of orders, and no fault at all.

    The visible bank's first seed, no transfers and no stock-take (only the customers' orders), no
    fault; ``stock_never_negative`` and ``stock_conserved`` checked, shrunk to the fewest customers
    and orders that still break them. Returns the ``Counterexample`` (the generated code: two orders
    took the same units) or ``Passed`` (a fixed service).
    """
    from autograder.labs import seed_bank, select
    from sandbox.explore import explore

    seeds = seed_bank(LAB, "visible", 1)
    return explore(scenario(create_app, rebalancers=False, stocktake=False),
                   select(invariants(), ("stock_never_negative", "stock_conserved")),
                   seeds=seeds, schedules=[Schedule([])], shrink=True, workers=1)


#: What a grade cell runs: ``grade(create_app, *invariant_names)`` on the hidden bank (see ``autograder.labs.grader``).
grade = grader(check, lab=LAB)

#: The graded parts, by the grade cell's nbgrader id: the invariants each checks. A grader that does not run the
#: learner's notebook (``dojo grade``) reads the parts from here; a test holds the notebook's grade cells to it.
PARTS: dict[str, tuple[str, ...]] = {
    "stock-never-negative-and-conserved": ("stock_never_negative", "stock_conserved"),
    "orders-backed-by-stock": ("orders_backed_by_stock",),
    "no-deadlock-left-unresolved": ("no_deadlock_left_unresolved",),
}
