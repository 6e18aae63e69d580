"""The order system an AI assistant writes in a minute, and what production does to it.

The prompt was: *"a distributed order service with inventory checks, payment
processing, and email confirmation, using Kafka for events"*. What came back is
four small FastAPI services, each with its own database:

==============  ===================  ==================================================
service         database             what it does
==============  ===================  ==================================================
orders          orders-db            ``POST /orders``: check stock, reserve it, charge
                                     the card, save the order, publish
                                     ``order-placed``; ``GET /orders/{id}``
inventory       inventory-db         stock of each SKU in three warehouses;
                                     ``GET /stock/{sku}``, ``POST /reservations``
payments        payments-db          ``POST /charges``: charge a card, record the charge
notifications   notifications-db     consumes ``order-placed``, "sends" an email
==============  ===================  ==================================================

The code is clean, commented and correct on the happy path: one customer, a calm
network, every order goes through. It is also naive in three ways that only show
under load and faults, exactly the ways the course teaches:

* **Retry without an idempotency key.** The orders service calls payments with a
  short timeout and retries on timeout. A reply that is slow or lost is not a
  charge that failed: the retry charges the card a second time.
* **Check-then-act.** Orders asks inventory whether there is stock, then asks for a
  reservation; inventory reads the warehouse levels, picks one, then reads and
  writes the level again, with no lock and no transaction. Two customers buying
  the last lamp at the same moment both get it, and the warehouse goes negative.
* **No compensation.** When the payment fails after the stock was reserved, the
  reservation is never released (and a charge that did go through is never
  refunded).

Run it, from Python or from the terminal (``dojo run order-system --seed 7``)::

    from sandbox.examples import order_system

    report = order_system.run(seed=7)
    print(report)             # counts, charges, stock, and the facts that went wrong
    report.double_charged     # {'ord-...': 2, ...}
    report.negative_stock     # (('lamp', 'central', -1), ...)

``build_world(seed)`` gives the world before it runs, to look inside or to add
faults of your own. Each service is an ordinary FastAPI app built by its factory
(``create_orders_app()``...), so it also serves under FastAPI's TestClient.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

import sandbox
from sandbox.checkers import (
    Invariant,
    money_conserved,
    no_double_charge,
    stock_never_negative,
)
from sandbox.explore import Scenario
from sandbox.faults import Schedule
from sandbox.faults import nemesis as draw_nemesis

SCENARIO = "order-system"

#: The catalogue: price of each SKU, in cents.
PRICES: dict[str, int] = {"lamp": 2_500, "kettle": 3_900, "teapot": 1_800, "desk": 14_900}
WAREHOUSES = ("central", "east", "west")

# --- the generated services ------------------------------------------------------------
# Everything from here to "the world" is the code as the assistant wrote it.

#: How long the orders service waits for payments before it retries.
PAYMENT_TIMEOUT = 0.25
PAYMENT_ATTEMPTS = 3
#: How long the card network takes to approve a charge.
CARD_NETWORK_TIME = 0.08


class OrderRequest(BaseModel):
    """What a customer sends to place an order."""

    customer: str
    sku: str
    qty: int = Field(1, ge=1, le=10)
    card: str = Field(min_length=12, description="card number")


class Order(BaseModel):
    """A placed (paid) order."""

    id: str
    customer: str
    sku: str
    qty: int
    amount: int  # cents
    charge_id: str
    status: str = "confirmed"


class ReservationRequest(BaseModel):
    """Hold ``qty`` units of ``sku`` for an order."""

    order_id: str
    sku: str
    qty: int = Field(ge=1)


class Reservation(BaseModel):
    """Units held for an order, and the warehouse they will ship from."""

    order_id: str
    sku: str
    warehouse: str
    qty: int


class StockLevel(BaseModel):
    """How many units a warehouse has."""

    qty: int = Field(ge=0)


class ChargeRequest(BaseModel):
    """Charge ``amount`` cents to a card, for an order."""

    order_id: str
    amount: int = Field(gt=0)  # cents
    card: str


class Charge(BaseModel):
    """A charge the card network accepted: the money has moved."""

    id: str
    order_id: str
    amount: int
    card_last4: str
    status: str = "succeeded"


def new_id(prefix: str) -> str:
    """A short unique id such as ``ord-5f2a9c01be``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def charge_card(http: sandbox.HttpClient, order_id: str, amount: int, card: str) -> dict:
    """Charge the card through the payments service, retrying if it is slow."""
    for _attempt in range(PAYMENT_ATTEMPTS):
        try:
            r = await http.post(
                "http://payments/charges",
                json={"order_id": order_id, "amount": amount, "card": card},
                timeout=PAYMENT_TIMEOUT,
            )
        except httpx.TimeoutException:
            continue  # payments is slow right now: try again
        if r.status_code == 201:
            return r.json()
        raise HTTPException(402, f"payment declined: {r.text}")
    raise HTTPException(502, "payment service unavailable, please try again later")


def create_orders_app() -> FastAPI:
    """The orders service: the front door that places orders."""
    app = FastAPI(title="orders")

    @app.post("/orders", status_code=201)
    async def place_order(
        req: OrderRequest,
        db: sandbox.Database = Depends(sandbox.database("orders-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        producer: sandbox.Producer = Depends(sandbox.producer),
    ) -> Order:
        if req.sku not in PRICES:
            raise HTTPException(404, f"unknown product {req.sku!r}")

        # 1. Make sure it is in stock before we do anything else.
        r = await http.get(f"http://inventory/stock/{req.sku}")
        if r.status_code != 200 or r.json()["available"] < req.qty:
            raise HTTPException(409, f"{req.sku} is out of stock")

        # 2. Reserve the stock for this order.
        order_id = new_id("ord")
        r = await http.post(
            "http://inventory/reservations", json={"order_id": order_id, "sku": req.sku, "qty": req.qty}
        )
        if r.status_code != 201:
            raise HTTPException(409, f"{req.sku} is out of stock")

        # 3. Take the payment.
        amount = PRICES[req.sku] * req.qty
        charge = await charge_card(http, order_id, amount, req.card)

        # 4. Save the order.
        order = Order(
            id=order_id, customer=req.customer, sku=req.sku, qty=req.qty, amount=amount, charge_id=charge["id"]
        )
        await db.put("orders", order.id, order.model_dump())

        # 5. Tell the rest of the system (emails, analytics...).
        await producer.send("order-placed", order.model_dump(), key=order.id)
        return order

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, db: sandbox.Database = Depends(sandbox.database("orders-db"))) -> Order:
        order = await db.get("orders", order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id!r}")
        return Order(**order)

    return app


def create_inventory_app() -> FastAPI:
    """The inventory service: stock of every product in three warehouses."""
    app = FastAPI(title="inventory")

    async def adjust_stock(db: sandbox.Database, sku: str, warehouse: str, delta: int) -> int:
        """Add ``delta`` units (negative to take some) to one warehouse; return the new level."""
        key = f"{sku}/{warehouse}"
        row = await db.get("stock", key, {"sku": sku, "warehouse": warehouse, "qty": 0})
        row["qty"] += delta
        await db.put("stock", key, row)
        return row["qty"]

    @app.get("/stock/{sku}")
    async def get_stock(sku: str, db: sandbox.Database = Depends(sandbox.database("inventory-db"))) -> dict:
        rows = await db.scan("stock", prefix=f"{sku}/")
        if not rows:
            raise HTTPException(404, f"unknown product {sku!r}")
        warehouses = {row.value["warehouse"]: row.value["qty"] for row in rows}
        return {"sku": sku, "available": sum(warehouses.values()), "warehouses": warehouses}

    @app.put("/stock/{sku}/{warehouse}")
    async def set_stock(
        sku: str, warehouse: str, level: StockLevel, db: sandbox.Database = Depends(sandbox.database("inventory-db"))
    ) -> dict:
        """Set a warehouse's stock level (used when a delivery arrives)."""
        row = {"sku": sku, "warehouse": warehouse, "qty": level.qty}
        await db.put("stock", f"{sku}/{warehouse}", row)
        return row

    @app.post("/reservations", status_code=201)
    async def reserve(
        req: ReservationRequest, db: sandbox.Database = Depends(sandbox.database("inventory-db"))
    ) -> Reservation:
        # Ship from the first warehouse that has enough of it.
        for row in await db.scan("stock", prefix=f"{req.sku}/"):
            if row.value["qty"] >= req.qty:
                warehouse = row.value["warehouse"]
                await adjust_stock(db, req.sku, warehouse, -req.qty)
                reservation = Reservation(order_id=req.order_id, sku=req.sku, warehouse=warehouse, qty=req.qty)
                await db.put("reservations", req.order_id, reservation.model_dump())
                return reservation
        raise HTTPException(409, f"no warehouse has {req.qty} x {req.sku}")

    return app


def create_payments_app() -> FastAPI:
    """The payments service: charges cards and keeps a record of every charge."""
    app = FastAPI(title="payments")

    @app.post("/charges", status_code=201)
    async def create_charge(
        req: ChargeRequest,
        db: sandbox.Database = Depends(sandbox.database("payments-db")),
    ) -> Charge:
        # Ask the card network to move the money (simulated: it just takes a while).
        await sandbox.sleep(CARD_NETWORK_TIME)
        charge = Charge(id=new_id("ch"), order_id=req.order_id, amount=req.amount, card_last4=req.card[-4:])
        await db.put("charges", charge.id, charge.model_dump())
        return charge

    return app


def create_notifications_app() -> FastAPI:
    """The notifications service: emails a confirmation for every placed order."""
    app = FastAPI(title="notifications")

    @sandbox.consumer(app, "order-placed", group="notifications")
    async def send_confirmation(
        message: sandbox.Message,
        db: sandbox.Database = Depends(sandbox.database("notifications-db")),
    ) -> None:
        order = message.value
        email = {
            "to": f"{order['customer']}@example.com",
            "subject": f"Your order {order['id']} is confirmed",
            "order_id": order["id"],
        }
        # "Send" it: our mail provider is simulated by recording the email.
        await db.put("emails", new_id("email"), email)

    @app.get("/emails/{customer}")
    async def inbox(customer: str, db: sandbox.Database = Depends(sandbox.database("notifications-db"))) -> list[dict]:
        return [row.value for row in await db.scan("emails") if row.value["to"] == f"{customer}@example.com"]

    return app


# --- the world ---------------------------------------------------------------------------
# From here on: the datacenter the services run in, the customers, and the report.

#: The services by name, each with the factory that builds its app.
SERVICES: dict[str, Callable[[], FastAPI]] = {
    "orders": create_orders_app,
    "inventory": create_inventory_app,
    "payments": create_payments_app,
    "notifications": create_notifications_app,
}
#: Opening stock: few units, spread over the warehouses, so that customers compete.
INITIAL_STOCK: dict[str, dict[str, int]] = {
    "lamp": {"central": 2, "east": 2, "west": 1},
    "kettle": {"central": 2, "east": 1, "west": 1},
    "teapot": {"central": 1, "east": 2, "west": 1},
    "desk": {"central": 1, "east": 1, "west": 1},
}
#: Stripe's test card numbers (every charge succeeds).
TEST_CARDS = ("4242424242424242", "5555555555554444", "378282246310005")
#: The shop opens (the clerk has stocked the shelves by then) at SHOP_OPENS seconds.
SHOP_OPENS = 0.5
#: Customers arrive during the first ARRIVAL_WINDOW seconds, then pause THINK_TIME on average between orders.
ARRIVAL_WINDOW = 0.15
THINK_TIME = 0.15
#: How long a customer's browser waits for the orders service before it tries again (once).
CLIENT_TIMEOUT = 2.0
#: The inventory database is the busy one (every product page reads stock): seconds per query.
INVENTORY_DB_LATENCY = 0.004
#: The orders <-> payments link on a bad day (see ``add_network_trouble``), both ways.
SLOW_LINK = {"latency": 0.02, "jitter": 0.02, "distribution": "pareto", "loss": 0.01}
#: The share of orders -> payments requests that the load balancer delivers twice.
SLOW_LINK_DUPLICATES = 0.01
#: Virtual seconds the world runs on after the last customer is done, for emails to go out.
SETTLE_TIME = 2.0
MAX_TIME = 120.0


def build_world(
    seed: int,
    *,
    clients: int = 8,
    orders_per_client: int = 5,
    replicas: int = 2,
    faults: bool = True,
    tracing: bool = False,
    clerk: Callable[[sandbox.Client], Awaitable[None]] | None = None,
    **world_options: Any,
) -> sandbox.World:
    """Build the order system's world for ``seed``, ready to run.

    Four services (``replicas`` replicas each) with their databases, a warehouse
    clerk who stocks the shelves at t=0, and ``clients`` customers who come in
    when the shop opens and each place ``orders_per_client`` orders of random
    products. With ``faults`` the link
    between orders and payments is slow, lossy and duplicates a few requests (see
    ``add_network_trouble``). ``clerk`` replaces the clerk who stocks the shelves (the
    benchmarks' deep shelves); ``world_options`` go to ``sandbox.World`` (``wall_limit``,
    ``keep_events``, ``keep_spans`` for a long run).

    Example::

        world = build_world(3, clients=2, faults=False)
        world.run(until=10)
        world.database("inventory-db").rows("stock")

    Raises:
        sandbox.BadSeedError: ``seed`` is not a non-negative int.
        sandbox.InvalidParameterError: ``clients`` or ``orders_per_client`` is not a whole number >= 1.
    """
    for name, value in (("clients", clients), ("orders_per_client", orders_per_client)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise sandbox.InvalidParameterError(f"{name}={value!r}: use a whole number >= 1")
    world = sandbox.World(seed=seed, tracing=tracing, **world_options)
    for db in ("orders-db", "payments-db", "notifications-db"):
        world.add_database(db)
    world.add_database("inventory-db", latency=INVENTORY_DB_LATENCY, jitter=INVENTORY_DB_LATENCY / 2)
    # The services keep no state at module level, so their replicas can share this
    # module instead of each executing a fresh copy of it (which is slow: ~20 ms each).
    for name, factory in SERVICES.items():
        world.add_service(name, factory, replicas=replicas, isolate_module=False)
    world.broker.create_topic("order-placed", partitions=3)

    world.add_client("clerk", clerk if clerk is not None else stock_shelves)
    for i in range(clients):
        world.add_client(f"customer-{i}", shopper, orders_per_client, start=SHOP_OPENS)
    if faults:
        add_network_trouble(world)
    return world


def build_calm_world(seed: int, *, clients: int = 8, orders_per_client: int = 5) -> sandbox.World:
    """``build_world`` on a calm network: the faults are left to a schedule (see ``scenario``)."""
    return build_world(seed, clients=clients, orders_per_client=orders_per_client, faults=False)


#: The order system as a scenario to explore under fault schedules (``sandbox.explore``):
#: a calm network, eight customers placing five orders each; shrinking tries fewer.
scenario = Scenario(SCENARIO, build_calm_world, {"clients": 8, "orders_per_client": 5}, settle=SETTLE_TIME, limit=MAX_TIME)


def nemesis(seed: int) -> Schedule:
    """The faults ``dojo explore order-system`` draws for ``seed``: three of delay, loss,
    duplicate, partition, kill and pause, between orders, payments and inventory, in the first
    three seconds (while the customers shop)."""
    return draw_nemesis(seed, ["orders", "payments", "inventory"], count=3, within=3.0, duration=(0.2, 1.5))


def invariants() -> dict[str, Invariant]:
    """The promises the order system breaks, by the name ``dojo explore --find`` knows them by."""
    return {
        "double-charge": no_double_charge(),
        "negative-stock": stock_never_negative(),
        "money": money_conserved(),
    }


def add_network_trouble(world: sandbox.World) -> None:
    """Make the network between orders and payments behave like a bad day in production.

    Payments sits in another zone behind a busy load balancer: 20 ms away with a
    heavy (Pareto) tail, so that now and then a request or its reply takes longer
    than the orders service waits; 1% of messages lost each way; and 1% of
    requests delivered twice (the balancer retries on its own). There is no fault
    schedule yet: this sets the state of every orders <-> payments link directly
    (``world.network.link(src, dst)``), for the whole run.
    """
    for order_node in world.services["orders"].instances:
        for payment_node in world.services["payments"].instances:
            for src, dst in ((order_node.name, payment_node.name), (payment_node.name, order_node.name)):
                link = world.network.link(src, dst)
                for field, value in SLOW_LINK.items():
                    setattr(link, field, value)
            world.network.link(order_node.name, payment_node.name).duplicate = SLOW_LINK_DUPLICATES


async def stock_shelves(client: sandbox.Client) -> None:
    """The warehouse clerk: records the opening stock through the inventory API."""
    for sku, levels in INITIAL_STOCK.items():
        for warehouse, qty in levels.items():
            async with client.operation("set-stock", {"sku": sku, "warehouse": warehouse, "qty": qty}) as op:
                r = await client.http.put(f"http://inventory/stock/{sku}/{warehouse}", json={"qty": qty})
                if r.status_code != 200:
                    op.fail(r.json())


async def shopper(client: sandbox.Client, orders: int) -> None:
    """One customer: arrives, places ``orders`` orders of random products, one at a time.

    Each order is a ``place-order`` operation in the history: ``ok`` with the order,
    ``fail`` with the refusal, ``info`` if the browser never heard back. On a
    timeout the browser tries once more, as a customer pressing "Buy" again would.
    """
    card = client.random.choice(TEST_CARDS)
    await client.sleep(client.random.uniform(0.0, ARRIVAL_WINDOW))
    for _ in range(orders):
        request = {
            "customer": client.name,
            "sku": client.random.choice(sorted(PRICES)),
            "qty": client.random.choice((1, 1, 1, 2)),
            "card": card,
        }
        async with client.operation("place-order", request) as op:
            r = await _post_order(client, request)
            if r.status_code == 201:
                op.ok(r.json())
            else:
                op.fail({"status": r.status_code, "detail": r.text})
        await client.sleep(client.random.expovariate(1.0 / THINK_TIME))


async def _post_order(client: sandbox.Client, request: dict) -> sandbox.Response:
    try:
        return await client.http.post("http://orders/orders", json=request, timeout=CLIENT_TIMEOUT)
    except sandbox.RequestTimeout:
        return await client.http.post("http://orders/orders", json=request, timeout=CLIENT_TIMEOUT)


def run_to_completion(world: sandbox.World) -> sandbox.World:
    """Run until every customer is done, then ``SETTLE_TIME`` more for consumers to catch up."""
    return world.run(limit=MAX_TIME - world.now, settle=SETTLE_TIME)


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderCounts:
    """How the customers' orders ended, as the customers saw it, and the orders that exist."""

    ok: int
    failed: int
    unknown: int
    ids: tuple[str, ...]

    @property
    def attempted(self) -> int:
        return self.ok + self.failed + self.unknown


@dataclass(frozen=True)
class Report:
    """What one run of the order system did, and the facts that went wrong.

    ``charges`` maps each charged order id to the amounts charged (cents), one per
    charge; ``stock`` maps sku -> warehouse -> units left; ``facts`` are
    plain-language statements of what broke (empty when nothing did).
    ``str(report)`` is the terminal report, with the seed and a replay command.
    """

    seed: int
    clients: int
    orders_per_client: int
    replicas: int
    faults: bool
    orders: OrderCounts
    charges: Mapping[str, tuple[int, ...]]
    stock: Mapping[str, Mapping[str, int]]
    emails: int
    facts: tuple[str, ...]
    errors: tuple[str, ...]
    duration: float
    fingerprint: str
    spans: int = 0

    @property
    def double_charged(self) -> dict[str, int]:
        """Each order id charged more than once, with how many times."""
        return {order: len(amounts) for order, amounts in self.charges.items() if len(amounts) > 1}

    @property
    def negative_stock(self) -> tuple[tuple[str, str, int], ...]:
        """Each ``(sku, warehouse, level)`` whose level is below zero."""
        return tuple((sku, w, qty) for sku, levels in self.stock.items() for w, qty in levels.items() if qty < 0)

    @property
    def replay(self) -> str:
        """The command that replays this run exactly: ``dojo run ...``, or a Python call
        when the run used options the command line does not have."""
        if self.orders_per_client != 5 or self.replicas != 2:
            return (
                f"order_system.run(seed={self.seed}, clients={self.clients}, orders_per_client="
                f"{self.orders_per_client}, replicas={self.replicas}, faults={self.faults})"
            )
        parts = ["dojo", "run", SCENARIO, "--seed", str(self.seed)]
        if self.clients != 8:
            parts += ["--clients", str(self.clients)]
        if not self.faults:
            parts.append("--no-faults")
        return " ".join(parts)

    def __str__(self) -> str:
        o = self.orders
        charged = sum(len(a) for a in self.charges.values())
        total = sum(sum(a) for a in self.charges.values())
        faults = "network faults on" if self.faults else "no faults"
        lines = [
            f"Chaos Dojo - {SCENARIO} - seed {self.seed}",
            f"{self.clients} customers x {self.orders_per_client} orders, {self.replicas} replicas per service, "
            f"{faults}; {self.duration:.2f} s of virtual time",
            "",
            f"Orders   {o.ok} placed, {o.failed} refused, {o.unknown} unknown (the customer never heard back); "
            f"{len(o.ids)} saved",
            f"Charges  {charged} charges for {len(self.charges)} orders, {_money(total)} in total",
            f"         per order: {_per_order(self.charges)}",
            f"Emails   {self.emails} confirmations sent",
        ]
        if self.spans:
            lines.append(f"Tracing  {self.spans} spans recorded")
        lines += ["", "Stock left " + "".join(f"{w:>9}" for w in WAREHOUSES)]
        for sku, levels in self.stock.items():
            lines.append(f"  {sku:<9}" + "".join(f"{levels.get(w, 0):>9}" for w in WAREHOUSES))
        lines.append("")
        if self.facts:
            lines.append("What went wrong:")
            lines += [f"  ! {fact}" for fact in self.facts]
        else:
            lines.append("Nothing went wrong: no double charge, no negative stock, no service error.")
        lines += ["", f"Replay:  {self.replay}", f"Fingerprint: {self.fingerprint[:16]}"]
        return "\n".join(lines)


def _per_order(charges: Mapping[str, tuple[int, ...]]) -> str:
    """``"17 charged once, 1 charged twice"``: how many orders were charged how many times."""
    times: dict[int, int] = {}
    for amounts in charges.values():
        times[len(amounts)] = times.get(len(amounts), 0) + 1
    words = {1: "once", 2: "twice"}
    return ", ".join(f"{n} charged {words.get(k, f'{k} times')}" for k, n in sorted(times.items())) or "none"


def _money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def report(world: sandbox.World, *, clients: int, orders_per_client: int, replicas: int, faults: bool) -> Report:
    """Read what happened out of a world that ran (its history and its databases)."""
    outcomes = {"ok": 0, "fail": 0, "info": 0}
    for op in world.history:
        if op.f == "place-order" and op.type != "invoke":
            outcomes[op.type] += 1
    saved = world.database("orders-db").rows("orders")

    charges: dict[str, list[int]] = {}
    for charge in world.database("payments-db").rows("charges").values():
        charges.setdefault(charge["order_id"], []).append(charge["amount"])

    stock: dict[str, dict[str, int]] = {}
    for row in world.database("inventory-db").rows("stock").values():
        stock.setdefault(row["sku"], {})[row["warehouse"]] = row["qty"]
    reservations = world.database("inventory-db").rows("reservations")

    facts: list[str] = []
    for order_id, amounts in sorted(charges.items()):
        if len(amounts) > 1:
            facts.append(
                f"double charge: order {order_id} was charged {len(amounts)} times, "
                f"{_money(sum(amounts))} in total for a {_money(amounts[0])} order"
            )
    for sku, levels in sorted(stock.items()):
        for warehouse, qty in sorted(levels.items()):
            if qty < 0:
                facts.append(
                    f"negative stock: warehouse {warehouse} has {qty} x {sku}; "
                    f"it sold {-qty} more than it had"
                )
    for order_id, amounts in sorted(charges.items()):
        if order_id not in saved:
            facts.append(f"charged, no order: order {order_id} was charged {_money(sum(amounts))} but never saved")
    leaked = [r for oid, r in reservations.items() if oid not in saved]
    if leaked:
        units = sum(r["qty"] for r in leaked)
        facts.append(
            f"stock never released: {units} units reserved for {len(leaked)} orders that failed are still held"
        )
    errors = tuple(str(e) for e in world.errors)
    facts += [f"service error: {e}" for e in errors[:5]]
    if len(errors) > 5:
        facts.append(f"service error: ... and {len(errors) - 5} more")

    return Report(
        seed=world.seed,
        clients=clients,
        orders_per_client=orders_per_client,
        replicas=replicas,
        faults=faults,
        orders=OrderCounts(outcomes["ok"], outcomes["fail"], outcomes["info"], tuple(saved)),
        charges={order_id: tuple(amounts) for order_id, amounts in sorted(charges.items())},
        stock={sku: dict(sorted(levels.items())) for sku, levels in sorted(stock.items())},
        emails=len(world.database("notifications-db").rows("emails")),
        facts=tuple(facts),
        errors=errors,
        duration=world.now,
        fingerprint=world.fingerprint(),
        spans=len(world.spans()),
    )


def run(
    seed: int = 7,
    *,
    clients: int = 8,
    orders_per_client: int = 5,
    replicas: int = 2,
    faults: bool = True,
    tracing: bool = False,
) -> Report:
    """Build the order system for ``seed``, run it to completion, and report what happened.

    Example::

        report = run(seed=7)
        print(report)
        assert run(seed=7) == report      # a seed replays exactly

    Raises:
        sandbox.BadSeedError, sandbox.InvalidParameterError: see ``build_world``.
    """
    world = build_world(
        seed, clients=clients, orders_per_client=orders_per_client, replicas=replicas, faults=faults, tracing=tracing
    )
    run_to_completion(world)
    result = report(world, clients=clients, orders_per_client=orders_per_client, replicas=replicas, faults=faults)
    return result
