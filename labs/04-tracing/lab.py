"""Lab 04, tracing: an order flow over HTTP and Kafka, and the traces an on-call engineer needs.

A customer places an order (``POST /orders`` on the learner's ``orders`` service),
which saves it and publishes ``order-placed``; the fulfilment consumer (in the same
service, consumer group ``fulfilment``) reads it and calls two provided services over
HTTP: the ``warehouse`` picks the parcel, the ``courier`` books the delivery. Both are
slow now and then, and fail now and then. The sandbox records OpenTelemetry spans by
itself (HTTP client and server, database, producer, consumer: see ``sandbox.tracing``);
the learner's code adds its own spans, attributes and statuses.

The world (``build_world``):

==============  ===============  =======================================================
service         database         what it does
==============  ===============  =======================================================
orders          orders-db        the learner's code (2 replicas): ``POST /orders``, and
                                 the ``fulfilment`` consumer of ``order-placed``
warehouse                        ``POST /picks``: picks an order's parcel (regional
                                 stock rooms: ~40-80 ms; busy now and then, and on
                                 its first call while its cache loads: 503; more
                                 than ``MAX_PICK`` of an item in one parcel: 409)
courier                          ``POST /deliveries``: books the delivery (~10-30 ms;
                                 busy now and then: 503)
==============  ===============  =======================================================

One of the two (which one depends on the seed, see ``culprit``) is slow for one
region: 300-800 ms for each order shipped there; every customer ships at least
``SLOW_ORDERS`` of its orders there (``order_plan``), so the slowness is always there
to be seen. Finding which, from the traces, is the lab's graded answer
(``answer_is_right``). The provided services tag their own server spans with
``order.id``: that is how the checkers know which order a call belonged to, whatever
the learner's code does.

Every world also ends with a bulk order the warehouse refuses (409), placed by the
first customer once the faults have healed (``bulk_order``): a failure that no fault
can hide and no retry can undo, so every run shows how the service marks one.

After its last order each customer waits (at most ``DRAIN_WAIT`` seconds) until the
faults have healed, the ``fulfilment`` group has committed every message, every
request to the learner's service is answered and none of its own spans is open; then
the quiet phase (``SETTLE``) begins. So a run
ends with the work done, however long a backlog took, and what is still open then
was left open. What is checked (``invariants``):

* ``connected_traces()``: every trace is one tree rooted at a customer's request (the library's
  checker; a parent span lost with a crashed sender is excused);
* ``one_trace_per_order``: the warehouse's and courier's work for an order, and every
  span tagged with the order's id, is in the trace of the customer's request for it;
  and every order the service accepted has its fulfilment there (a call to the
  warehouse): a fulfilment that never ran, or ran outside the order's trace, leaves
  on-call nothing to follow;
* ``required_attributes``: every span that handles an order in the learner's service
  (the SERVER span of an accepted ``POST /orders``, the CONSUMER span of each
  ``order-placed`` message) carries ``order.id``, ``customer.id`` and
  ``order.region``, with the order's true values;
* ``every_span_ended``: every span the learner's code started was ended (a crash excuses
  the spans open on the crashed replica);
* ``failures_marked``: every dependency call that failed (an error answer or no answer)
  and was not retried successfully is marked: a span of the learner's enclosing the
  call (its own span or the SERVER/CONSUMER span) has status ERROR and records the
  exception (an ``exception`` event); and no span is marked ERROR in a handling
  where nothing failed (a false alarm).

Example::

    import generated, lab
    found = lab.check(generated.create_app)        # the visible bank
    print(found)                                   # the consumer starts traces of its own
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import FastAPI, HTTPException
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import StatusCode
from pydantic import BaseModel, Field

import sandbox
from autograder.labs import (
    REHOME_SEEDS,
    TestClient,
    alternative_names,
    check_bank,
    grade_cell,
    grader,
    load_module,
    mutant_names,
    service_factory,
)
from autograder.seeds import seed_bank
from sandbox.checkers import Verdict, connected_traces
from sandbox.checkers._common import crashes, plural, quiet
from sandbox.checkers.traces import (
    describe,
    ended,
    node_of,
    service_of,
    short_trace,
    started,
)
from sandbox.explore import Counterexample, Passed, Scenario
from sandbox.faults import Delay, Kill, Loss, Redelivery, Schedule, SlowStorage, nemesis

LAB = "04-tracing"
VISIBLE = 5
HIDDEN = 30
HERE = Path(__file__).resolve().parent

AppFactory = Callable[[], FastAPI]
OrderId = str
Dependency = str

#: What customers order, and where it ships.
SKUS = ("lamp", "kettle", "teapot", "desk")
REGIONS = ("north", "south", "east", "west")
#: The provided dependencies, and how long each takes on an ordinary request (seconds).
DEPENDENCIES: tuple[Dependency, ...] = ("warehouse", "courier")
BASE_LATENCY: dict[Dependency, tuple[float, float]] = {"warehouse": (0.04, 0.08), "courier": (0.01, 0.03)}
#: How long the culprit takes for an order to its slow region.
SLOW_LATENCY = (0.3, 0.8)
#: How often each dependency is too busy to answer (503).
BUSY: dict[Dependency, float] = {"warehouse": 0.05, "courier": 0.1}
#: The most of one item the warehouse packs in a parcel; it refuses (409) a pick of more.
MAX_PICK = 5
#: The quantity of the world's bulk order (see ``bulk_order``): more than MAX_PICK, within what the service takes.
BULK = 8
#: The attributes every span that handles an order must carry.
REQUIRED = ("order.id", "customer.id", "order.region")
TOPIC = "order-placed"
GROUP = "fulfilment"
#: How many of each customer's orders (at least) ship to the slow region: the culprit is slow in every
#: world, several times, so that the graded answer can always be read from the traces.
SLOW_ORDERS = 2
#: Customers arrive during the first ARRIVAL_WINDOW seconds and think THINK_TIME between orders.
ARRIVAL_WINDOW = 0.5
THINK_TIME = 0.5
CLIENT_TIMEOUT = 2.0
#: After its last order a customer waits at most this long for the fulfilment to catch up (a backlog
#: after a crash, redeliveries, slow orders): a fulfilment that never catches up is judged after it.
DRAIN_WAIT = 20.0
DRAIN_POLL = 0.1
#: The quiet phase, once the fulfilment has caught up: for the last answers and spans to come in.
SETTLE = 2.0
LIMIT = 60.0
FAULT_WINDOW = 1.5


def culprit(seed: int) -> tuple[Dependency, str]:
    """The dependency that is slow in the world of ``seed``, and the region it is slow for."""
    rng = random.Random(f"{LAB}/culprit/{seed}")
    return rng.choice(DEPENDENCIES), rng.choice(REGIONS)


def order_plan(seed: int, customers: int = 3, orders_per_customer: int = 5) -> list[list[dict[str, Any]]]:
    """The orders each customer of the world of ``seed`` places, in order: ``{"id", "customer", "sku",
    "qty", "region"}``. At least ``SLOW_ORDERS`` of each customer's orders (all, if it places fewer) ship
    to the slow region (``culprit(seed)``), the others anywhere. (The first customer then places
    ``bulk_order(seed, orders_per_customer)`` too.)

    Example::

        order_plan(7, customers=1, orders_per_customer=2)
        # [[{'id': 'ord-0-0', 'customer': 'customer-0', 'sku': 'lamp', 'qty': 1, 'region': 'east'}, ...]]
    """
    slow_region = culprit(seed)[1]
    plan = []
    for i in range(customers):
        rng = random.Random(f"{LAB}/orders/{seed}/{i}")
        regions = [rng.choice(REGIONS) for _ in range(orders_per_customer)]
        for n in rng.sample(range(orders_per_customer), min(SLOW_ORDERS, orders_per_customer)):
            regions[n] = slow_region
        plan.append([{"id": f"ord-{i}-{n}", "customer": f"customer-{i}", "sku": rng.choice(SKUS),
                      "qty": rng.choice((1, 1, 2)), "region": region} for n, region in enumerate(regions)])
    return plan


def bulk_order(seed: int, orders_per_customer: int = 5) -> dict[str, Any]:
    """The bulk order the first customer of the world of ``seed`` places after its ``orders_per_customer``
    planned orders, once the faults have healed: ``BULK`` items, more than the warehouse packs (409), to a
    region that is not the slow one. Every run has this failure, which no fault can hide and no retry undo.
    """
    rng = random.Random(f"{LAB}/bulk/{seed}")
    slow_region = culprit(seed)[1]
    return {"id": f"ord-0-{orders_per_customer}", "customer": "customer-0", "sku": rng.choice(SKUS), "qty": BULK,
            "region": rng.choice([r for r in REGIONS if r != slow_region])}


# --- loading the lab's modules (the folder's name has a dash, so they are loaded by path) ----


def load(name: str) -> ModuleType:
    """The module ``name`` of this lab (``"generated"``, ``"solution"``, ``"answer"``, ``"mutants/NAME"``,
    ``"alternatives/NAME"``), a fresh copy per replica in a world (see ``autograder.labs.load_module``)."""
    return load_module(HERE, name, "chaos_dojo_labs.lab04")


def mutants() -> list[str]:
    """The names of the partial fixes in ``mutants/``, sorted (``"mutants/NAME"``)."""
    return mutant_names(HERE)


def alternatives() -> list[str]:
    """The names of the correct fixes in ``alternatives/`` (unlike the reference in shape), sorted."""
    return alternative_names(HERE)


# --- the provided dependencies (not the learner's code) ---------------------------------


class PickRequest(BaseModel):
    """Pick the parcel of order ``order_id``: ``qty`` x ``sku``, from the stock room of ``region``."""

    order_id: str
    sku: str
    qty: int = Field(ge=1)
    region: str


class DeliveryRequest(BaseModel):
    """Book the delivery of order ``order_id`` to ``region``."""

    order_id: str
    region: str


def _tag(order_id: str) -> None:
    """Tag the current (SERVER) span with the order: the checkers' ground truth."""
    trace.get_current_span().set_attribute("order.id", order_id)


async def _work(name: Dependency, region: str, slow_region: str | None, busy: float) -> None:
    low, high = SLOW_LATENCY if region == slow_region else BASE_LATENCY[name]
    await sandbox.sleep(random.uniform(low, high))  # seeded by the world inside the sandbox
    if busy and random.random() < busy:
        raise HTTPException(503, f"the {name} is busy, try again shortly")


def create_warehouse_app(slow_region: str | None = None, busy: float = BUSY["warehouse"], cold: bool = True) -> FastAPI:
    """The warehouse: ``POST /picks``; slow for ``slow_region``, too busy (503) on a ``busy`` share of
    calls, and (``cold``) on the first call after it starts, while its stock cache loads; a pick of more
    than ``MAX_PICK`` of an item it refuses (409)."""
    app = FastAPI(title="warehouse")
    app.state.picks = []
    app.state.cold = cold

    @app.post("/picks", status_code=201)
    async def pick(req: PickRequest) -> dict:
        _tag(req.order_id)
        if app.state.cold:
            app.state.cold = False
            raise HTTPException(503, "the warehouse is loading its stock cache, try again shortly")
        if req.qty > MAX_PICK:
            raise HTTPException(409, f"cannot pick {req.qty} x {req.sku}: at most {MAX_PICK} of an item per parcel")
        await _work("warehouse", req.region, slow_region, busy)
        app.state.picks.append(req.order_id)
        return {"order_id": req.order_id, "picked": req.qty}

    return app


def create_courier_app(slow_region: str | None = None, busy: float = BUSY["courier"]) -> FastAPI:
    """The courier: ``POST /deliveries``; slow for ``slow_region``, too busy (503) on a ``busy`` share of calls."""
    app = FastAPI(title="courier")
    app.state.deliveries = []

    @app.post("/deliveries", status_code=201)
    async def deliver(req: DeliveryRequest) -> dict:
        _tag(req.order_id)
        await _work("courier", req.region, slow_region, busy)
        app.state.deliveries.append(req.order_id)
        return {"order_id": req.order_id, "tracking": f"trk-{req.order_id}"}

    return app


# --- the world -----------------------------------------------------------------------


class _OpenSpans(SpanProcessor):
    """Remembers the spans a node's SDK started and has not ended (for ``every_span_ended``), and
    which incarnation of its replica started each (a crash ends none of them)."""

    def __init__(self, world: sandbox.World) -> None:
        self.world = world
        self.open: dict[int, Any] = {}
        self.epochs: dict[int, int] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.open[span.context.span_id] = span
        self.epochs[span.context.span_id] = self.world.nodes[node_of(span)].epoch

    def on_end(self, span: Any) -> None:
        self.open.pop(span.context.span_id, None)
        self.epochs.pop(span.context.span_id, None)

    def in_flight(self) -> int:
        """How many spans are open on a replica that has not crashed since it started them."""
        nodes = self.world.nodes
        return sum(1 for span_id, span in self.open.items()
                   if nodes[node_of(span)].alive and nodes[node_of(span)].epoch == self.epochs[span_id])


class _CaughtUp:
    """Whether the learner's service has done all it was asked (the customers wait for it before the quiet
    phase): the faults have healed, the ``fulfilment`` group has committed every ``order-placed`` message,
    every request to the service has been answered (or died with its replica), and no span of the service's
    own is open on a live replica."""

    def __init__(self, world: sandbox.World, spans: _OpenSpans) -> None:
        self.world = world
        self.spans = spans
        self.mine = _learner_nodes(world)
        self.read = 0  # how much of the world's log has been read
        self.requests: dict[tuple, int] = {}  # (replica, caller, message id) -> requests not answered yet

    def healed(self) -> bool:
        return self.world.chaos is None or self.world.chaos.healed

    def requests_open(self) -> int:
        log = self.world.recorder.log
        for entry in log[self.read:]:
            kind, node = entry[1], entry[2] if len(entry) > 2 else None
            if node not in self.mine:
                continue
            if kind == "http.request":  # (t, kind, replica, caller, msg_id, method, path)
                self.requests[entry[2:5]] = self.requests.get(entry[2:5], 0) + 1
            elif kind == "http.response" and self.requests.get(entry[2:5]):  # (t, kind, replica, caller, msg_id, status)
                self.requests[entry[2:5]] -= 1
            elif kind == "node.crash":
                self.requests = {key: n for key, n in self.requests.items() if key[0] != node}
        self.read = len(log)
        return sum(self.requests.values())

    def __call__(self) -> bool:
        return (self.healed() and self.world.broker.lag(GROUP, TOPIC) == 0 and self.requests_open() == 0
                and self.spans.in_flight() == 0)


#: Where build_world leaves the tracker of the spans open on the learner's replicas: on the world's tracing
#: set-up, which is made per world and travels with it.
_TRACKER = "_lab04_open_spans"


def build_world(
    seed: int, create_app: AppFactory, *, customers: int = 3, orders_per_customer: int = 5, replicas: int = 2
) -> sandbox.World:
    """The datacenter for ``seed``, with tracing on: the learner's ``orders`` (``replicas``), the
    ``warehouse`` and the ``courier`` (one of them slow for one region: ``culprit(seed)``), the
    ``order-placed`` topic, and ``customers`` customers placing ``orders_per_customer`` orders each.

    Example::

        world = build_world(3, solution.create_app)
        world.run(settle=SETTLE)
        trace_waterfall(world, slow_traces(world)[0])
    """
    slow, region = culprit(seed)
    world = sandbox.World(seed=seed, tracing=True)
    world.add_database("orders-db")
    world.add_service("orders", create_app, replicas=replicas)
    world.add_service("warehouse", lambda: create_warehouse_app(region if slow == "warehouse" else None),
                      isolate_module=False)
    world.add_service("courier", lambda: create_courier_app(region if slow == "courier" else None),
                      isolate_module=False)
    world.broker.create_topic(TOPIC, partitions=2)
    tracker = _OpenSpans(world)
    for instance in world.service("orders").instances:
        world.tracing.provider(instance.name).add_span_processor(tracker)
    setattr(world.tracing, _TRACKER, tracker)

    caught_up = _CaughtUp(world, tracker)
    for i, orders in enumerate(order_plan(seed, customers, orders_per_customer)):
        last = [bulk_order(seed, orders_per_customer)] if i == 0 else []
        world.add_client(f"customer-{i}", customer, orders, last, caught_up.healed, caught_up)
    return world


async def customer(
    client: sandbox.Client, orders: Sequence[dict[str, Any]], after_faults: Sequence[dict[str, Any]] = (),
    healed: Callable[[], bool] | None = None, caught_up: Callable[[], bool] | None = None,
) -> None:
    """One customer placing ``orders`` (see ``order_plan``), one at a time, each with an id of the
    customer's choosing: ``place-order`` in the history is ``ok`` (201), ``fail`` (4xx) or ``info``
    (unknown). Then, once ``healed()``, the ``after_faults`` orders (``bulk_order``); then it waits
    until ``caught_up()``: the run's quiet phase starts once the service has done its work. Each
    wait polls, for at most ``DRAIN_WAIT`` seconds."""

    async def until(condition: Callable[[], bool] | None) -> None:
        for _ in range(round(DRAIN_WAIT / DRAIN_POLL) if condition is not None else 0):
            if condition():
                return
            await client.sleep(DRAIN_POLL)

    async def place(request: dict[str, Any]) -> None:
        async with client.operation("place-order", request) as op:
            try:
                r = await client.http.post("http://orders/orders", json=request, timeout=CLIENT_TIMEOUT)
            except sandbox.RequestTimeout:
                op.info(error="no answer")
            else:
                op.answered(r)
        await client.sleep(client.random.expovariate(1.0 / THINK_TIME))

    await client.sleep(client.random.uniform(0.0, ARRIVAL_WINDOW))
    for request in orders:
        await place(request)
    if after_faults:
        await until(healed)
        for request in after_faults:
            await place(request)
    await until(caught_up)


def scenario(create_app: AppFactory) -> Scenario:
    """The lab as a scenario to explore: three customers x five orders; shrinking tries fewer."""
    create_app = service_factory(create_app)

    def build(seed: int, customers: int = 3, orders_per_customer: int = 5) -> sandbox.World:
        return build_world(seed, create_app, customers=customers, orders_per_customer=orders_per_customer)

    name = f"{LAB}/{getattr(create_app, '__module__', '?')}.{getattr(create_app, '__qualname__', '?')}"
    return Scenario(name, build, {"customers": 3, "orders_per_customer": 5}, settle=SETTLE, limit=LIMIT)


def schedules(seed: int) -> Schedule:
    """The lab's nemesis for ``seed``: two faults on the learner's service (a replica killed and
    restarted, its links delayed or lossy) and redelivery in the ``fulfilment`` group (a lost
    commit: the messages since the last commit come again, and must continue their traces)."""
    drawn = nemesis(seed, ["orders"], kinds=("kill", "delay", "loss"), count=2, within=FAULT_WINDOW,
                    duration=(0.2, 0.8))
    rng = random.Random(f"{LAB}/redelivery/{seed}")
    start = round(rng.uniform(0.0, FAULT_WINDOW), 3)
    redelivery = Redelivery(GROUP, probability=round(rng.uniform(0.2, 0.6), 2), start=start,
                            duration=round(rng.uniform(0.5, 1.5), 3))
    return Schedule(sorted([*drawn, redelivery], key=lambda f: f.start))


#: Hand-written schedules that hit the known failure modes of tracing exactly.
ADVERSARIAL: list[Schedule] = [
    # Every commit lost for a while: each message is handled twice or more; each time in its order's trace.
    Schedule([Redelivery(GROUP, probability=1.0, start=0.2, duration=1.0)]),
    # The courier's and warehouse's answers get lost: calls time out (an error without an answer).
    Schedule([Loss("orders", peer=("warehouse", "courier"), probability=0.5, direction="from", start=0.1,
                   duration=1.5)]),
    # Dependencies slower than any timeout for a while, then a replica killed mid-flight.
    Schedule([
        Delay("orders", peer=("warehouse", "courier"), latency=1.2, jitter=0.1, start=0.3, duration=0.8),
        Kill("orders", mode="one", start=0.7, restart_after=0.3),
    ]),
    # A slow database: every request waits on its save, so requests on one replica overlap across
    # the await (whatever a request keeps outside its own context is overwritten by the next).
    Schedule([SlowStorage("orders-db", latency=0.2, start=0.0, duration=1.0)]),
]


# --- the invariants ------------------------------------------------------------------


def _learner_nodes(world: sandbox.World) -> set[str]:
    return {i.name for i in world.service("orders").instances}


def _orders(world: sandbox.World) -> dict[OrderId, dict[str, Any]]:
    """Every order a customer asked for (whatever the answer), by id: the request as sent."""
    return {op.value["id"]: op.value for op in world.history
            if op.f == "place-order" and op.type == "invoke" and isinstance(op.value, dict)}


def _accepted(world: sandbox.World) -> dict[OrderId, float]:
    """The orders the service accepted (a customer's ``place-order`` completed ``ok``), with when."""
    asked: dict[str, OrderId] = {}
    out: dict[OrderId, float] = {}
    for op in world.history:
        if op.f != "place-order":
            continue
        if op.type == "invoke":
            asked[op.process] = op.value["id"]
        elif op.type == "ok" and op.process in asked:
            out[asked[op.process]] = op.time
    return out


def _client_traces(world: sandbox.World, spans: list) -> dict[OrderId, int]:
    """The trace id of each order's request: a customer's n-th request is its n-th CLIENT span."""
    invokes: dict[str, list[OrderId]] = {}
    for op in world.history:
        if op.f == "place-order" and op.type == "invoke":
            invokes.setdefault(op.process, []).append(op.value["id"])
    sent: dict[str, list] = {}
    for span in spans:
        if span.kind.name == "CLIENT" and node_of(span) in world.clients:
            sent.setdefault(node_of(span), []).append(span)
    out = {}
    for process, ids in invokes.items():
        node = process.split("#")[0].split("/")[0]
        for order, span in zip(ids, sorted(sent.get(node, []), key=lambda s: s.start_time)):
            out[order] = span.context.trace_id
    return out


def _ground_truth_spans(spans: list) -> list:
    """The SERVER spans of the provided dependencies, each tagged with its order's id."""
    return [s for s in spans if s.kind.name == "SERVER" and service_of(s) in DEPENDENCIES and "order.id" in s.attributes]


def _roots(spans: list) -> dict[int, Any]:
    return {s.context.trace_id: s for s in spans if s.parent is None}


def _summary(name: str, wrong: list[str]) -> Verdict:
    more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
    return Verdict.failing(name, wrong[0] + more, tuple(wrong))




@dataclass(frozen=True)
class OneTracePerOrder:
    """Each order is one trace: the warehouse's and the courier's work for it, and every span tagged
    with its id, are in the trace of the customer's ``POST /orders`` for it; and every order the
    service accepted has its fulfilment in that trace (the service's call to the warehouse)."""

    name: str = "one_trace_per_order"

    def __call__(self, world: sandbox.World) -> Verdict:
        spans = world.spans()
        traces = _client_traces(world, spans)
        truth = _ground_truth_spans(spans)
        unfulfilled = self._unfulfilled(world, spans, traces)
        if not truth and not unfulfilled:
            return Verdict.unknown(self.name, "no order reached the warehouse or the courier: nothing to follow")
        roots = _roots(spans)
        wrong, seen = [], set()
        for span in sorted((*truth, *(s for s in spans if "order.id" in s.attributes and s not in truth)),
                           key=lambda s: s.start_time):
            order = span.attributes["order.id"]
            expected = traces.get(order)
            if expected is None or span.context.trace_id == expected:
                seen.add(order)
                continue
            root = roots.get(span.context.trace_id)
            where = f"; that trace starts at {describe(root)}" if root is not None else ""
            wrong.append(f"order {order}: the customer's request is trace {short_trace(expected)}, but "
                         f"{describe(span)} for it is in another trace{where}")
        if wrong:
            return _summary(self.name, wrong)
        if unfulfilled:
            return _summary(self.name, unfulfilled)
        return Verdict.passing(self.name, f"{len(seen)} orders, each one trace from the customer's request "
                                          f"to the courier")

    @staticmethod
    def _unfulfilled(world: sandbox.World, spans: list, traces: dict[OrderId, int]) -> list[str]:
        """A sentence for each accepted order whose trace holds no call of the service to the warehouse."""
        mine = _learner_nodes(world)
        reached = {s.context.trace_id for s in spans if node_of(s) in mine and s.kind.name == "CLIENT"
                   and s.attributes.get("server.address") == "warehouse"}
        missing = [(t, order) for order, t in _accepted(world).items()
                   if order in traces and traces[order] not in reached]
        if not missing:
            return []
        lag = world.broker.lag(GROUP, TOPIC)
        why = (f"{plural(lag, 'order-placed message')} {'was' if lag == 1 else 'were'} never handled to the end "
               f"(not committed by group {GROUP!r})" if lag else
               f"every order-placed message was acknowledged (committed by group {GROUP!r}), so Kafka will not "
               f"deliver it again")
        died = [e for e in world.errors if e.where.startswith("background task")]
        if died:
            why += f"; a background task of the service died: {died[0]}"
        return [f"order {order} was accepted (201 at t={t:.4f}), but its trace {short_trace(traces[order])} never "
                f"reaches the warehouse: the service never called it for this order in the order's trace, so "
                f"on-call following the order sees no fulfilment at all; {why}" for t, order in sorted(missing)]


@dataclass(frozen=True)
class RequiredAttributes:
    """Every span that handles an order in the learner's service carries ``names``, with the
    order's true values: the SERVER span of each accepted ``POST /orders`` and the CONSUMER span
    of each ``order-placed`` message."""

    names: tuple[str, ...] = REQUIRED

    @property
    def name(self) -> str:
        return f"required_attributes(names={self.names!r})"

    def __call__(self, world: sandbox.World) -> Verdict:
        orders = _orders(world)
        mine = _learner_nodes(world)
        truth = {o: {"order.id": o, "customer.id": r["customer"], "order.region": r["region"]} for o, r in orders.items()}
        wrong, checked = [], 0
        for span in world.spans():
            if node_of(span) not in mine:
                continue
            attrs = span.attributes
            handles = (
                (span.kind.name == "SERVER" and attrs.get("http.route") == "/orders"
                 and 200 <= int(attrs.get("http.response.status_code", 0)) < 300)
                or (span.kind.name == "CONSUMER" and attrs.get("messaging.destination.name") == TOPIC)
            )
            if not handles:
                continue
            checked += 1
            missing = [n for n in self.names if attrs.get(n) in (None, "")]
            if missing:
                wrong.append(f"{describe(span)} has no {', '.join(missing)}: on-call cannot find this order's "
                             f"spans (set them with trace.get_current_span().set_attributes(...))")
                continue
            expected = truth.get(attrs.get("order.id"))
            if expected is None:
                wrong.append(f"{describe(span)} says order.id={attrs.get('order.id')!r}, which no customer ordered")
                continue
            bad = [f"{n}={attrs.get(n)!r} (the order's is {expected[n]!r})" for n in self.names
                   if n in expected and attrs.get(n) != expected[n]]
            if bad:
                wrong.append(f"{describe(span)}: {', '.join(bad)}")
        if not checked:
            return Verdict.unknown(self.name, "no span handled an order: nothing to check")
        if wrong:
            return _summary(self.name, wrong)
        return Verdict.passing(self.name, f"{checked} spans that handle an order each carry {', '.join(self.names)}")


@dataclass(frozen=True)
class EverySpanEnded:
    """Every span the learner's code started was ended (spans open on a replica when it crashed excepted)."""

    name: str = "every_span_ended"

    def __call__(self, world: sandbox.World) -> Verdict:
        tracker = getattr(world.tracing, _TRACKER, None)
        if tracker is None:
            return Verdict.unknown(self.name, "the world was not built by build_world: no record of open spans")
        world.spans()  # build the automatic spans (their SDK spans start and end at once)
        crashed = crashes(world)
        wrong, excused = [], 0
        for span in sorted(tracker.open.values(), key=lambda s: s.start_time):
            node = node_of(span)
            if any(t >= started(span) - 1e-9 for t in crashed.get(node, ())):
                excused += 1
                continue
            wrong.append(f"{describe(span)} was started and never ended: use it as a context manager "
                         f"(with tracer.start_as_current_span(...)), or end it in a finally block")
        if wrong and not quiet(world):
            return Verdict.unknown(self.name, f"the run stopped before its quiet phase: {wrong[0]}", tuple(wrong))
        if wrong:
            return _summary(self.name, wrong)
        note = f" ({excused} left open by a crash)" if excused else ""
        return Verdict.passing(self.name, f"every span the service started was ended{note}")


def _has_exception(span: Any) -> bool:
    return any(event.name == "exception" for event in span.events)


def _is_error(span: Any) -> bool:
    return span.status.status_code is StatusCode.ERROR


def _is_failure(span: Any) -> bool:
    """Something failed in ``span`` itself: a call or send that failed, an exception recorded, an answer of 5xx,
    a message handler that did not succeed (the sandbox's own marks: never a learner's false alarm)."""
    kind = span.kind.name
    return (
        _has_exception(span)
        or (kind in ("CLIENT", "PRODUCER") and _is_error(span))
        or (kind == "SERVER" and int(span.attributes.get("http.response.status_code", 0)) >= 500)
        or (kind == "CONSUMER" and _is_error(span) and span.status.description == "handler did not succeed")
    )


@dataclass(frozen=True)
class FailuresMarked:
    """Failures leave a mark, and only failures do.

    Every dependency call that failed (an error answer, or no answer) and was not retried with success in
    the same handling is marked: a span of the learner's service enclosing the call (its own span, or the
    SERVER/CONSUMER span) has status ERROR and records the exception (an ``exception`` event: its type,
    message and stack trace, what on-call reads first). And no span of a handling in which nothing failed
    (every call answered, nothing raised) has status ERROR: a false alarm makes error rates and alerts
    count orders that shipped, and on-call chases them."""

    name: str = "failures_marked"

    def __call__(self, world: sandbox.World) -> Verdict:
        spans = world.spans()
        mine = _learner_nodes(world)
        by_id = {(s.context.trace_id, s.context.span_id): s for s in spans}

        def handling(s: Any) -> tuple[Any, list] | None:
            """The span that starts the handling ``s`` belongs to on its replica (a SERVER or CONSUMER span,
            or the replica's top span of the trace), and the spans between them; None if a span of the chain
            was lost (a crash): nothing to judge."""
            chain, top = [], s
            while top.kind.name not in ("SERVER", "CONSUMER") and top.parent is not None:
                if top.parent.is_remote:
                    break  # the handling's top span continues a trace from another process (a header)
                p = by_id.get((top.context.trace_id, top.parent.span_id))
                if p is None:
                    return None
                chain.append(p)
                top = p
            return top, chain

        handlings: dict[int, list] = {}  # the spans of each handling on a replica, by its top span's id
        tops: dict[int, Any] = {}
        calls: dict[int, list] = {}  # per handling: its dependency calls, with the spans enclosing each
        for s in spans:
            if node_of(s) not in mine:
                continue
            found = handling(s)
            if found is None:
                continue
            top, chain = found
            key = top.context.span_id
            tops[key] = top
            handlings.setdefault(key, []).append(s)
            if s.kind.name == "CLIENT" and "url.full" in s.attributes:
                calls.setdefault(key, []).append((s, chain))
        wrong, failed = [], 0
        for key, items in calls.items():
            last: dict[str, tuple] = {}
            for s, chain in sorted(items, key=lambda item: item[0].start_time):
                last[s.attributes.get("server.address", "?")] = (s, chain)
            for s, chain in last.values():
                if not _is_error(s):
                    continue
                failed += 1
                if any(_is_error(p) and _has_exception(p) for p in chain):
                    continue
                code = s.attributes.get("http.response.status_code")
                what = f"answered {code}" if code is not None else "got no answer"
                marked = [p for p in chain if _is_error(p)]
                if marked:
                    wrong.append(
                        f"{describe(s)} {what} at t={ended(s):.4f}; {describe(marked[0])} around it is marked ERROR "
                        f"but records no exception: on-call sees that it failed, not why (in the except block, "
                        f"call span.record_exception(exc) on the span you mark, as well as span.set_status(...))"
                    )
                else:
                    wrong.append(
                        f"{describe(s)} {what} at t={ended(s):.4f}, but {describe(tops[key])} and every span of the "
                        f"service around the call ended without an error status: the failure leaves no mark (after "
                        f"span.record_exception(exc), call span.set_status(StatusCode.ERROR, ...))"
                    )
        alarms = []
        for key, members in handlings.items():
            if any(_is_failure(s) for s in members):
                continue
            for s in members:
                if _is_error(s):
                    order = s.attributes.get("order.id") or tops[key].attributes.get("order.id")
                    about = f" of order {order}" if order else ""
                    desc = f" ({s.status.description!r})" if s.status.description else ""
                    alarms.append(
                        f"{describe(s)} ended with status ERROR{desc}, but nothing failed in that handling{about}: "
                        f"every call it made answered and nothing raised. A false alarm: error rates and alerts "
                        f"count it, and on-call chases an order that is fine (set ERROR only where a call failed: "
                        f"in the except block, or from the status of a failed answer)"
                    )
        if wrong or alarms:
            return _summary(self.name, sorted(wrong) + sorted(alarms))
        if not failed:
            return Verdict.unknown(self.name, "no dependency call failed in this run: nothing to mark")
        return Verdict.passing(self.name, f"every one of {failed} failed dependency calls is marked as an error, "
                                          f"with its exception, and nothing else is")


def invariants() -> list:
    """The lab's checkers, in the order a failure is reported."""
    return [connected_traces(), OneTracePerOrder(), RequiredAttributes(), EverySpanEnded(), FailuresMarked()]


# --- the graded answer ------------------------------------------------------------------


def order_traces(world: sandbox.World) -> list[tuple[OrderId, int, float]]:
    """Each order's trace, slowest first: ``(order id, trace id, seconds from the customer's request
    to the last span of its trace)``. The notebook draws the first few with ``trace_waterfall``.

    Example::

        order, trace_id, took = order_traces(world)[0]
        sandbox.viz.trace_waterfall(world, trace_id)
    """
    spans = world.spans()
    traces = _client_traces(world, spans)
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for s in spans:
        t = s.context.trace_id
        first[t] = min(first.get(t, started(s)), started(s))
        last[t] = max(last.get(t, ended(s)), ended(s))
    rows = [(order, t, last[t] - first[t]) for order, t in traces.items() if t in first]
    return sorted(rows, key=lambda row: (-row[2], row[0]))


def slow_traces(world: sandbox.World, n: int = 3) -> list[int]:
    """The trace ids of the ``n`` slowest orders (see ``order_traces``)."""
    return [t for _order, t, _took in order_traces(world)[:n]]


class Telemetry:
    """What ``slowest_dependency`` is asked about: a finished world's telemetry, and nothing else of the world.

    ``spans()`` (the OpenTelemetry SDK spans), ``history`` (the customers' requests and answers) and ``clients``
    (the customers' node names): what ``order_traces`` and ``slow_traces`` read, as on a production dashboard.
    Not the world itself, whose seed would tell the answer; the notebook's try-it cell and grading ask the same.

    Example::

        slowest_dependency(Telemetry(example_world(create_app)))
    """

    __slots__ = ("_spans", "clients", "history")

    def __init__(self, world: Any) -> None:
        self._spans = tuple(world.spans())
        self.history = tuple(world.history)
        self.clients = tuple(world.clients)

    def spans(self) -> list:
        return list(self._spans)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"slowest_dependency is given the world's telemetry only: spans(), history and "
                             f"clients; {name!r} is not part of it")

    def __repr__(self) -> str:
        return f"<telemetry: {len(self._spans)} spans, {len(self.history)} operations of {len(self.clients)} customers>"


def answer_input(world: sandbox.World) -> Telemetry:
    """What the graded answer is given about ``world`` (``autograder.runner`` asks through this)."""
    return Telemetry(world)


def example_world(create_app: AppFactory, index: int = 0, *, seed: int | None = None) -> sandbox.World:
    """A finished world of the lab to look at, without faults: the ``index``-th seed of the visible bank
    (or ``seed``), three customers x five orders, run to the end of its quiet phase (the notebook explores
    the slow orders in it; ``culprit(world.seed)`` would tell, but the traces should).

    Example::

        world = example_world(create_app)
        sandbox.viz.trace_waterfall(world, slow_traces(world)[0])
    """
    if seed is None:
        seed = seed_bank(LAB, "visible", index + 1)[index]
    world = build_world(seed, service_factory(create_app))
    return world.run(settle=SETTLE, limit=LIMIT)


def answer_is_right(answer: str, seed: int) -> bool:
    """True if ``answer`` names the dependency that makes the slow orders slow in the world of ``seed``
    (``"courier"`` or ``"warehouse"``; case and a leading "the" do not matter).

    Example::

        answer_is_right(slowest_dependency(Telemetry(world)), seed)
    """
    if not isinstance(answer, str):
        return False
    said = answer.strip().lower().removeprefix("the ").strip()
    return said == culprit(seed)[0]


#: How many worlds of the hidden bank the graded answer is asked on: enough that a coin fails (1 time in 1024).
ANSWER_SEEDS = 10
#: What the graded answer cell may not use (autograder.policy): the world's ground truth and its seed.
ANSWER_MAY_NOT_USE = ("culprit", "answer_is_right", "order_plan", "answer_seeds", "seed")


def answer_seeds(secret: str | None = None, size: int = ANSWER_SEEDS) -> list[int]:
    """The seeds of the worlds the graded answer is asked on: the first ``size`` of the hidden bank (drawn from
    ``secret`` or the grading secret), except that if they all have the same culprit, the last gives way to
    the bank's next seed with the other one: with two or more worlds, no constant answer passes.

    Example::

        {culprit(seed)[0] for seed in answer_seeds()}   # {'courier', 'warehouse'}
    """
    bank = seed_bank(LAB, "hidden", size, secret=secret)
    more = size
    while size >= 2 and len({culprit(seed)[0] for seed in bank}) < len(DEPENDENCIES):
        more *= 2
        missing = [d for d in DEPENDENCIES if all(culprit(seed)[0] != d for seed in bank)]
        spare = [seed for seed in seed_bank(LAB, "hidden", more, secret=secret)[size:] if culprit(seed)[0] in missing]
        if spare:
            bank[-1] = spare[0]
    return bank


@grade_cell
def grade_answer(
    slowest_dependency: Callable[[Telemetry], str], create_app: AppFactory, *, secret: str | None = None,
    seeds: int = ANSWER_SEEDS,
) -> str:
    """What the graded answer's cell runs: in each of ``seeds`` worlds of the hidden bank (``answer_seeds``:
    drawn from ``secret`` or the grading secret, both culprits among them), run the lab's world (no faults)
    with ``create_app`` and ask ``slowest_dependency(Telemetry(world))`` which dependency makes the slow orders
    slow.
    A grade cell (see ``autograder.labs.grade_cell``): prints a one-line summary when every answer is
    right, returns nothing.

    Example::

        grade_answer(slowest_dependency, create_app)
        # Passed: slowest_dependency named the slow dependency in every one of 10 hidden worlds

    Raises:
        AssertionError: some answers were wrong (how many; for the first: the answer and the right one; never
            a hidden seed: a world of the visible bank where it is wrong too, if there is one).
    """
    factory = service_factory(create_app)
    bank = answer_seeds(secret, seeds)
    wrong: list[tuple[int, str, Dependency]] = []
    for seed in bank:
        world = build_world(seed, factory)
        world.run(settle=SETTLE, limit=LIMIT)
        try:
            answer = slowest_dependency(Telemetry(world))
        except Exception as exc:  # noqa: BLE001 (a stub, or a bug: a wrong answer, said plainly)
            answer = f"<raised {type(exc).__name__}: {exc}>"
        if not answer_is_right(answer, seed):
            wrong.append((seed, answer if isinstance(answer, str) else repr(answer), culprit(seed)[0]))
    if wrong:
        _seed, said, right = wrong[0]
        head = (f"slowest_dependency was wrong on {len(wrong)} of {len(bank)} hidden worlds. The first: it "
                f"answered {said!r}, but the slow orders there wait on the {right}.")
        for seed in seed_bank(LAB, "visible", REHOME_SEEDS):  # show it on a world the learner may replay
            world = build_world(seed, factory)
            world.run(settle=SETTLE, limit=LIMIT)
            try:
                answer = slowest_dependency(Telemetry(world))
            except Exception as exc:  # noqa: BLE001
                answer = f"<raised {type(exc).__name__}: {exc}>"
            if not answer_is_right(answer, seed):
                raise AssertionError(
                    f"{head} It is wrong on a world of the visible bank too: seed {seed}, where it answered "
                    f"{answer!r} but the slow orders wait on the {culprit(seed)[0]}. Replay it: "
                    f"world = lab.example_world(create_app, seed={seed}), then look at lab.slow_traces(world) "
                    f"with sandbox.viz.trace_waterfall(world, trace_id)"
                )
        raise AssertionError(
            f"{head} It answers right on the first {REHOME_SEEDS} worlds of the visible bank "
            f"(lab.example_world(create_app, i)), so look at what differs: which orders are slow, and whether your "
            f"code reads their traces or something that only happens to match there"
        )
    return f"Passed: slowest_dependency named the slow dependency in every one of {len(bank)} hidden worlds"


# --- works in staging ----------------------------------------------------------------


def happy_path(create_app: AppFactory) -> None:
    """The "works in staging" test: FastAPI's TestClient, no sandbox world, no faults, no tracing backend.

    One order goes through ``POST /orders`` (201, saved, ``order-placed`` published); the published
    message, handed to the fulfilment consumer, has the warehouse pick it and the courier deliver it.
    """
    warehouse, courier = create_warehouse_app(busy=0.0, cold=False), create_courier_app(busy=0.0)
    orders = create_app()
    sandbox.connect_local(orders, warehouse=warehouse, courier=courier)
    request = {"id": "ord-ada-1", "customer": "ada", "sku": "lamp", "qty": 2, "region": "north"}
    with TestClient(orders) as tc:
        r = tc.post("/orders", json=request)
        assert r.status_code == 201, r.text
        assert r.json()["id"] == "ord-ada-1", r.json()
        sent = [m for m in getattr(orders.state, "chaos_dojo_sent", []) if m["topic"] == TOPIC]
        assert len(sent) == 1 and sent[0]["value"]["id"] == "ord-ada-1", sent
        subs = [s for s in getattr(orders.state, "chaos_dojo_consumers", []) if s.topic == TOPIC]
        assert len(subs) == 1, "the service consumes order-placed once"
        message = sandbox.Message(topic=TOPIC, partition=0, offset=0, key=sent[0]["key"], value=sent[0]["value"],
                                  headers=sent[0]["headers"], timestamp=0.0)
        r = tc.post(subs[0].path, json=message.model_dump(mode="json"))
        assert 200 <= r.status_code < 300, r.text
    assert warehouse.state.picks == ["ord-ada-1"], f"the warehouse picked {warehouse.state.picks}, not ['ord-ada-1']"
    assert courier.state.deliveries == ["ord-ada-1"], f"the courier booked deliveries {courier.state.deliveries}, " \
                                                      f"not ['ord-ada-1']"


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

#: The graded parts, by the grade cell's nbgrader id: the invariants each checks (the last one is the graded answer,
#: ``grade_answer``, not an invariant). A grader that does not run the learner's notebook (``dojo grade``) reads the
#: parts from here; a test holds the notebook's grade cells to it.
PARTS: dict[str, tuple[str, ...]] = {
    "connected-traces": ("connected_traces", "one_trace_per_order"),
    "attributes-and-ended-spans": ("required_attributes", "every_span_ended"),
    "failures-marked": ("failures_marked",),
    "slow-dependency": ("slowest_dependency",),
}

