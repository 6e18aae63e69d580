"""Lab 06, resilience: the checkout that turns one slow dependency into an outage of everything.

Shoppers place orders with ``POST /orders`` on the learner's checkout service (two
replicas), which reserves the stock at ``inventory`` and charges the card at
``payments``. Orders arrive at ``RATE`` per virtual second (an open loop: a new order
does not wait for the last one's answer, as real shoppers do not), and each shopper
gives up after ``CLIENT_TIMEOUT`` seconds. Inventory goes down (cut off, killed, or
answering very slowly) for longer than 3 seconds once per run, with short blips
before; payments is slow for a while. The requirement is the article's sentence:
*fail gracefully if the inventory service is down for more than 3 seconds.*

Why 100 orders per second and not the article's 1,000: a seed's run is about 1,100
orders through three services and two databases, and the hidden bank runs dozens of
seeds; 1,000 per second would make grading ten times slower without a new failure
(the breaker, the budget and the deadline act per request, and the sandbox's own
benchmark, ``benchmarks/bench_sandbox.py``, measures the order system at 1,000/s).

The learner's checkout answers each order with one of three honest answers:

* ``201`` ``{"order_id": ..., "status": "confirmed"}``: reserved and charged, once;
* ``202`` ``{"order_id": ..., "status": "pending"}``: accepted, its fate not yet known
  (a charge whose answer never came: it may have gone through), or accepted to be reserved
  and charged later; either way a promise: by the end of the run it is reserved and charged;
* ``503`` with a ``Retry-After`` header: refused, nothing charged; come back later.

Everything but ``create_app`` is here and is not edited:

* ``build_world(seed, create_app, **workload)``, ``scenario(create_app)``;
* ``schedules(seed)`` and ``ADVERSARIAL``: the lab's nemesis and hand-written schedules;
* ``invariants()``: what must hold (see each checker's docstring);
* ``happy_path(create_app)``: the "works in staging" test (FastAPI's TestClient);
* ``check(create_app, bank)``, ``grade``, ``PARTS``: the self-checks and the grading;
* ``production(create_app)``: the notebook's "Production" run, with metrics for the dashboard;
* ``mutants()`` and ``alternatives()``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI, Header
from fastapi.responses import JSONResponse
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
from sandbox.checkers import Verdict, breaker_transitions_legal, no_double_charge
from sandbox.explore import Counterexample, Passed, Scenario
from sandbox.faults import Delay, Fault, Kill, Loss, Partition, Schedule

LAB = "06-resilience"
VISIBLE = 4
HIDDEN = 12
HERE = Path(__file__).resolve().parent

SERVICE = "checkout"
INVENTORY, INVENTORY_DB = "inventory", "inventory-db"
PAYMENTS, PAYMENTS_DB = "payments", "payments-db"
RESERVATIONS, CHARGES, KEYS = "reservations", "charges", "idempotency-keys"
URL = "http://checkout/orders"

#: Orders per virtual second (all shoppers together), how many shoppers, and for how long orders arrive (seconds).
RATE = 100
SHOPPERS = 50
ORDERS_FOR = 13.0
#: How long a shopper waits for an answer before giving up (seconds): far beyond the bound below.
CLIENT_TIMEOUT = 10.0
#: "Fail gracefully": every order is answered within this many seconds, outage or not.
LATENCY_BOUND = 3.5
#: An inventory fault longer than this is an outage (the requirement's "more than 3 seconds").
OUTAGE = 3.0
#: Within this many seconds of an outage's start, calls to inventory fall to a probe rate ...
OPEN_WITHIN = 2.0
#: ... of at most this many calls per second (both replicas together, over each whole second).
PROBES_PER_SECOND = 8
#: The retry budget: calls to inventory, in every two whole seconds and overall, at most AMPLIFICATION per order
#: the checkout received, plus BURST (a budget lets a few retries through when orders are few, as Finagle's
#: RetryBudget allows ten a second whatever the load).
AMPLIFICATION = 1.2
BURST = 15
#: Orders arriving this long after the last inventory fault healed are all confirmed again.
RECOVERY = 3.0
SETTLE = 4.0
LIMIT = 60.0

Result = Counterexample | Passed
AppFactory = Callable[[], Any]


def load(name: str) -> ModuleType:
    """The module ``name`` of this lab (``"generated"``, ``"solution"``, ``"mutants/NAME"``...)."""
    return load_module(HERE, name, "chaos_dojo_labs.lab06")


def mutants() -> list[str]:
    """The names of the partial fixes in ``mutants/``, sorted (``"mutants/NAME"``)."""
    return mutant_names(HERE)


def alternatives() -> list[str]:
    """The names of the correct fixes in ``alternatives/``, sorted (``"alternatives/NAME"``)."""
    return alternative_names(HERE)


# --- the services around the checkout (given, not edited) ------------------------------


class Reservation(BaseModel):
    """Hold ``qty`` of ``sku`` for order ``order_id``."""

    order_id: str
    sku: str
    qty: int = Field(gt=0)


class Charge(BaseModel):
    """Charge ``amount`` cents for order ``order_id``."""

    order_id: str
    amount: int = Field(gt=0)


def create_inventory_app() -> FastAPI:
    """Inventory: ``POST /reservations`` holds stock for an order (again for the same order: the same hold)."""
    app = FastAPI(title="inventory")

    @app.post("/reservations")
    async def reserve(r: Reservation, db: sandbox.Database = Depends(sandbox.database(INVENTORY_DB))) -> dict:
        await db.put(RESERVATIONS, r.order_id, r.model_dump())
        return {"order_id": r.order_id, "reserved": r.qty}

    return app


def create_payments_app() -> FastAPI:
    """Payments: ``POST /charges`` moves the money (201), once per ``Idempotency-Key``.

    A request with a key seen before gets the stored charge (201), or 409 while the first
    request with that key is still at the card network; a request without a key is a new
    charge, every time (as Stripe's API does).
    """
    app = FastAPI(title="payments")

    @app.post("/charges", status_code=201)
    async def charge(
        c: Charge,
        idempotency_key: str | None = Header(None),
        db: sandbox.Database = Depends(sandbox.database(PAYMENTS_DB)),
    ) -> JSONResponse:
        if idempotency_key is not None:
            try:
                await db.insert(KEYS, idempotency_key, {"order_id": c.order_id})
            except sandbox.DuplicateKey:
                seen = await db.get(KEYS, idempotency_key)
                if seen is None or "charge" not in seen:
                    return JSONResponse({"detail": "a charge with this key is in flight"}, status_code=409)
                return JSONResponse(seen["charge"], status_code=201)
        await sandbox.sleep(random.uniform(0.01, 0.02))  # the card network
        charge_id = f"ch-{random.getrandbits(48):012x}"
        body = {"id": charge_id, "order_id": c.order_id, "amount": c.amount}
        await db.insert(CHARGES, charge_id, body)
        if idempotency_key is not None:
            await db.put(KEYS, idempotency_key, {"order_id": c.order_id, "charge": body})
        return JSONResponse(body, status_code=201)

    return app


# --- the workload ------------------------------------------------------------------------


def _arrivals(client: sandbox.Client, rate: float, seconds: float) -> list[float]:
    """Poisson arrival times at ``rate`` per second for ``seconds`` seconds, from the client's seeded stream."""
    times, t = [], client.random.expovariate(rate)
    while t < seconds:
        times.append(t)
        t += client.random.expovariate(rate)
    return times


async def shopper(client: sandbox.Client, index: int, rate: float, seconds: float) -> None:
    """One shopper placing orders at ``rate`` per second (Poisson) for ``seconds`` seconds, each an ``order``
    operation: sent once, waited for up to CLIENT_TIMEOUT seconds. An order due while the last one is still
    waiting goes as soon as that one is answered (a shopper has one order in flight at a time).

    The operation records ``{"order_id", "status", "retry_after", "latency"}`` (status None: no answer);
    201 and 202 are ``ok``, a 503 is ``fail`` (refused), anything else ``info``.
    """
    times = _arrivals(client, rate, seconds)
    for j, due in enumerate(times):
        if due > client.now:
            await client.sleep(due - client.now)
        order = {"order_id": f"ord-{index}-{j}", "sku": f"sku-{client.random.randrange(20)}", "qty": 1,
                 "amount": 100 * client.random.randint(5, 90)}
        async with client.operation("order", order) as op:
            sent = client.now
            try:
                r = await client.http.post(URL, json=order, timeout=CLIENT_TIMEOUT)
            except sandbox.RequestTimeout:
                op.info({"order_id": order["order_id"], "status": None, "latency": client.now - sent}, "no answer")
                continue
            seen = {"order_id": order["order_id"], "status": r.status_code,
                    "retry_after": r.headers.get("retry-after"), "latency": client.now - sent}
            if r.status_code in (201, 202):
                op.ok(seen)
            elif r.status_code == 503:
                op.fail(seen)
            else:
                op.info({**seen, "body": r.text[:200]})


# --- the world ----------------------------------------------------------------------------


def build_world(seed: int, create_app: AppFactory, *, shoppers: int = SHOPPERS, metrics: bool = False) -> sandbox.World:
    """The datacenter for ``seed``: the learner's checkout (2 replicas), inventory and payments (one replica
    each, with their databases), and ``shoppers`` shoppers (``shopper-0``...) each placing RATE / SHOPPERS
    orders per second for ORDERS_FOR seconds. ``metrics=True`` records the Prometheus metrics (for the
    dashboard). Built, not run.

    Raises:
        sandbox.BadSeedError: a bad seed. sandbox.InvalidParameterError: a number of shoppers below 1.
    """
    if isinstance(shoppers, bool) or not isinstance(shoppers, int) or shoppers < 1:
        raise sandbox.InvalidParameterError(f"shoppers={shoppers!r}: use a whole number >= 1, e.g. {SHOPPERS}")
    world = sandbox.World(seed=seed, metrics=metrics)
    world.add_database(INVENTORY_DB)
    world.add_database(PAYMENTS_DB)
    world.add_service(INVENTORY, create_inventory_app, isolate_module=False)
    world.add_service(PAYMENTS, create_payments_app, isolate_module=False)
    world.add_service(SERVICE, create_app, replicas=2)
    for i in range(shoppers):
        world.add_client(f"shopper-{i}", shopper, i, RATE / SHOPPERS, ORDERS_FOR)
    return world


def scenario(create_app: AppFactory, *, metrics: bool = False, **workload: int) -> Scenario:
    """The lab as a scenario to explore: SHOPPERS shoppers, RATE orders per second (shrinking tries fewer)."""
    create_app = service_factory(create_app)

    def build(seed: int, shoppers: int = SHOPPERS) -> sandbox.World:
        return build_world(seed, create_app, shoppers=shoppers, metrics=metrics)

    return Scenario(LAB, build, {"shoppers": SHOPPERS, **workload}, settle=SETTLE, limit=LIMIT)


# --- faults ------------------------------------------------------------------------------

#: How inventory goes down: cut off from the checkout, killed (it restarts when the window ends), or so slow
#: (every message takes seconds) that it might as well be down.
OUTAGE_KINDS = ("partition", "kill", "slow")


def _inventory_down(kind: str, start: float, duration: float) -> Fault:
    if kind == "partition":
        return Partition(SERVICE, INVENTORY, start=start, duration=duration)
    if kind == "kill":
        return Kill(INVENTORY, start=start, restart_after=duration)
    return Delay(INVENTORY, peer=SERVICE, latency=4.0, start=start, duration=duration)


def schedules(seed: int) -> Schedule:
    """The lab's nemesis, drawn from ``seed``: one or two short inventory blips (0.2 to 0.8 s) and payments
    slow for 0.5 to 2.5 s (its answers, or its requests and answers, +0.3 to 3 s) from the first 1.5 seconds, then inventory down for 3.5 to
    5 seconds (cut off, killed or very slow), starting between 3 and 4 seconds (healed by 9 s, four seconds
    before the last orders). Besides, from the start, a brownout of 2 to 2.5 s: 30 to 40 % of the calls to
    inventory lost (too few failures to open a breaker: only a retry budget keeps the retries down)."""
    rng = random.Random(f"{LAB}/{seed}")  # a str seed: the same draw in every process
    faults: list[Fault] = []
    t = 0.3
    for _ in range(rng.choice((1, 2))):
        start = round(t + rng.uniform(0.0, 0.6), 3)
        length = round(rng.uniform(0.2, 0.8), 3)
        faults.append(_inventory_down(rng.choice(OUTAGE_KINDS), start, length))
        t = start + length + 0.2
    faults.append(Delay(PAYMENTS, peer=SERVICE, direction=rng.choice(("both", "to")),
                        latency=round(rng.uniform(0.3, 3.0), 3), start=round(rng.uniform(0.3, 1.5), 3),
                        duration=round(rng.uniform(0.5, 2.5), 3)))
    faults.append(Loss(INVENTORY, peer=SERVICE, direction="from", probability=round(rng.uniform(0.3, 0.4), 2),
                       start=round(rng.uniform(0.1, 0.3), 3), duration=round(rng.uniform(2.0, 2.5), 3)))
    faults.append(_inventory_down(rng.choice(OUTAGE_KINDS), round(rng.uniform(3.0, 4.0), 3),
                                  round(rng.uniform(3.5, 5.0), 3)))
    return Schedule(sorted(faults, key=lambda f: f.start))


#: The pattern's known failure modes, each hit on purpose.
ADVERSARIAL: list[Schedule] = [
    # 1. Inventory cut off from the checkout for five seconds: every call waits for its timeout.
    Schedule([Partition(SERVICE, INVENTORY, start=2.0, duration=5.0)]),
    # 2. Inventory killed for four seconds, after a blip that a retry should ride out.
    Schedule([Kill(INVENTORY, start=1.0, restart_after=0.4), Kill(INVENTORY, start=3.0, restart_after=4.0)]),
    # 3. Inventory answers, four seconds late, for six seconds: a slow dependency, the worst kind.
    Schedule([Delay(INVENTORY, peer=SERVICE, latency=4.0, start=2.0, duration=6.0)]),
    # 4. Payments is slow (a second each way) just as inventory is fine: charges time out after they went through.
    Schedule([Delay(PAYMENTS, peer=SERVICE, latency=1.0, start=1.0, duration=1.5),
              Partition(SERVICE, INVENTORY, start=4.0, duration=3.5)]),
    # 5. Payments' answers come three seconds late: each charge goes through, and its answer arrives after the
    #    order's deadline. Its fate is unknown to the checkout; the shopper must not be told "refused".
    Schedule([Delay(PAYMENTS, peer=SERVICE, direction="to", latency=3.0, start=1.0, duration=3.0),
              Kill(INVENTORY, start=4.5, restart_after=3.5)]),
    # 6. A brownout: two calls in five to inventory lost for four seconds. Too few failures to open a breaker; each
    #    failed call is retried, and without a budget the retries add half as many calls again. Then an outage.
    Schedule([Loss(INVENTORY, peer=SERVICE, direction="from", probability=0.4, start=1.0, duration=4.0),
              Partition(SERVICE, INVENTORY, start=5.5, duration=3.5)]),
    # 7. Two outages, back to back, with one second of calm between them: the breaker must close and open again.
    Schedule([Partition(SERVICE, INVENTORY, start=1.0, duration=3.2),
              Delay(INVENTORY, peer=SERVICE, latency=4.0, start=5.2, duration=3.2)]),
]


# --- the invariants -------------------------------------------------------------------------


def _orders(world: sandbox.World) -> list[tuple[Any, Any]]:
    """(invoke, completion) of every order, in invocation order."""
    return [(i, d) for i, d in world.history.pairs() if i.f == "order"]


def _inventory_windows(world: sandbox.World) -> list[tuple[float, float]]:
    """(start, end) of every fault that took inventory down (a brownout's lost calls aside), in start order (an
    unhealed one ends at the run's end)."""
    if world.chaos is None:
        return []
    windows = []
    for w in world.chaos.windows:
        if w.fault.action == "loss":
            continue  # a brownout, not an outage
        if w.fault.target == (INVENTORY,) or (w.fault.target == (SERVICE,) and w.fault.peer == (INVENTORY,)):
            windows.append((w.start, w.end if w.end is not None else world.now))
    return sorted(windows)


def _calls(world: sandbox.World) -> tuple[list[float], list[float]]:
    """When the checkout received each order, and when it sent each call to inventory (from the network's log:
    what really crossed the wire, whatever the checkout's code says about itself)."""
    checkout = {i.name for i in world.services[SERVICE].instances}
    inventory = {i.name for i in world.services[INVENTORY].instances}
    received, sent, seen = [], [], set()
    for e in world.recorder.log:
        kind = e[1]
        if kind == "http.request" and e[2] in checkout and e[6] == "/orders":
            received.append(e[0])
        elif kind in ("net.send", "net.drop") and e[4] == "http" and e[2] in checkout and e[3] in inventory:
            if e[5] not in seen:
                seen.add(e[5])
                sent.append(e[0])
    return received, sent


def _verdict(name: str, problems: list[tuple[str, Any]], passed: str) -> Verdict:
    if not problems:
        return Verdict.passing(name, passed)
    summary = problems[0][0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    evidence: list[Any] = []
    for text, op in problems[:6]:
        evidence += [text, op]
    return Verdict.failing(name, summary, tuple(evidence))


@dataclass(frozen=True)
class _Graceful:
    name: str = f"answered_gracefully(bound={LATENCY_BOUND})"

    def __call__(self, world: sandbox.World) -> Verdict:
        problems: list[tuple[str, Any]] = []
        orders = _orders(world)
        for invoke, done in orders:
            if done is None:
                problems.append((f"{invoke.value['order_id']} sent at t={invoke.time:.3f} never got an answer: the "
                                 f"run ended first", invoke))
                continue
            seen = done.value
            status, latency = seen["status"], seen["latency"]
            if status is None:
                problems.append((f"{seen['order_id']} sent at t={invoke.time:.3f} got no answer in "
                                 f"{CLIENT_TIMEOUT:g} s (the shopper gave up): answer within {LATENCY_BOUND:g} s, "
                                 f"even when inventory is down", invoke))
            elif latency > LATENCY_BOUND:
                problems.append((f"{seen['order_id']} sent at t={invoke.time:.3f} was answered {status} after "
                                 f"{latency:.3f} s: more than {LATENCY_BOUND:g} s", invoke))
            elif status == 503 and not seen.get("retry_after"):
                problems.append((f"{seen['order_id']} was refused (503) at t={done.time:.3f} without a Retry-After "
                                 f"header: tell the shopper when to come back", invoke))
            elif status not in (201, 202, 503):
                problems.append((f"{seen['order_id']} got {status} at t={done.time:.3f} ({seen.get('body', '')!r}): "
                                 f"answer 201 (confirmed), 202 (pending) or 503 with Retry-After", invoke))
        if not orders:
            return Verdict.unknown(self.name, "no order was placed: nothing to check")
        return _verdict(self.name, problems, f"{len(orders)} orders, each answered within {LATENCY_BOUND:g} s, "
                                             f"honestly")


def answered_gracefully() -> _Graceful:
    """Every order is answered within LATENCY_BOUND seconds, with 201 (confirmed), 202 (pending) or 503 and a
    ``Retry-After`` header. FAIL with the orders answered late, never, or otherwise; UNKNOWN without orders."""
    return _Graceful()


def _per_second(times: list[float], start: float, end: float) -> list[int]:
    counts = [0] * max(0, int(end - start + 1e-9))
    for t in times:
        k = int((t - start) // 1.0)
        if start <= t and 0 <= k < len(counts):
            counts[k] += 1
    return counts


@dataclass(frozen=True)
class _Amplification:
    name: str = f"retry_amplification(budget={AMPLIFICATION}, burst={BURST})"

    def __call__(self, world: sandbox.World) -> Verdict:
        received, sent = _calls(world)
        if not received:
            return Verdict.unknown(self.name, "the checkout received no order: nothing to check")
        problems: list[tuple[str, Any]] = []
        end = max(received + sent) + 1.0
        orders, calls = _per_second(received, 0.0, end), _per_second(sent, 0.0, end)
        for k in range(len(orders) - 1):
            n, c = orders[k] + orders[k + 1], calls[k] + calls[k + 1]
            if c > AMPLIFICATION * n + BURST:
                problems.append((f"between t={k} and t={k + 2} the checkout received {n} orders and sent "
                                 f"{c} calls to inventory: above the retry budget of {AMPLIFICATION:g} per order "
                                 f"+ {BURST} ({AMPLIFICATION * n + BURST:g}): a retry storm (retries without a "
                                 f"budget, or without a breaker)", f"seconds {k} to {k + 2}"))
        if len(sent) > AMPLIFICATION * len(received) + BURST:
            problems.insert(0, (f"the checkout sent {len(sent)} calls to inventory for {len(received)} orders: "
                                f"{len(sent) / len(received):.2f} per order, above the budget of {AMPLIFICATION:g} "
                                f"per order + {BURST}", "whole run"))
        return _verdict(self.name, problems, f"{len(sent)} calls to inventory for {len(received)} orders "
                                             f"({len(sent) / len(received):.2f} per order)")


def retry_amplification() -> _Amplification:
    """Calls from the checkout to inventory (as the network saw them) stay within AMPLIFICATION per order the
    checkout received plus BURST, overall and in every two whole seconds. UNKNOWN without orders."""
    return _Amplification()


@dataclass(frozen=True)
class _Contained:
    name: str = f"outage_contained(open_within={OPEN_WITHIN}, probes={PROBES_PER_SECOND}/s)"

    def __call__(self, world: sandbox.World) -> Verdict:
        outages = [(a, b) for a, b in _inventory_windows(world) if b - a > OUTAGE]
        if not outages:
            return Verdict.unknown(self.name, f"inventory was never down for more than {OUTAGE:g} s in this run")
        _received, sent = _calls(world)
        problems: list[tuple[str, Any]] = []
        for a, b in outages:
            counts = _per_second(sent, a + OPEN_WITHIN, b)
            for k, c in enumerate(counts):
                if c > PROBES_PER_SECOND:
                    t = a + OPEN_WITHIN + k
                    problems.append((f"inventory down since t={a:.3f}; between t={t:.3f} and t={t + 1:.3f} the "
                                     f"checkout still sent it {c} calls: more than {PROBES_PER_SECOND} probes a "
                                     f"second, {OPEN_WITHIN:g} s into the outage (open a circuit breaker)",
                                     f"outage t={a:.3f}..{b:.3f}"))
        return _verdict(self.name, problems, f"{len(outages)} outage(s): calls to inventory fell to probes within "
                                             f"{OPEN_WITHIN:g} s")


def outage_contained() -> _Contained:
    """In every inventory outage longer than OUTAGE seconds, from OPEN_WITHIN seconds after it began, the checkout
    sends inventory at most PROBES_PER_SECOND calls a second (its breaker is open, probing). UNKNOWN without one."""
    return _Contained()


@dataclass(frozen=True)
class _Recovered:
    name: str = f"recovered(within={RECOVERY})"

    def __call__(self, world: sandbox.World) -> Verdict:
        windows = _inventory_windows(world)
        if not windows:
            return Verdict.unknown(self.name, "inventory never went down in this run: no recovery to check")
        healed = max(b for _a, b in windows)
        later = [(i, d) for i, d in _orders(world) if i.time >= healed + RECOVERY]
        if not later:
            return Verdict.unknown(self.name, f"no order arrived {RECOVERY:g} s after inventory came back "
                                              f"(t={healed:.3f})")
        problems = [(f"{i.value['order_id']} placed at t={i.time:.3f}, {i.time - healed:.3f} s after inventory came "
                     f"back (t={healed:.3f}), got {d.value['status'] if d is not None else 'nothing'}: after an "
                     f"outage, orders must go through again (a breaker half-opens, probes, and closes)", i)
                    for i, d in later if d is None or d.value["status"] != 201]
        return _verdict(self.name, problems, f"{len(later)} orders placed {RECOVERY:g} s after inventory came back, "
                                             f"all confirmed")


def recovered() -> _Recovered:
    """Every order placed RECOVERY seconds or more after the last inventory fault healed is confirmed (201).
    UNKNOWN if inventory never went down, or no order came that late."""
    return _Recovered()


@dataclass(frozen=True)
class _Honest:
    name: str = "refused_means_not_charged()"

    def __call__(self, world: sandbox.World) -> Verdict:
        charges: dict[str, int] = {}
        for row in world.database(PAYMENTS_DB).rows(CHARGES).values():
            charges[row["order_id"]] = charges.get(row["order_id"], 0) + 1
        reserved = world.database(INVENTORY_DB).rows(RESERVATIONS)
        problems: list[tuple[str, Any]] = []
        refused = confirmed = accepted = 0
        for invoke, done in _orders(world):
            if done is None:
                continue
            order, status = done.value["order_id"], done.value["status"]
            what = "reserved" if order not in reserved else "charged"
            if status == 503:
                refused += 1
                if charges.get(order):
                    problems.append((f"{order} was refused (503) at t={done.time:.3f} but payments charged it: "
                                     f"refused and charged", invoke))
            elif status == 201:
                confirmed += 1
                if order not in reserved or not charges.get(order):
                    problems.append((f"{order} was confirmed (201) at t={done.time:.3f} but never {what}: a "
                                     f"fallback must not confirm what did not happen", invoke))
            elif status == 202:
                accepted += 1
                if order not in reserved or not charges.get(order):
                    problems.append((f"{order} was accepted (202) at t={done.time:.3f} but by the end of the run "
                                     f"(t={world.now:.3f}) it was never {what}: a 202 promises to see the order "
                                     f"through later (or refuse it: 503)", invoke))
        return _verdict(self.name, problems, f"{refused} refused orders, none charged; {confirmed} confirmed and "
                                             f"{accepted} accepted (202), each reserved and charged")


def refused_means_not_charged() -> _Honest:
    """No order refused (503) was charged at payments; every order confirmed (201) was reserved at inventory and
    charged at payments; and every order accepted (202: pending, or accepted for later) was too, by the end of the
    run (a 202 is a promise kept later, not a refusal in disguise)."""
    return _Honest()


def invariants() -> list:
    """What must hold: answered within the bound, retries within the budget, the outage contained by a breaker
    moving legally (and sending nothing while open), recovery, and honest answers (no charge twice)."""
    return [
        answered_gracefully(),
        retry_amplification(),
        outage_contained(),
        breaker_transitions_legal(breaker=INVENTORY, callee=INVENTORY),
        recovered(),
        refused_means_not_charged(),
        no_double_charge(PAYMENTS_DB, CHARGES, "order_id"),
    ]


# --- works in staging ---------------------------------------------------------------------


def happy_path(create_app: AppFactory) -> None:
    """The test the assistant's code passes: two orders through FastAPI's TestClient, with inventory and payments
    answering in-process (``sandbox.connect_local``)."""
    app = create_app()
    sandbox.connect_local(app, inventory=create_inventory_app(), payments=create_payments_app())
    with TestClient(app) as client:
        for i in range(2):
            order = {"order_id": f"ord-{i}", "sku": "lamp", "qty": 1, "amount": 2500}
            r = client.post("/orders", json=order)
            assert r.status_code == 201, r.text
            assert r.json()["order_id"] == f"ord-{i}" and r.json()["status"] == "confirmed", r.text


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
    self-checks; "hidden": HIDDEN seeds, grading), each under its nemesis schedule, then each ADVERSARIAL
    schedule. Returns the first ``Counterexample`` (shrunk unless ``shrink=False``) or ``Passed``."""
    size = VISIBLE if bank == "visible" else HIDDEN
    return check_bank(LAB, bank, size, scenario(create_app), invariants(), schedules, ADVERSARIAL,
                      secret=secret, shrink=shrink, workers=workers, only=only)


def production(create_app: AppFactory, *, only: tuple[str, ...] = ("answered_gracefully",)) -> Result:
    """The notebook's "Production" run: the visible bank's first seed while inventory is cut off for five
    seconds (``ADVERSARIAL[0]``), with metrics on (``sandbox.viz.dashboard(found.world, "checkout")``).
    Not shrunk: the outage is the story."""
    from autograder.labs import seed_bank, select
    from sandbox.explore import explore

    seeds = seed_bank(LAB, "visible", 1)
    return explore(scenario(create_app, metrics=True), select(invariants(), only), seeds=seeds,
                   schedules=[ADVERSARIAL[0]], shrink=False, workers=1)


#: The dashboard's rates are taken over this many virtual seconds (two scrapes: the shortest PromQL allows).
DASHBOARD_WINDOW = 2.0


def outage(create_app: AppFactory) -> sandbox.World:
    """The world of the production run (the visible bank's first seed, inventory cut off from t=2 to t=7 by
    ``ADVERSARIAL[0]``, metrics on), run to its end whether the service passes or not: the one the notebook's
    dashboard, ``contained`` and ``watch`` read."""
    from autograder.labs import seed_bank

    return scenario(create_app, metrics=True).run(seed_bank(LAB, "visible", 1)[0], ADVERSARIAL[0]).world


def _total(d: Any, curves: list[tuple[float, ...]]) -> tuple[float, ...]:
    """The curves of a ``DashboardData`` added up, time by time; a curve without a value there counts as nothing."""
    import math

    return tuple(sum(0.0 if math.isnan(x) else x for x in v) for v in zip(*curves)) or (0.0,) * len(d.times)


def contained(world: sandbox.World) -> Verdict:
    """What the dashboard of a run with metrics (``production``, ``scenario(..., metrics=True)``) shows of each
    inventory outage longer than OUTAGE seconds: its numbers (``sandbox.viz.dashboard_data``, rates over
    DASHBOARD_WINDOW seconds) from OPEN_WITHIN + DASHBOARD_WINDOW seconds into the outage to its end say the
    checkout answers at least half the order rate (no pile-up), its p99 latency stays within LATENCY_BOUND, its
    calls to inventory stay within PROBES_PER_SECOND, and its ``circuit_breaker_state`` gauge shows a breaker
    open or half-open; and from RECOVERY + DASHBOARD_WINDOW seconds after the last outage healed, no 5xx.
    PASS: the outage is contained; FAIL says which panel shows otherwise; UNKNOWN without metrics or outage.
    """
    from sandbox.viz import dashboard_data

    name = "contained(dashboard)"
    if world.metrics is None:
        return Verdict.unknown(name, "this world recorded no metrics: build it with metrics=True")
    outages = [(a, b) for a, b in _inventory_windows(world) if b - a > OUTAGE]
    if not outages:
        return Verdict.unknown(name, f"inventory was never down for more than {OUTAGE:g} s")
    d = dashboard_data(world, SERVICE, window=DASHBOARD_WINDOW)
    answered = _total(d, list(d.requests.values()))
    calls = _total(d, [c for (callee, _o), c in d.calls.items() if callee == INVENTORY])
    problems: list[tuple[str, Any]] = []
    for a, b in outages:
        begin = a + OPEN_WITHIN + DASHBOARD_WINDOW
        low = [v for v in d.between(answered, begin, b) if v < RATE / 2]
        if low:
            problems.append((f"inventory down t={a:.3f}..{b:.3f}: the checkout answered as few as {min(low):.0f} "
                             f"requests/s, under half the {RATE} orders/s: requests pile up (panels 'requests / "
                             f"s' and 'in flight')", a))
        slow = [v for v in d.between(d.latency["p99"], begin, b) if v > LATENCY_BOUND]
        if slow:
            problems.append((f"inventory down t={a:.3f}..{b:.3f}: p99 latency up to {max(slow):.2f} s, above "
                             f"{LATENCY_BOUND:g} s (panel 'latency')", a))
        busy = [v for v in d.between(calls, begin, b) if v > PROBES_PER_SECOND]
        if busy:
            problems.append((f"inventory down t={a:.3f}..{b:.3f}: up to {max(busy):.0f} calls/s to inventory, above "
                             f"{PROBES_PER_SECOND} probes/s (panel 'calls made')", a))
        states = [v for (dep, _r), c in d.breaker.items() if dep == INVENTORY for v in d.between(c, a, b)]
        if not any(v >= 1 for v in states):
            problems.append((f"inventory down t={a:.3f}..{b:.3f}: no circuit_breaker_state gauge of the checkout "
                             f"showed a breaker open (panel 'circuit breaker')", a))
    healed = max(b for _a, b in outages)
    errors = [v for v in d.between(d.requests["5xx"], healed + RECOVERY + DASHBOARD_WINDOW, d.times[-1]) if v > 0]
    if errors:
        problems.append((f"still up to {max(errors):.1f} 5xx answers/s from {RECOVERY + DASHBOARD_WINDOW:g} s after "
                         f"inventory came back at t={healed:.3f} (panel 'error rate')", healed))
    return _verdict(name, problems, f"{len(outages)} outage(s) contained on the dashboard: answers kept flowing "
                                    f"within {LATENCY_BOUND:g} s, calls fell to probes, the breaker opened, and "
                                    f"the errors stopped after inventory came back")


@dataclass(frozen=True)
class Watched:
    """One metric to watch on the dashboard: its ``panel``, the PromQL query behind it, what it should
    ``sometimes`` show (``expect``), whether this run showed it (``held``), and what this run showed (``seen``)."""

    panel: str
    query: str
    expect: str
    held: bool
    seen: str

    def __str__(self) -> str:
        return (f"{'ok' if self.held else '--'} sometimes: {self.expect}\n   panel '{self.panel}', query "
                f"{self.query}\n   this run: {self.seen}")


def watch(world: sandbox.World) -> list[Watched]:
    """The metrics to watch while inventory is down, each a "sometimes" assertion on the dashboard's numbers
    (``sandbox.viz.dashboard_data``, rates over DASHBOARD_WINDOW seconds) of a run with metrics (``outage``): a
    breaker open, calls to inventory down to probes, orders refused fast (503), p99 back under LATENCY_BOUND
    while inventory is still down, retries counted, and orders confirmed again after it came back. A "sometimes"
    that never held is a path this run did not take: on its panel the fix is not visible yet.

    Raises:
        sandbox.ConfigError: the world recorded no metrics (build it with ``outage(create_app)``).
    """
    import math

    from sandbox.metrics import BREAKER_STATE, BREAKER_STATES, RETRIES, sum_by
    from sandbox.viz import dashboard_data

    if world.metrics is None:
        raise sandbox.ConfigError("this world recorded no metrics, so there is nothing to watch: run "
                                  "lab.outage(create_app), or build it with lab.scenario(create_app, metrics=True)")
    outages = [(a, b) for a, b in _inventory_windows(world) if b - a > OUTAGE]
    if not outages:
        raise sandbox.ConfigError(f"inventory was never down for more than {OUTAGE:g} s in this run: watch the "
                                  f"run of lab.outage(create_app)")
    a, b = outages[0]
    d = dashboard_data(world, SERVICE, window=DASHBOARD_WINDOW)
    w, selector = f"[{DASHBOARD_WINDOW:g}s]", f'service="{SERVICE}"'
    settled = a + OPEN_WITHIN + DASHBOARD_WINDOW  # the rates' window lies wholly inside the outage from here

    def item(panel: str, query: str, expect: str, curve: tuple[float, ...], start: float, end: float,
             ok: Callable[[int], bool], show: Callable[[float], str], missing: str) -> Watched:
        at = [i for i, t in enumerate(d.times) if start <= t <= end and not math.isnan(curve[i])]
        if not at:
            return Watched(panel, query, expect, False, f"no value from t={start:g} to t={end:g}: {missing}")
        low, high = min(curve[i] for i in at), max(curve[i] for i in at)
        seen = f"from {show(low)} to {show(high)} between t={start:g} and t={end:g}"
        hit = next((i for i in at if ok(i)), None)
        if hit is not None:
            seen += f"; first at t={d.times[hit]:g} ({show(curve[hit])})"
        return Watched(panel, query, expect, hit is not None, seen)

    def rate(unit: str) -> Callable[[float], str]:
        return lambda v: f"{v:.3g} {unit}"

    names = {v: k.replace("_", "-") for k, v in BREAKER_STATES.items()}
    states = [c for (dep, _r), c in sorted(d.breaker.items()) if dep == INVENTORY]
    breaker = tuple(max((x for x in v if not math.isnan(x)), default=math.nan) for v in zip(*states)) \
        if states else (math.nan,) * len(d.times)
    calls = _total(d, [c for (callee, _o), c in d.calls.items() if callee == INVENTORY])
    answered = _total(d, list(d.requests.values()))
    m = world.metrics
    retries = (m.range(lambda at: sum_by(m.rate(RETRIES, DASHBOARD_WINDOW, at, service=SERVICE,
                                                 dependency=INVENTORY), ()))
               if RETRIES in m.names() else [])
    during = f"while inventory is down (t={a:g}..{b:g})"
    nothing = "nothing was answered then"
    return [
        item("circuit breaker", f'max({BREAKER_STATE}{{{selector}, dependency="{INVENTORY}"}})',
             f"the breaker on inventory opens (1) or half-opens (2) {during}", breaker, a, b,
             lambda i: breaker[i] >= 1, lambda v: names.get(round(v), f"{v:g}"),
             f"the service sets no {BREAKER_STATE} gauge"),
        item("calls made", f'sum(rate(http_client_requests_total{{{selector}, callee="{INVENTORY}"}}{w}))',
             f"calls to inventory fall to {PROBES_PER_SECOND}/s or fewer (probes) {OPEN_WITHIN:g} s into the "
             f"outage, while the checkout still answers {RATE // 2} orders/s or more (panel 'requests / s')",
             calls, settled, b, lambda i: calls[i] <= PROBES_PER_SECOND and answered[i] >= RATE / 2,
             rate("calls/s"), "no call was made"),
        item("requests / s by status", f'sum(rate(http_server_requests_total{{{selector}, status=~"5.."}}{w}))',
             f"orders are refused fast (503 with Retry-After) {during}", d.requests["5xx"], a, b,
             lambda i: d.requests["5xx"][i] > 0, rate("/s"), "no order was refused (or none answered)"),
        item("latency", f"histogram_quantile(0.99, rate(http_server_request_duration_seconds_bucket{{{selector}}}{w}))",
             f"p99 latency is back under {LATENCY_BOUND:g} s while inventory is still down", d.latency["p99"],
             settled, b, lambda i: d.latency["p99"][i] <= LATENCY_BOUND, rate("s"), nothing),
        item("(no panel: query it)", f'sum(rate({RETRIES}{{{selector}, dependency="{INVENTORY}"}}{w}))',
             "the checkout retries a call to inventory now and then (and counts it on its retries counter)",
             retries[0].values if retries else (math.nan,) * len(d.times), 0.0, d.times[-1],
             lambda i: retries[0].values[i] > 0, rate("/s"), f"the service counts no {RETRIES}"),
        item("requests / s by status", f'sum(rate(http_server_requests_total{{{selector}, status=~"2.."}}{w}))',
             f"orders are confirmed again, {RATE // 2}/s or more, after inventory is back (t={b:g})",
             d.requests["2xx"], b + DASHBOARD_WINDOW, d.times[-1], lambda i: d.requests["2xx"][i] >= RATE / 2,
             rate("/s"), nothing),
    ]


#: What a grade cell runs: ``grade(create_app, *invariant_names)`` on the hidden bank.
grade = grader(check, lab=LAB)

#: The graded parts, by the grade cell's nbgrader id: the invariants each checks. Honest answers are graded with the
#: answers' bound: the generated code answers late but never dishonestly, and a part it passed would give the code as
#: handed out points.
PARTS: dict[str, tuple[str, ...]] = {
    "graceful-and-honest-answers": ("answered_gracefully", "refused_means_not_charged", "no_double_charge"),
    "retry-budget": ("retry_amplification",),
    "circuit-breaker": ("outage_contained", "breaker_transitions_legal", "recovered"),
}
