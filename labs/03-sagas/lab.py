"""Lab 03, sagas: an order that spans three services, and an orchestrator that can die halfway.

Placing an order takes three steps in three services, each with its own database:
reserve the stock (``inventory``), charge the card (``payments``), book the
shipment (``shipping``). There is no transaction across them. When a later step
fails (a declined card, an address the carrier does not serve), what the earlier
steps did must be undone, in reverse order: refund the charge, then release the
stock. And the orchestrator that drives the saga (``orders``, the learner's code)
can be killed between two steps: its replacement must find the unfinished sagas
and finish or compensate them.

The world (``build_world``):

==============  ===============  =======================================================
service         database         what it does
==============  ===============  =======================================================
orders          orders-db        the learner's orchestrator, ``POST /orders`` (2 replicas)
inventory       inventory-db     ``POST /reservations`` (idempotent by ``id``),
                                 ``DELETE /reservations/{id}`` (release)
payments        payments-db      ``POST /charges`` (idempotent by ``id``; the card
                                 ``4000000000000002`` is always declined),
                                 ``POST /refunds`` (idempotent by ``charge_id``)
shipping        shipping-db      ``POST /shipments`` (idempotent by ``id``; refuses an
                                 address it cannot serve with 422; busy now and then: 503)
==============  ===============  =======================================================

The participants are not the learner's code, and they are careful:

* each step is idempotent by the ``id`` the *caller* gives (a retry with the same id
  returns the first answer, a refusal included); a new id is a new effect;
* a compensation that arrives before its step (a release of a reservation still in
  flight) leaves a tombstone, so the late step is refused instead of taking effect
  after it was undone;
* they, not the orchestrator, report each saga step to the checkers, right after
  the step's effect is committed: ``sandbox.event("saga", saga=order_id,
  step="reserve" | "charge" | "ship", action="do" | "undo")``. An orchestrator cannot
  pass by reporting nothing: the checkers read what the participants did, and the
  lab's own invariants read the participants' databases.

What is checked (``invariants``), after a quiet phase long enough for recovery:

* ``saga_completed_or_compensated(steps=("reserve", "charge", "ship"))``: every saga
  did all three steps, or undid every step it did, in reverse order;
* ``stock_conserved``: units in stock + units reserved = opening stock;
* ``money_conserved``: per order, charged - refunded = the order's price if it shipped, else 0;
* ``orders_settled``: per order, the participants' databases agree: reserved, charged and
  shipped, or none of them;
* ``customers_told_the_truth``: an order a customer saw confirmed (201) was reserved,
  charged and shipped; no order a customer was told was refused (4xx) went through.

Under what (``schedules``, ``ADVERSARIAL``): the orchestrator killed, paused, delayed, cut off
(from a participant or from orders-db), and, on half the seeds, one participant's replies lost
for several seconds while its requests still take effect: a step whose answer never came may
have happened, so it is asked again with the same id until the answer is definite, never
compensated on a guess.

Example::

    import generated, lab
    found = lab.check(generated.create_app)        # the visible bank
    print(found)                                   # the counterexample: the saga left half done
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

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
from sandbox.checkers import Verdict, saga_completed_or_compensated, stock_conserved
from sandbox.checkers._common import quiet
from sandbox.explore import Counterexample, Passed, Scenario
from sandbox.faults import Delay, Kill, Loss, Partition, Pause, Schedule, nemesis

LAB = "03-sagas"
VISIBLE = 5
HIDDEN = 30

AppFactory = Callable[[], FastAPI]
OrderId = str
HERE = Path(__file__).resolve().parent

#: The catalogue: price of each SKU, in cents, and the opening stock (one warehouse).
PRICES: dict[str, int] = {"lamp": 2_500, "kettle": 3_900, "teapot": 1_800, "desk": 14_900}
INITIAL_STOCK: dict[str, int] = {"lamp": 8, "kettle": 6, "teapot": 6, "desk": 4}
#: Stripe's test cards: the first always succeeds, the second is always declined.
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
#: Where the carrier delivers, and an address it cannot serve (a refusal, 422).
ADDRESSES = ("1 Main St, Springfield", "22 Rue Lepic, Paris", "5 Kings Rd, London")
UNSHIPPABLE = "Research Station, Antarctica"
#: How often the shipping service is too busy to answer (503, nothing booked).
SHIPPING_BUSY = 0.1
#: How long the card network and the carrier take, in seconds.
CARD_NETWORK_TIME = 0.02
CARRIER_TIME = 0.02
#: Customers arrive during the first ARRIVAL_WINDOW seconds and think THINK_TIME between orders.
ARRIVAL_WINDOW = 0.3
THINK_TIME = 0.2
#: Share of orders paid with the declined card, and shipped to the unshippable address.
DECLINE_RATE = 0.15
UNSHIPPABLE_RATE = 0.15
#: How long a customer's browser waits for POST /orders.
CLIENT_TIMEOUT = 4.0
#: The quiet phase after the last fault heals: long enough for a restarted orchestrator to recover.
SETTLE = 4.0
LIMIT = 60.0
#: What the lab's nemesis may break, and when.
PROCESS_FAULTS = ("kill", "kill", "pause")
LINK_FAULTS = ("delay", "loss", "partition")
FAULT_WINDOW = 2.0
#: On this share of seeds the nemesis also loses every reply of one participant to the orchestrator for
#: REPLY_LOSS seconds (its requests still arrive and take effect): longer than any fixed retry budget, so
#: only an orchestrator that keeps asking (the same id) until it hears a definite answer gets it right.
REPLY_LOSS_SHARE = 0.5
REPLY_LOSS = (3.0, 8.0)
#: Whose replies are lost, drawn with these weights: shipping's matter most (the last step has no
#: compensation: a parcel booked while its reply was lost must not be refunded).
REPLY_LOSS_FROM = ("shipping", "shipping", "payments", "inventory")


# --- loading the lab's modules (the folder's name has a dash, so they are loaded by path) ----


def load(name: str) -> ModuleType:
    """The module ``name`` of this lab (``"generated"``, ``"solution"``, ``"mutants/NAME"``,
    ``"alternatives/NAME"``), a fresh copy per replica in a world (see ``autograder.labs.load_module``)."""
    return load_module(HERE, name, "chaos_dojo_labs.lab03")


def mutants() -> list[str]:
    """The names of the partial fixes in ``mutants/``, sorted (``"mutants/NAME"``)."""
    return mutant_names(HERE)


def alternatives() -> list[str]:
    """The names of the correct fixes in ``alternatives/`` (unlike the reference in shape), sorted."""
    return alternative_names(HERE)


# --- the participants (provided: not the learner's code) -------------------------------


class ReservationRequest(BaseModel):
    """Hold ``qty`` units of ``sku`` for order ``order_id``; ``id`` makes retries safe."""

    id: str
    order_id: str
    sku: str
    qty: int = Field(ge=1)


class ChargeRequest(BaseModel):
    """Charge ``amount`` cents to ``card`` for order ``order_id``; ``id`` makes retries safe."""

    id: str
    order_id: str
    amount: int = Field(gt=0)
    card: str


class RefundRequest(BaseModel):
    """Refund the charge ``charge_id`` in full (at most once, however often it is asked)."""

    charge_id: str


class ShipmentRequest(BaseModel):
    """Book the carrier for order ``order_id``; ``id`` makes retries safe."""

    id: str
    order_id: str
    sku: str
    qty: int = Field(ge=1)
    address: str


async def _lock(tx: sandbox.Transaction, key: str) -> None:
    """Hold the lock of ``key`` until ``tx`` ends: two requests with one id never interleave (a row
    lock on a row that does not exist yet locks nothing, so each id has a row in ``locks``)."""
    await tx.put("locks", key, {"key": key})


def create_inventory_app() -> FastAPI:
    """Inventory: the stock, and reservations of it, idempotent by reservation id."""
    app = FastAPI(title="inventory")
    inventory_db = Depends(sandbox.database("inventory-db"))

    @app.post("/reservations", status_code=201)
    async def reserve(req: ReservationRequest, db: sandbox.Database = inventory_db) -> dict:
        async with db.transaction() as tx:
            await _lock(tx, req.id)
            held = await tx.get("reservations", req.id)
            if held is not None:
                return held  # a retry: the same reservation
            if await tx.get("released", req.id) is not None:
                raise HTTPException(409, f"reservation {req.id} was released (or refused) already")
            stock = await tx.get("stock", req.sku, for_update=True)
            if stock is None:
                raise HTTPException(404, f"unknown product {req.sku!r}")
            if stock["qty"] < req.qty:
                await tx.put("released", req.id, {"id": req.id, "order_id": req.order_id, "refused": "out of stock"})
                raise_after = True
            else:
                raise_after = False
                stock["qty"] -= req.qty
                await tx.put("stock", req.sku, stock)
                held = {"id": req.id, "order_id": req.order_id, "sku": req.sku, "qty": req.qty}
                await tx.put("reservations", req.id, held)
        if raise_after:
            raise HTTPException(409, f"only {stock['qty']} x {req.sku} left")
        sandbox.event("saga", saga=req.order_id, step="reserve", action="do")
        return held

    @app.delete("/reservations/{reservation_id}")
    async def release(reservation_id: str, db: sandbox.Database = inventory_db) -> dict:
        async with db.transaction() as tx:
            await _lock(tx, reservation_id)
            held = await tx.get("reservations", reservation_id)
            if held is None:  # never made, or released already: leave a tombstone, change nothing
                if await tx.get("released", reservation_id) is None:
                    await tx.put("released", reservation_id, {"id": reservation_id, "refused": "released first"})
                return {"id": reservation_id, "released": False}
            stock = await tx.get("stock", held["sku"], for_update=True)
            stock["qty"] += held["qty"]
            await tx.put("stock", held["sku"], stock)
            await tx.delete("reservations", reservation_id)
            await tx.put("released", reservation_id, held)
        sandbox.event("saga", saga=held["order_id"], step="reserve", action="undo")
        return {"id": reservation_id, "released": True}

    @app.get("/stock/{sku}")
    async def stock(sku: str, db: sandbox.Database = inventory_db) -> dict:
        row = await db.get("stock", sku)
        if row is None:
            raise HTTPException(404, f"unknown product {sku!r}")
        return row

    return app


def create_payments_app() -> FastAPI:
    """Payments: charges (idempotent by charge id) and refunds (idempotent by charge id)."""
    app = FastAPI(title="payments")
    payments_db = Depends(sandbox.database("payments-db"))

    @app.post("/charges", status_code=201)
    async def charge(req: ChargeRequest, db: sandbox.Database = payments_db) -> dict:
        await sandbox.sleep(CARD_NETWORK_TIME)  # the card network
        async with db.transaction() as tx:
            await _lock(tx, req.id)
            done = await tx.get("charges", req.id)
            if done is not None:
                return done  # a retry: the same charge
            answer = await tx.get("refused", req.id)
            if answer is None and await tx.get("refunds", req.id) is not None:
                answer = {"status": 409, "detail": f"charge {req.id} was refunded before it was made"}
            if answer is None and req.card == DECLINED_CARD:
                answer = {"status": 402, "detail": "card declined"}
                await tx.put("refused", req.id, answer)
            if answer is None:
                done = {"id": req.id, "order_id": req.order_id, "amount": req.amount, "card_last4": req.card[-4:]}
                await tx.put("charges", req.id, done)
        if answer is not None:
            raise HTTPException(answer["status"], answer["detail"])
        sandbox.event("saga", saga=req.order_id, step="charge", action="do")
        return done

    @app.post("/refunds", status_code=201)
    async def refund(req: RefundRequest, db: sandbox.Database = payments_db) -> dict:
        async with db.transaction() as tx:
            await _lock(tx, req.charge_id)
            done = await tx.get("refunds", req.charge_id)
            if done is not None:
                return done  # a retry: the same refund
            charge = await tx.get("charges", req.charge_id)
            if charge is None:  # nothing charged (yet): a tombstone, so that a late charge is refused
                done = {"charge_id": req.charge_id, "order_id": None, "amount": 0}
            else:
                done = {"charge_id": req.charge_id, "order_id": charge["order_id"], "amount": charge["amount"]}
            await tx.put("refunds", req.charge_id, done)
        if done["amount"]:
            sandbox.event("saga", saga=done["order_id"], step="charge", action="undo")
        return done

    return app


def create_shipping_app(busy: float = SHIPPING_BUSY) -> FastAPI:
    """Shipping: books the carrier, idempotent by shipment id; refuses addresses it cannot serve;
    too busy to answer (503) on a ``busy`` share of calls (in production only: staging's carrier is idle)."""
    app = FastAPI(title="shipping")
    shipping_db = Depends(sandbox.database("shipping-db"))

    @app.post("/shipments", status_code=201)
    async def ship(req: ShipmentRequest, db: sandbox.Database = shipping_db) -> dict:
        done = await db.get("shipments", req.id)
        if done is not None:
            return done  # a retry: the same shipment
        if req.address == UNSHIPPABLE:
            raise HTTPException(422, f"we do not deliver to {req.address!r}")
        import random  # seeded by the world inside the sandbox

        if busy and random.random() < busy:
            raise HTTPException(503, "the carrier is busy, try again shortly")
        await sandbox.sleep(CARRIER_TIME)  # the carrier's booking system
        async with db.transaction() as tx:
            await _lock(tx, req.id)
            done = await tx.get("shipments", req.id)
            if done is not None:
                return done
            done = {"id": req.id, "order_id": req.order_id, "sku": req.sku, "qty": req.qty, "address": req.address}
            await tx.put("shipments", req.id, done)
        sandbox.event("saga", saga=req.order_id, step="ship", action="do")
        return done

    return app


PARTICIPANTS: dict[str, AppFactory] = {
    "inventory": create_inventory_app,
    "payments": create_payments_app,
    "shipping": create_shipping_app,
}


# --- the world -----------------------------------------------------------------------


def build_world(
    seed: int, create_app: AppFactory, *, customers: int = 5, orders_per_customer: int = 4, replicas: int = 2
) -> sandbox.World:
    """The datacenter for ``seed``: the learner's orchestrator ``orders`` (``replicas``), the three
    participants, four databases, the opening stock, and ``customers`` customers placing
    ``orders_per_customer`` orders each (some with the declined card, some to the unshippable address).

    Example::

        world = build_world(3, solution.create_app)
        world.run(settle=SETTLE)
        world.database("payments-db").rows("charges")
    """
    world = sandbox.World(seed=seed)
    for db in ("orders-db", "inventory-db", "payments-db", "shipping-db"):
        world.add_database(db)
    world.database("inventory-db").load("stock", {sku: {"sku": sku, "qty": n} for sku, n in INITIAL_STOCK.items()})
    world.add_service("orders", create_app, replicas=replicas)
    for name, factory in PARTICIPANTS.items():
        world.add_service(name, factory, isolate_module=False)
    for i in range(customers):
        world.add_client(f"customer-{i}", customer, orders_per_customer)
    return world


async def customer(client: sandbox.Client, orders: int) -> None:
    """One customer placing ``orders`` orders, one at a time: ``place-order`` in the history is
    ``ok`` (201, the order), ``fail`` (4xx, refused) or ``info`` (5xx or no answer: unknown)."""
    await client.sleep(client.random.uniform(0.0, ARRIVAL_WINDOW))
    for _ in range(orders):
        request = {
            "customer": client.name,
            "sku": client.random.choice(sorted(PRICES)),
            "qty": client.random.choice((1, 1, 2)),
            "card": DECLINED_CARD if client.random.random() < DECLINE_RATE else GOOD_CARD,
            "address": UNSHIPPABLE if client.random.random() < UNSHIPPABLE_RATE else client.random.choice(ADDRESSES),
        }
        async with client.operation("place-order", request) as op:
            try:
                r = await client.http.post("http://orders/orders", json=request, timeout=CLIENT_TIMEOUT)
            except sandbox.RequestTimeout:
                op.info(error="no answer")
            else:
                op.answered(r)
        await client.sleep(client.random.expovariate(1.0 / THINK_TIME))


def scenario(create_app: AppFactory) -> Scenario:
    """The lab as a scenario to explore: five customers x four orders; shrinking tries fewer."""
    create_app = service_factory(create_app)

    def build(seed: int, customers: int = 5, orders_per_customer: int = 4) -> sandbox.World:
        return build_world(seed, create_app, customers=customers, orders_per_customer=orders_per_customer)

    name = f"{LAB}/{getattr(create_app, '__module__', '?')}.{getattr(create_app, '__qualname__', '?')}"
    return Scenario(name, build, {"customers": 5, "orders_per_customer": 4}, settle=SETTLE, limit=LIMIT)


def schedules(seed: int) -> Schedule:
    """The lab's nemesis for ``seed``: two process faults on the orchestrator (killed and restarted,
    or paused), two network faults on its links (delayed, lossy or cut off, towards one participant
    or all, for up to 1.2 s) and, on half the seeds, the replies of one participant to the
    orchestrator lost for several seconds (``reply_loss``). The participants and their databases are
    never hit directly: they are the provided, trusted side of the saga."""
    process = nemesis(seed, ["orders"], kinds=PROCESS_FAULTS, count=2, within=FAULT_WINDOW, duration=(0.2, 1.0))
    drawn = nemesis((seed * 7919 + 1) % 2**31, ["orders", *PARTICIPANTS], kinds=LINK_FAULTS, count=2,
                    within=FAULT_WINDOW, duration=(0.2, 1.2))
    links = []
    for fault in drawn:
        if "orders" not in fault.target and "orders" not in (fault.peer or ()):
            flip = {"to": "from", "from": "to", "both": "both"}[fault.direction]
            fault = replace(fault, target=("orders",), peer=fault.target, direction=flip)
        links.append(fault)
    return Schedule(sorted([*process, *links, *reply_loss(seed)], key=lambda f: f.start))


def reply_loss(seed: int) -> list[Partition]:
    """The nemesis's long one-way fault for ``seed`` (none on about half the seeds): every reply one
    participant sends the orchestrator is lost for ``REPLY_LOSS`` seconds, while its requests still
    arrive and take effect. A step sent then is done, and its caller cannot hear it.

    Example::

        reply_loss(0)   # [Partition('shipping', 'orders', start=0.806, duration=3.578, direction='to')]
        reply_loss(3)   # []: no long fault on this seed
    """
    rng = random.Random(f"{LAB}/reply-loss/{seed}")  # a str seed: the same draw in every process
    if rng.random() >= REPLY_LOSS_SHARE:
        return []
    source = rng.choice(REPLY_LOSS_FROM)
    start, duration = round(rng.uniform(0.0, FAULT_WINDOW), 3), round(rng.uniform(*REPLY_LOSS), 3)
    return [Partition(source, "orders", direction="to", start=start, duration=duration)]


def _compensations_cut(first: float, every: float, times: int) -> Schedule:
    """Slow participants; ``times`` times, ``every`` seconds from ``first``: the orchestrators' requests to
    inventory lost for a second (a saga refused then cannot release its stock: it stays *compensating*),
    and both orchestrators killed just before that link heals."""
    faults: list = [Delay("orders", peer=list(PARTICIPANTS), latency=0.15, start=0.0, duration=first + every * times)]
    for i in range(times):
        t = round(first + every * i, 3)
        faults += [Partition("orders", "inventory", direction="to", start=t, duration=1.0),
                   Kill("orders", mode="all", start=round(t + 0.8, 3), restart_after=0.2)]
    return Schedule(faults)


#: Hand-written schedules that hit the known failure modes of a saga exactly.
ADVERSARIAL: list[Schedule] = [
    # Both orchestrators die while sagas are between their steps (a charge just made), and come back.
    Schedule([Kill("orders", start=0.45, restart_after=0.3), Kill("orders", start=1.3, restart_after=0.4)]),
    # Shipping is cut off from the orchestrator during the ship steps, then the network heals.
    Schedule([Partition("orders", "shipping", start=0.3, duration=1.2)]),
    # Replies from payments get lost: was the card charged or not? Only an idempotent retry can tell.
    Schedule([Loss("payments", peer="orders", probability=0.5, direction="to", start=0.2, duration=1.5)]),
    # Slow participants (every call near the timeout), then one orchestrator killed, the other paused.
    Schedule([
        Delay("orders", latency=0.3, jitter=0.1, start=0.2, duration=1.0),
        Kill("orders", mode="one", start=0.8, restart_after=0.5),
        Pause("orders", mode="one", start=1.5, duration=0.5),
    ]),
    # Every reply from shipping is lost for eight seconds while its requests still arrive: parcels are booked
    # and the orchestrator cannot hear it. Giving up after a retry budget and compensating refunds a parcel
    # that ships; only asking again (the same id) until shipping's answer gets through is right.
    Schedule([Partition("shipping", "orders", direction="to", start=0.2, duration=8.0)]),
    # Slow participants, and the orchestrators lose orders-db for half a second: a request that cannot save
    # its saga fails (after the database's timeout) with the saga half done, in a replica that lives on. Only
    # a recovery loop that keeps running (and survives the database errors it meets meanwhile) finishes it.
    Schedule([
        Delay("orders", peer=list(PARTICIPANTS), latency=0.15, start=0.0, duration=2.0),
        Partition("orders", "orders-db", start=0.6, duration=0.5),
    ]),
    # Sagas killed while they compensate (a refused order whose stock cannot be released yet): recovery must
    # take over the sagas it finds compensating as well as those going forward. Twice, at other moments.
    _compensations_cut(0.5, every=1.4, times=6),
    _compensations_cut(0.3, every=1.2, times=7),
]


# --- the invariants ------------------------------------------------------------------


def _participants(world: sandbox.World) -> dict[OrderId, dict[str, Any]]:
    """Per order, what the participants' databases hold for it at the end of the run."""
    out: dict[OrderId, dict[str, Any]] = {}

    def entry(order: OrderId) -> dict[str, Any]:
        return out.setdefault(order, {"reserved": 0, "charged": 0, "refunded": 0, "charges": 0, "shipped": 0,
                                      "price": None, "what": None})

    for r in world.database("inventory-db").rows("reservations").values():
        entry(r["order_id"])["reserved"] += r["qty"]
    refunds = world.database("payments-db").rows("refunds")
    for charge_id, c in world.database("payments-db").rows("charges").items():
        e = entry(c["order_id"])
        e["charged"] += c["amount"]
        e["charges"] += 1
        e["refunded"] += refunds.get(charge_id, {}).get("amount", 0)
    for s in world.database("shipping-db").rows("shipments").values():
        e = entry(s["order_id"])
        e["shipped"] += 1
        e["price"] = PRICES.get(s["sku"], 0) * s["qty"]
        e["what"] = (s["sku"], s["qty"], s["address"])
    return out


def _state(e: dict[str, Any]) -> str:
    held = (e["reserved"] > 0, e["charged"] - e["refunded"] > 0, e["shipped"] > 0)
    if all(held):
        return "complete"
    if not any(held):
        return "nothing held"
    parts = [what for what, h in zip(("reserved", "charged", "shipped"), held) if h]
    return "half done: " + ", ".join(parts) + " only"


def _show(order: OrderId, e: dict[str, Any]) -> str:
    return (f"order {order}: {e['reserved']} units reserved, charged {e['charged'] / 100:.2f} in {e['charges']} "
            f"charge(s), refunded {e['refunded'] / 100:.2f}, {e['shipped']} shipment(s)")


@dataclass(frozen=True)
class MoneyConserved:
    """Per order, charged - refunded = the order's price if it shipped, else 0 (read from the
    participants' databases: a double charge, or a charge kept for an order that never shipped)."""

    name: str = "money_conserved"

    def __call__(self, world: sandbox.World) -> Verdict:
        orders = _participants(world)
        if not any(e["charges"] for e in orders.values()):
            return Verdict.unknown(self.name, "nothing was charged in this run: nothing to balance")
        wrong = []
        for order, e in sorted(orders.items()):
            net, due = e["charged"] - e["refunded"], (e["price"] or 0) if e["shipped"] else 0
            if net != due:
                why = "for an order that never shipped" if not e["shipped"] else f"for a {due / 100:.2f} order"
                wrong.append(f"{_show(order, e)}: {net / 100:.2f} kept {why}")
        if wrong and not quiet(world):
            return Verdict.unknown(self.name, f"the run stopped before its quiet phase: {wrong[0]}", tuple(wrong))
        if wrong:
            more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
            return Verdict.failing(self.name, wrong[0] + more, tuple(wrong))
        return Verdict.passing(self.name, f"every one of {len(orders)} orders paid exactly its shipped value")


@dataclass(frozen=True)
class OrdersSettled:
    """Per order, the three participants agree: reserved, charged and shipped, or none of them."""

    name: str = "orders_settled"

    def __call__(self, world: sandbox.World) -> Verdict:
        orders = _participants(world)
        if not orders:
            return Verdict.unknown(self.name, "no participant holds anything for any order")
        half = [f"{_show(o, e)}: {_state(e)}" for o, e in sorted(orders.items()) if _state(e).startswith("half")]
        if half and not quiet(world):
            return Verdict.unknown(self.name, f"the run stopped before its quiet phase: {half[0]}", tuple(half))
        if half:
            more = f" (and {len(half) - 1} more)" if len(half) > 1 else ""
            return Verdict.failing(self.name, half[0] + more, tuple(half))
        done = sum(_state(e) == "complete" for e in orders.values())
        return Verdict.passing(self.name, f"{done} orders complete, {len(orders) - done} hold nothing")


@dataclass(frozen=True)
class CustomersToldTheTruth:
    """What each customer was told is what happened: an order confirmed (201) is reserved, charged
    and shipped, and stays so; and no order a customer was told was refused (4xx) went through.

    A refusal names no order id, so the second half counts: the orders completed for a request
    (its product, quantity and address) that no confirmation accounts for are at most the requests
    like it whose answer the customer never got (a timeout, a 5xx: either outcome is true then)."""

    name: str = "customers_told_the_truth"

    def __call__(self, world: sandbox.World) -> Verdict:
        orders = _participants(world)
        wrong, seen, confirmed = [], 0, set()
        unsure: dict[tuple, int] = {}  # per request: how many customers got no answer (either end is true)
        refused: dict[tuple, list] = {}  # per request: the refusals customers got
        for invoke, done in world.history.pairs():
            if invoke.f != "place-order":
                continue
            request = invoke.value if isinstance(invoke.value, dict) else {}
            what = (request.get("sku"), request.get("qty"), request.get("address"))
            if done is None or done.type == "info":
                unsure[what] = unsure.get(what, 0) + 1
                continue
            seen += 1
            if done.type == "fail":
                refused.setdefault(what, []).append(done)
                continue
            order = done.value.get("id") if isinstance(done.value, dict) else None
            confirmed.add(order)
            e = orders.get(order)
            if e is None or _state(e) != "complete":
                state = "nothing at all" if e is None else _state(e)
                wrong.append(f"t={done.time:.4f} {done.process} was told order {order} is confirmed, but it is {state}")
        went_through: dict[tuple, list[OrderId]] = {}
        for order, e in sorted(orders.items()):
            if _state(e) == "complete" and order not in confirmed:
                went_through.setdefault(e["what"], []).append(order)
        for what, told in sorted(refused.items(), key=lambda item: item[1][0].time):
            extra = len(went_through.get(what, ())) - unsure.get(what, 0)
            for op, order in zip(told[:max(extra, 0)], went_through.get(what, ())):
                status = op.value.get("status") if isinstance(op.value, dict) else "?"
                sku, qty, address = what
                wrong.append(f"t={op.time:.4f} {op.process} was told its order for {qty} x {sku} to {address!r} was "
                             f"refused ({status}), but such an order went through: {_show(order, orders[order])}")
        if not seen:
            return Verdict.unknown(self.name, "no customer got an answer")
        if wrong:
            more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
            return Verdict.failing(self.name, wrong[0] + more, tuple(wrong))
        return Verdict.passing(self.name, f"all {seen} answers customers got were true")


def invariants() -> list:
    """The lab's checkers, in the order a failure is reported."""
    return [
        saga_completed_or_compensated(steps=("reserve", "charge", "ship")),
        MoneyConserved(),
        OrdersSettled(),
        stock_conserved("inventory-db", "stock", "reservations", initial=INITIAL_STOCK),
        CustomersToldTheTruth(),
    ]


# --- works in staging ----------------------------------------------------------------


def happy_path(create_app: AppFactory) -> None:
    """The "works in staging" test: FastAPI's TestClient, no sandbox world, no faults.

    The orchestrator calls in-process participants (``sandbox.connect_local``); one order goes
    through: 201, and the stock is reserved, the card charged once, the parcel booked.
    """
    # Staging: a quiet carrier (never busy), so that the happy path is the same on every run.
    inventory, payments, shipping = create_inventory_app(), create_payments_app(), create_shipping_app(busy=0.0)
    orders = create_app()
    sandbox.connect_local(orders, inventory=inventory, payments=payments, shipping=shipping)
    with TestClient(inventory) as inv, TestClient(orders) as tc:
        _stock_local(inventory)
        request = {"customer": "ada", "sku": "lamp", "qty": 2, "card": GOOD_CARD, "address": ADDRESSES[0]}
        r = tc.post("/orders", json=request)
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["sku"] == "lamp" and order["qty"] == 2 and "id" in order, order
        assert inv.get("/stock/lamp").json()["qty"] == INITIAL_STOCK["lamp"] - 2
    charges = list(_local_rows(payments, "payments-db", "charges").values())
    assert [c["amount"] for c in charges] == [2 * PRICES["lamp"]], charges
    assert [c["order_id"] for c in charges] == [order["id"]], charges
    shipments = list(_local_rows(shipping, "shipping-db", "shipments").values())
    assert [s["order_id"] for s in shipments] == [order["id"]], shipments


def _stock_local(inventory: FastAPI) -> None:
    stores = getattr(inventory.state, "chaos_dojo_databases", None)
    if stores is None:
        stores = inventory.state.chaos_dojo_databases = {}
    if "inventory-db" not in stores:
        from sandbox.deps import _LocalWorld

        stores["inventory-db"] = sandbox.Store(_LocalWorld, "inventory-db", lock_timeout=2.0)
    stores["inventory-db"].load("stock", {sku: {"sku": sku, "qty": n} for sku, n in INITIAL_STOCK.items()})


def _local_rows(app: FastAPI, db: str, table: str) -> dict:
    stores = getattr(app.state, "chaos_dojo_databases", {})
    return stores[db].rows(table) if db in stores else {}


# --- prove it --------------------------------------------------------------------------


def check(
    create_app: AppFactory, bank: str = "visible", *, secret: str | None = None, shrink: bool = True,
    workers: int | None = None,
    only: tuple[str, ...] = (),
) -> Counterexample | Passed:
    """Check ``create_app`` on a seed bank ("visible": the self-checks; "hidden": grading), each seed
    under its nemesis schedule, then under every ADVERSARIAL schedule (both banks); return the first
    Counterexample, or a Passed summary of every run.

    Example::

        result = check(solution.create_app, "hidden")
        assert not result.found and result.ok, result
    """
    size = VISIBLE if bank == "visible" else HIDDEN
    return check_bank(LAB, bank, size, scenario(create_app), invariants(), schedules, ADVERSARIAL,
                      secret=secret, shrink=shrink, workers=workers, only=only)


#: What a grade cell runs: ``grade(create_app, *invariant_names)`` on the hidden bank (see ``autograder.labs.grader``).
grade = grader(check, lab=LAB)

#: The graded parts, by the grade cell's nbgrader id: the invariants each checks. A grader that does not run the
#: learner's notebook (``dojo grade``) reads the parts from here; a test holds the notebook's grade cells to it.
PARTS: dict[str, tuple[str, ...]] = {
    "saga-completed-or-compensated": ("saga_completed_or_compensated",),
    "money-conserved-and-truthful": ("money_conserved", "customers_told_the_truth"),
    "stock-conserved-and-orders-settled": ("stock_conserved", "orders_settled"),
}

