"""Module 06's blackboard: lab 06's checkout, inventory and payments, and the patterns that keep one slow
dependency from becoming an outage of everything.

Everything here is a small world run from a seed (``sandbox.World``), so the notebook shows
real runs, not canned numbers. The services are lab 06's own (``labs/06-resilience/lab.py``:
its inventory and payments apps, its shopper, its world for the last section); the checkout
in front of them is written here, one small version per pattern, in the order a request
meets them:

* ``deadline_run``: timeouts and a deadline that travels with the request (a header, as
  gRPC's ``grpc-timeout``) while inventory is slow;
* ``storm_run``, ``storm_figure``, ``jitter_widget``: a burst of orders against an inventory
  that can hold only a few requests at once, retried with AWS's four backoffs (none, full,
  equal, decorrelated jitter) and at once;
* ``amplification_run``, ``amplification_table``: retries at every layer of a chain multiply
  (3 layers x 3 attempts = 27 calls); a retry budget (Finagle's ``RetryBudget``) does not;
* ``breaker_run``, ``breaker_widget``: a circuit breaker (closed, open, half-open, over a time
  window as resilience4j's) on inventory through an outage, on the metrics dashboard;
* ``bulkhead_run``: slow payments exhausting one shared pool of calls, or only its own;
* ``graceful_table``: lab 06's generated code, a partial fix and the reference, and what each
  tells the shopper.

The backoff formulas and the breaker are written out here, not taken from a library
(``tenacity``, ``pybreaker``): they are what the module teaches, each a few lines, and they
must run in virtual time (``sandbox.sleep``, ``time.monotonic`` answered by the world).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Header
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from pydantic import Field

import sandbox
from autograder.labs import load_module
from sandbox.faults import Delay, Partition, Schedule

from .idempotency import Picture, png

LAB_DIR = Path(__file__).resolve().parents[2] / "labs" / "06-resilience"
#: Lab 06's module (``lab.py``): its services, shopper, world and checkers.
lab = load_module(LAB_DIR, "lab", "chaos_dojo_labs.lab06")

SEED = 6
SERVICE, INVENTORY, PAYMENTS = lab.SERVICE, lab.INVENTORY, lab.PAYMENTS
ORDERS_URL = lab.URL
RESERVE_URL = f"http://{INVENTORY}/reservations"
CHARGE_URL = f"http://{PAYMENTS}/charges"


class Order(lab.Reservation):
    """Lab 06's order: hold ``qty`` of ``sku`` for ``order_id``, and charge ``amount`` cents."""

    amount: int = Field(gt=0)


def _whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is a whole number in [low, high]; else an error naming it and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        top = f" and <= {high}" if high is not None else ""
        raise sandbox.InvalidParameterError(f"{name}={value!r}: use a whole number >= {low}{top}")
    return value


def _number(name: str, value: Any, low: float, high: float) -> float:
    """``value`` if it is a number in (low, high]; else an error naming it and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise sandbox.InvalidParameterError(f"{name}={value!r}: use a number above {low:g} and at most {high:g}")
    return float(value)


def _choice(name: str, value: Any, options: tuple[str, ...]) -> str:
    if value not in options:
        raise sandbox.InvalidParameterError(f"{name}={value!r}: choose one of {list(options)}")
    return value


def _seeds(seeds: Any) -> list[int]:
    """The seeds a widget offers, checked: a non-empty tuple of seeds (as ``sandbox.World`` takes them)."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (tuple, list)) or not seeds:
        raise sandbox.InvalidParameterError(f"seeds={seeds!r}: give a tuple of one or more seeds, e.g. ({SEED}, "
                                            f"{SEED + 1})")
    for seed in seeds:
        sandbox.World(seed=seed)  # a bad seed is refused here, with its own message, before any widget is drawn
    return list(seeds)


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _received(world: sandbox.World, service: str, path: str) -> list[float]:
    """When each request for ``path`` reached ``service`` (any replica), from the network's log: what really
    arrived, whatever the caller's code says about itself."""
    names = {i.name for i in world.services[service].instances}
    return [e[0] for e in world.recorder.log if e[1] == "http.request" and e[2] in names and e[6] == path]


async def _visitor(client: sandbox.Client, url: str, rate: float, seconds: float, patience: float,
                   f: str = "order") -> None:
    """A shopper placing lab 06's orders at ``url``, Poisson at ``rate`` per second for ``seconds`` seconds, one at
    a time, each waited for ``patience`` seconds and sent with that budget in ``Request-Timeout`` (as gRPC sends
    ``grpc-timeout``). Each is an operation ``f`` recording status and latency."""
    t = client.random.expovariate(rate)
    j = 0
    while t < seconds:
        if t > client.now:
            await client.sleep(t - client.now)
        order = {"order_id": f"{client.name}-{j}", "sku": f"sku-{client.random.randrange(20)}", "qty": 1,
                 "amount": 100 * client.random.randint(5, 90)}
        async with client.operation(f, order) as op:
            sent = client.now
            try:
                r = await client.http.post(url, json=order, timeout=patience,
                                           headers={"Request-Timeout": f"{patience:g}"})
            except sandbox.RequestTimeout:
                op.info({"status": None, "latency": client.now - sent}, "gave up")
            else:
                seen = {"status": r.status_code, "latency": client.now - sent}
                (op.ok if r.status_code < 300 else op.fail)(seen)
        j += 1
        t = max(t, client.now) + client.random.expovariate(rate)


def _answers(world: sandbox.World, f: str = "order") -> list[tuple[Any, Any]]:
    """(invoke, completion) of every operation ``f`` in the history."""
    return [(i, d) for i, d in world.history.pairs() if i.f == f]


def _refuse(detail: str, retry_after: int = 1) -> JSONResponse:
    """503 with ``Retry-After``: refused, nothing done, come back in ``retry_after`` seconds."""
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after)})


def _checkout(version: str, place: Any) -> FastAPI:
    """A checkout app whose ``POST /orders`` is ``place`` (an endpoint function), titled after its ``version``."""
    app = FastAPI(title=f"checkout ({version})")
    app.post("/orders", status_code=201)(place)
    return app


def _reservation(order: lab.Reservation | Any) -> dict:
    return {"order_id": order.order_id, "sku": order.sku, "qty": order.qty}


# --- 1. timeouts and deadlines ------------------------------------------------------------------

#: How long a shopper waits for an answer (seconds), and sends as its budget.
PATIENCE = 1.0
#: Of the budget, what the checkout keeps for its answer's way back.
MARGIN = 0.1
#: The per-call timeout and attempts of the "timeout per call" and "deadline" checkouts.
CALL_TIMEOUT, CALL_ATTEMPTS = 0.5, 3
DEADLINE_POLICIES = ("no timeout", "timeout per call", "deadline")
#: Inventory is slow (each message 0.6 s late, so a call takes 1.2 s) from SLOW_FROM for SLOW_FOR seconds.
SLOW_FROM, SLOW_FOR, SLOW_LATENCY = 1.0, 3.0, 0.6


def create_deadline_app(policy: str) -> Any:
    """The checkout (reserve only) for ``policy``: ``"no timeout"`` waits as long as the call takes (httpx's
    default: five seconds), ``"timeout per call"`` tries CALL_ATTEMPTS times, each CALL_TIMEOUT seconds,
    ``"deadline"`` does the same within the budget the shopper sent (``Request-Timeout``), then answers 503.

    Raises:
        sandbox.InvalidParameterError: an unknown policy.
    """
    _choice("policy", policy, DEADLINE_POLICIES)

    def factory() -> FastAPI:
        async def place(order: lab.Reservation, request_timeout: float | None = Header(None),
                        http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Any:
            if policy == "no timeout":
                sandbox.event("call", order=order.order_id)  # counted by deadline_run
                r = await http.post(RESERVE_URL, json=_reservation(order))
                return {"order_id": order.order_id, "status": "confirmed" if r.status_code == 200 else "failed"}
            deadline = math.inf
            if policy == "deadline" and request_timeout is not None:
                deadline = time.monotonic() + request_timeout - MARGIN  # the deadline travels with the request
            for attempt in range(CALL_ATTEMPTS):
                left = deadline - time.monotonic()
                if left <= 0.01:
                    break  # the shopper will not wait: answer now, do no more work for nobody
                sandbox.event("call", order=order.order_id)  # counted by deadline_run
                try:
                    r = await http.post(RESERVE_URL, json=_reservation(order), timeout=min(CALL_TIMEOUT, left))
                    if r.status_code == 200:
                        return {"order_id": order.order_id, "status": "confirmed"}
                except sandbox.RequestTimeout:
                    pass
            return _refuse("inventory is not answering: nothing was reserved; try again shortly")

        return _checkout(policy, place)

    return factory


@dataclass(frozen=True)
class DeadlineRun:
    """What the shoppers heard under one policy, and the work the checkout did for shoppers who had left."""

    policy: str
    orders: int
    in_time: int  # answered within the shopper's patience (201 or 503)
    confirmed: int  # of those, 201
    gave_up: int  # no answer in time: the shopper left
    calls: int  # calls the checkout sent to inventory
    wasted: int  # of those, sent after the order's shopper had given up
    orphans: int  # stock reserved for an order whose shopper never heard it was confirmed

    def __str__(self) -> str:
        return (f"{self.policy:17} {self.orders} orders: {self.in_time:2} answered in time ({self.confirmed} "
                f"confirmed), {self.gave_up:2} shoppers gave up; {self.calls} calls to inventory, {self.wasted:2} "
                f"sent after the shopper had left; {self.orphans:2} reservations held for nobody")


@lru_cache(maxsize=32)
def deadline_run(policy: str, seed: int = SEED) -> DeadlineRun:
    """Ten shoppers, two orders a second each, for five seconds; inventory slow from SLOW_FROM for SLOW_FOR
    seconds (a call takes 1.2 s, a shopper waits PATIENCE). What they heard under ``policy``.

    Example::

        print(deadline_run("deadline"))

    Raises:
        sandbox.InvalidParameterError: an unknown policy.
    """
    factory = create_deadline_app(policy)
    world = sandbox.World(seed=seed)
    world.add_database(lab.INVENTORY_DB)
    world.add_service(INVENTORY, lab.create_inventory_app, isolate_module=False)
    world.add_service(SERVICE, factory, replicas=2)
    for i in range(10):
        world.add_client(f"shopper-{i}", _visitor, ORDERS_URL, 2.0, 5.0, PATIENCE)
    world.inject(Schedule([Delay(INVENTORY, peer=SERVICE, latency=SLOW_LATENCY, start=SLOW_FROM,
                                 duration=SLOW_FOR)]))
    world.run(settle=6.0)
    left_at = {i.value["order_id"]: i.time + PATIENCE for i, _d in _answers(world)}
    calls = [e for e in world.events if e.kind == "call"]
    answers = _answers(world)
    in_time = [d for _i, d in answers if d is not None and d.value["status"] is not None]
    heard = {i.value["order_id"] for i, d in answers if d is not None and d.value["status"] == 201}
    held = world.database(lab.INVENTORY_DB).rows(lab.RESERVATIONS)
    return DeadlineRun(policy, len(answers), len(in_time), len(heard), len(answers) - len(in_time), len(calls),
                       sum(1 for e in calls if e.time > left_at[e["order"]] + 1e-9),
                       sum(1 for order in held if order not in heard))


# --- 2. retries: backoff and jitter -------------------------------------------------------------

#: How many reservations inventory holds at once (more: 503 at once), and how long each takes (seconds).
CAPACITY, WORK = 10, 0.02
#: The backoff's base and cap (seconds), and how many attempts a checkout makes per order.
BASE, CAP, ATTEMPTS = 0.05, 2.0, 8
#: The retry strategies: AWS's "Exponential Backoff and Jitter" four, and retrying at once.
STRATEGIES = ("at once", "no jitter", "full jitter", "equal jitter", "decorrelated jitter")
#: The burst: this many orders arrive within two milliseconds of BURST_AT.
BURST, BURST_AT = 100, 0.2
#: Each strategy's name on a bar chart.
_SHORT = {"at once": "at once", "no jitter": "none", "full jitter": "full", "equal jitter": "equal",
          "decorrelated jitter": "decorr."}
#: The bins of the calls-per-interval picture (seconds).
BIN = 0.1


def backoff(strategy: str, attempt: int, previous: float, rng: random.Random) -> float:
    """How long to wait before retry number ``attempt`` (1 for the first retry) under ``strategy``, as in AWS's
    "Exponential Backoff and Jitter" (``previous``: the last wait, for decorrelated jitter).

    Example::

        backoff("full jitter", 3, 0.0, random.Random(1))   # somewhere in [0, min(CAP, BASE * 2**3)]
    """
    exp = min(CAP, BASE * 2**attempt)
    if strategy == "at once":
        return 0.0
    if strategy == "no jitter":
        return exp
    if strategy == "full jitter":
        return rng.uniform(0, exp)
    if strategy == "equal jitter":
        return exp / 2 + rng.uniform(0, exp / 2)
    if strategy == "decorrelated jitter":
        return min(CAP, rng.uniform(BASE, max(BASE, previous) * 3))
    raise sandbox.InvalidParameterError(f"strategy={strategy!r}: choose one of {list(STRATEGIES)}")


def create_struggling_inventory_app() -> FastAPI:
    """Inventory that holds at most CAPACITY reservations at once (each WORK seconds): one more is answered
    503 at once, as a server with a full worker pool sheds load."""
    app = FastAPI(title="inventory (struggling)")
    busy = {"now": 0}

    @app.post("/reservations")
    async def reserve(r: lab.Reservation, db: sandbox.Database = Depends(sandbox.database(lab.INVENTORY_DB))) -> Any:
        if busy["now"] >= CAPACITY:
            return _refuse("too busy", 1)
        busy["now"] += 1
        try:
            await sandbox.sleep(WORK)
            await db.put(lab.RESERVATIONS, r.order_id, r.model_dump())
        finally:
            busy["now"] -= 1
        return {"order_id": r.order_id, "reserved": r.qty}

    return app


def create_retrying_app(strategy: str) -> Any:
    """The checkout (reserve only) that retries a refused reservation up to ATTEMPTS times, waiting
    ``backoff(strategy, ...)`` between attempts.

    Raises:
        sandbox.InvalidParameterError: an unknown strategy.
    """
    _choice("strategy", strategy, STRATEGIES)

    def factory() -> FastAPI:
        async def place(order: lab.Reservation, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Any:
            wait = 0.0
            for attempt in range(ATTEMPTS):
                if attempt:
                    wait = backoff(strategy, attempt, wait, random)  # random: the world's seeded stream here
                    await sandbox.sleep(wait)
                try:
                    r = await http.post(RESERVE_URL, json=_reservation(order), timeout=1.0)
                    if r.status_code == 200:
                        return {"order_id": order.order_id, "status": "confirmed", "attempts": attempt + 1}
                except sandbox.RequestTimeout:
                    pass
            return _refuse(f"inventory refused {ATTEMPTS} times: nothing was reserved")

        return _checkout(strategy, place)

    return factory


async def _burst_shopper(client: sandbox.Client, answers: list) -> None:
    await client.sleep(BURST_AT + client.random.uniform(0.0, 0.002))
    order = {"order_id": client.name, "sku": "lamp", "qty": 1}
    sent = client.now
    r = await client.http.post(ORDERS_URL, json=order, timeout=30.0)
    answers.append((r.status_code, client.now - sent))


@dataclass(frozen=True)
class StormRun:
    """A burst of orders against the struggling inventory, under one retry strategy."""

    strategy: str
    orders: int
    confirmed: int
    calls: int  # calls that reached inventory: the work
    arrivals: tuple[float, ...]  # when each reached it
    done_at: float  # when the last order was answered (seconds after the burst)

    @property
    def calls_per_order(self) -> float:
        return self.calls / self.orders

    def per_bin(self, width: float = BIN) -> list[int]:
        """Calls that reached inventory in each ``width``-second bin from the burst on."""
        n = int((max(self.arrivals, default=BURST_AT) - BURST_AT) / width) + 1
        bins = [0] * n
        for t in self.arrivals:
            bins[min(n - 1, max(0, int((t - BURST_AT) / width)))] += 1
        return bins

    @property
    def peak(self) -> int:
        """The most calls that reached inventory in one BIN after the first (the first is the burst itself)."""
        return max(self.per_bin()[1:], default=0)

    def __str__(self) -> str:
        return (f"{self.strategy:20} {self.confirmed}/{self.orders} confirmed, {self.calls} calls "
                f"({self.calls_per_order:.1f} per order), at most {self.peak} per {BIN * 1000:g} ms after the "
                f"first, all answered {self.done_at:.2f} s after the burst")


@lru_cache(maxsize=128)
def storm_run(strategy: str, orders: int = BURST, seed: int = SEED) -> StormRun:
    """``orders`` orders within two milliseconds (a sale opens) at a checkout (two replicas) that retries
    under ``strategy``, in front of inventory that holds CAPACITY at once.

    Example::

        print(storm_run("no jitter"))

    Raises:
        sandbox.InvalidParameterError: an unknown strategy, or orders not a whole number in [1, 400].
    """
    factory = create_retrying_app(strategy)
    _whole("orders", orders, 1, 400)
    world = sandbox.World(seed=seed)
    world.add_database(lab.INVENTORY_DB)
    world.add_service(INVENTORY, create_struggling_inventory_app)
    world.add_service(SERVICE, factory, replicas=2)
    answers: list[tuple[int, float]] = []
    for i in range(orders):
        world.add_client(f"ord-{i}", _burst_shopper, answers)
    world.run(settle=1.0)
    arrivals = tuple(_received(world, INVENTORY, "/reservations"))
    return StormRun(strategy, orders, sum(1 for s, _ in answers if s == 201), len(arrivals), arrivals,
                    round(max((t for _, t in answers), default=0.0), 4))


def storm_figure(orders: int = BURST, seed: int = SEED, strategies: tuple[str, ...] = STRATEGIES) -> Picture:
    """For each of ``strategies``, a burst of ``orders`` orders (``storm_run``): left, the calls reaching inventory
    per BIN seconds after the burst; right, the work (calls per order) and when the last order was answered."""
    if isinstance(strategies, str) or not strategies:
        raise sandbox.InvalidParameterError(f"strategies={strategies!r}: give a tuple of at least one of "
                                            f"{list(STRATEGIES)}, e.g. ('no jitter', 'full jitter')")
    for s in strategies:
        _choice("strategy", s, STRATEGIES)
    runs = [storm_run(s, orders, seed) for s in strategies]
    fig = Picture(figsize=(11.0, 3.8))
    timeline, work, done = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.2, 1, 1]})
    colors = dict(zip(STRATEGIES, ("#868e96", "#c92a2a", "#1f5fa8", "#2b8a3e", "#d9822b")))
    horizon = min(3.5, max(r.done_at for r in runs) + 0.3)
    for run in runs:
        bins = run.per_bin()[: math.ceil(horizon / BIN)]
        xs = [BIN * k for k in range(len(bins))]
        timeline.step(xs + [BIN * len(bins)], bins + [0], where="post", lw=1.6, color=colors[run.strategy],
                      label=run.strategy)
    served = CAPACITY * BIN / WORK
    timeline.axhline(served, color="#343a40", lw=0.8, ls=":")
    timeline.text(horizon * 0.3, served * 1.15, f"inventory could serve {served:g} per {BIN * 1000:g} ms, spread out",
                  ha="left", va="bottom", fontsize=8, color="#343a40")
    timeline.set_xlim(0, horizon)
    timeline.set_yscale("symlog", linthresh=10)
    timeline.set_ylim(0, max(max(r.per_bin()) for r in runs) * 3)
    timeline.set_xlabel("seconds after the burst (virtual)")
    timeline.set_ylabel("calls (log scale above 10)", fontsize=8)
    timeline.set_title(f"calls reaching inventory per {BIN * 1000:g} ms", fontsize=10)
    timeline.legend(fontsize=8, loc="upper right", frameon=True, framealpha=0.9)
    names = [_SHORT[r.strategy] for r in runs]
    work.bar(names, [r.calls_per_order for r in runs], color=[colors[r.strategy] for r in runs])
    work.set_title("work: calls per order", fontsize=10)
    done.bar(names, [r.done_at for r in runs], color=[colors[r.strategy] for r in runs])
    done.set_title("seconds until the last answer", fontsize=10)
    for ax, values in ((work, [r.calls_per_order for r in runs]), (done, [r.done_at for r in runs])):
        for k, (v, r) in enumerate(zip(values, runs)):
            label = f"{v:.1f}" + ("" if r.confirmed == r.orders else f"\n{r.orders - r.confirmed} failed")
            ax.text(k, v, label, ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(values) * 1.35)
        ax.set_xlabel("retry strategy (jitter)", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    for ax in (timeline, work, done):
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{orders} orders at once, inventory holds {CAPACITY} at a time; up to {ATTEMPTS} attempts, "
                 f"base {BASE * 1000:g} ms, cap {CAP:g} s (seed {seed})", fontsize=10)
    fig.tight_layout()
    return fig


@lru_cache(maxsize=64)
def _storm_png(orders: int, seed: int, strategies: tuple[str, ...]) -> bytes:
    return png(storm_figure(orders, seed, strategies))


def jitter_widget(seeds: tuple[int, ...] = (SEED, SEED + 1, SEED + 2)) -> Any:
    """Choose the retry strategies to compare, the size of the burst and the seed; see ``storm_figure`` and the
    numbers behind it (each run cached)."""
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    chosen = widgets.SelectMultiple(options=list(STRATEGIES), value=list(STRATEGIES[1:]), rows=5,
                                    description="strategies", style=style)
    orders = widgets.SelectionSlider(options=[25, 50, 100, 150], value=BURST, description="orders at once",
                                     style=style)
    options = _seeds(seeds)
    seed = widgets.Dropdown(options=options, value=options[0], description="seed", style=style)
    image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="940px"))
    table = widgets.HTML()

    def redraw(_change: Any = None) -> None:
        picked = tuple(s for s in STRATEGIES if s in chosen.value) or (STRATEGIES[1],)
        image.value = _storm_png(orders.value, seed.value, picked)
        rows = "".join(f"<tr><td>{r.strategy}</td><td>{r.confirmed}/{r.orders}</td><td>{r.calls}</td>"
                       f"<td>{r.peak}</td><td>{r.done_at:.2f} s</td></tr>"
                       for r in (storm_run(s, orders.value, seed.value) for s in picked))
        table.value = ("<table><tr><th>strategy</th><th>confirmed</th><th>calls to inventory</th>"
                       f"<th>most calls in {BIN * 1000:g} ms (after the first)</th><th>last answer</th></tr>"
                       f"{rows}</table>")

    for control in (chosen, orders, seed):
        control.observe(redraw, "value")
    redraw()
    return widgets.VBox([widgets.HBox([chosen, widgets.VBox([orders, seed])]), image, table])


# --- 3. retry amplification and retry budgets -------------------------------------------------------


class RetryBudget:
    """A retry budget, as Finagle's ``RetryBudget``: each request deposits ``ratio`` of a token, each retry
    withdraws a whole one, and the bucket holds at most ``cap`` (a reserve for when requests are few).

    It is like a tip jar: every customer drops a dime, and a retry costs a dollar; when everything fails at
    once, the jar empties and retries stop, while a retry now and then is always paid for.
    """

    def __init__(self, ratio: float = 0.1, cap: float = 5.0) -> None:
        self.ratio, self.cap, self.tokens = ratio, cap, cap

    def deposit(self) -> None:
        self.tokens = min(self.cap, self.tokens + self.ratio)

    def withdraw(self) -> bool:
        """True (and one token less) if a retry may go now."""
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def create_failing_app() -> FastAPI:
    """Inventory, overloaded: every reservation is answered 503 at once."""
    app = FastAPI(title="inventory (failing)")

    @app.post("/reservations")
    async def reserve(r: lab.Reservation) -> Any:
        return _refuse("overloaded", 1)

    return app


def create_layer_app(downstream: str, attempts: int, budget: bool) -> Any:
    """A service of a chain: ``POST /reservations`` calls ``downstream`` up to ``attempts`` times (with a
    ``RetryBudget`` per replica if ``budget``), then answers 503."""

    def factory() -> FastAPI:
        app = FastAPI(title="layer")
        spend = RetryBudget() if budget else None

        @app.post("/reservations")
        async def reserve(r: lab.Reservation, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Any:
            if spend is not None:
                spend.deposit()
            for attempt in range(attempts):
                if attempt and spend is not None and not spend.withdraw():
                    break  # the budget is spent: do not add to the storm
                r2 = await http.post(f"http://{downstream}/reservations", json=r.model_dump(), timeout=2.0)
                if r2.status_code == 200:
                    return r2.json()
            return _refuse("unavailable", 1)

        return app

    return factory


async def _chain_shopper(client: sandbox.Client, orders: int) -> None:
    for j in range(orders):
        await client.sleep(client.random.expovariate(2.0))
        await client.http.post("http://layer-1/reservations", timeout=30.0,
                               json={"order_id": f"{client.name}-{j}", "sku": "lamp", "qty": 1})


#: The chain's workload: this many shoppers, each sending this many orders (Poisson, two a second).
CHAIN_SHOPPERS, CHAIN_ORDERS = 10, 4


@lru_cache(maxsize=64)
def amplification_run(layers: int, attempts: int, budget: bool = False, seed: int = SEED) -> float:
    """Calls reaching the failing inventory per order, through a chain of ``layers`` services that each try
    ``attempts`` times (with a retry budget at each layer if ``budget``). Measured: CHAIN_SHOPPERS shoppers
    send CHAIN_ORDERS orders each to ``layer-1``, which calls ``layer-2``..., the last calls inventory.

    Raises:
        sandbox.InvalidParameterError: layers not in [1, 4], attempts not in [1, 5].
    """
    _whole("layers", layers, 1, 4)
    _whole("attempts", attempts, 1, 5)
    world = sandbox.World(seed=seed)
    world.add_service(INVENTORY, create_failing_app)
    for k in range(1, layers + 1):
        downstream = f"layer-{k + 1}" if k < layers else INVENTORY
        world.add_service(f"layer-{k}", create_layer_app(downstream, attempts, budget))
    for i in range(CHAIN_SHOPPERS):
        world.add_client(f"shopper-{i}", _chain_shopper, CHAIN_ORDERS)
    world.run(settle=1.0)
    return len(_received(world, INVENTORY, "/reservations")) / (CHAIN_SHOPPERS * CHAIN_ORDERS)


def amplification_table(seed: int = SEED) -> str:
    """Calls reaching inventory per order, for 1 to 3 layers and 1 to 3 attempts at each, without and with a
    retry budget at every layer: a table of measured runs."""
    lines = [f"calls reaching the failing inventory per order ({CHAIN_SHOPPERS * CHAIN_ORDERS} orders, seed {seed})",
             f"{'layers':>6} | {'attempts at each layer:':>23} {1:>5} {2:>5} {3:>5} | with a retry budget: {1:>5} "
             f"{2:>5} {3:>5}"]
    for layers in (1, 2, 3):
        plain = " ".join(f"{amplification_run(layers, a, False, seed):5.2f}" for a in (1, 2, 3))
        kept = " ".join(f"{amplification_run(layers, a, True, seed):5.2f}" for a in (1, 2, 3))
        lines.append(f"{layers:>6} | {'':23} {plain} | {'':20} {kept}")
    return "\n".join(lines)


# --- 4. circuit breakers --------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerSettings:
    """A circuit breaker's parameters, as resilience4j names them: over the last ``window`` seconds
    (``slidingWindowSize``, time-based), at least ``min_calls`` calls (``minimumNumberOfCalls``) of which
    ``failure_rate`` % failed (``failureRateThreshold``): open, for ``open_for`` seconds
    (``waitDurationInOpenState``); then half-open, letting one probe through.

    Raises:
        sandbox.InvalidParameterError: a value out of its range (each is named with the range).
    """

    failure_rate: int = 50
    window: float = 1.0
    min_calls: int = 10
    open_for: float = 1.0

    def __post_init__(self) -> None:
        _whole("failure_rate", self.failure_rate, 1, 100)
        _number("window", self.window, 0.0, 10.0)
        _whole("min_calls", self.min_calls, 1, 200)
        _number("open_for", self.open_for, 0.0, 10.0)


#: The breaker's states and their values on the ``circuit_breaker_state`` gauge (as the dashboard reads them).
STATES = {"closed": 0, "open": 1, "half_open": 2}


class Breaker:
    """A circuit breaker on one dependency, in one replica: closed, open or half-open (see ``BreakerSettings``).

    Like a fuse box that resets itself: ``allow()`` says whether a call may go now (half-open: only the one
    probe), ``record(ok)`` tells it how the call went. Each move is reported with ``sandbox.event("breaker",
    ...)`` (what ``breaker_transitions_legal`` checks) and shown on the ``circuit_breaker_state`` gauge.
    """

    def __init__(self, name: str, settings: BreakerSettings, gauge: Gauge) -> None:
        self.name, self.settings, self.gauge = name, settings, gauge
        self.state, self.opened_at, self.probe_out = "closed", 0.0, False
        self.outcomes: list[tuple[float, bool]] = []  # (when, ok) of the calls in the window
        gauge.labels(name).set(STATES["closed"])

    def move(self, to: str) -> None:
        sandbox.event("breaker", name=self.name, before=self.state, after=to)
        self.state = to
        self.gauge.labels(self.name).set(STATES[to])

    def allow(self) -> bool:
        if self.state == "open" and time.monotonic() - self.opened_at >= self.settings.open_for:
            self.move("half_open")
        if self.state == "half_open" and not self.probe_out:
            self.probe_out = True  # this call is the probe
            return True
        return self.state == "closed"

    def record(self, ok: bool) -> None:
        now, s = time.monotonic(), self.settings
        if self.state == "half_open" and self.probe_out:
            self.probe_out = False
            if ok:
                self.outcomes = []
                self.move("closed")
            else:
                self.opened_at = now
                self.move("open")
            return
        if self.state != "closed":
            return  # a call sent before the breaker opened: its answer changes nothing now
        self.outcomes = [(t, o) for t, o in self.outcomes if now - t < s.window] + [(now, ok)]
        failed = sum(1 for _t, o in self.outcomes if not o)
        if len(self.outcomes) >= s.min_calls and 100 * failed >= s.failure_rate * len(self.outcomes):
            self.opened_at = now
            self.move("open")

    def retry_after(self) -> int:
        """Whole seconds until the breaker may half-open (at least 1): the 503's ``Retry-After``."""
        return max(1, math.ceil(self.opened_at + self.settings.open_for - time.monotonic()))


def create_breaker_app(settings: BreakerSettings) -> Any:
    """Lab 06's checkout with a breaker on inventory (``settings``): reserve (one attempt, RESERVE_TIMEOUT), charge
    with the order's ``Idempotency-Key`` (CHARGE_TIMEOUT), confirm; inventory unavailable or the breaker open:
    503 with ``Retry-After`` at once, nothing charged; a charge of unknown fate: 202 pending."""

    def factory() -> FastAPI:
        app = FastAPI(title="checkout (breaker)")
        gauge = Gauge(sandbox.metrics.BREAKER_STATE, "0 closed, 1 open, 2 half-open", ["dependency"],
                      registry=sandbox.metrics_registry(app))
        breaker = Breaker(INVENTORY, settings, gauge)

        @app.post("/orders", status_code=201)
        async def place(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Any:
            if not breaker.allow():
                return _refuse("inventory is unavailable (breaker open): nothing was charged", breaker.retry_after())
            sandbox.event("call", order=order.order_id)  # counted by breaker_run
            try:
                r = await http.post(RESERVE_URL, json=_reservation(order), timeout=RESERVE_TIMEOUT)
                ok = r.status_code == 200
            except sandbox.RequestTimeout:
                ok = False
            breaker.record(ok)
            if not ok:
                return _refuse("inventory did not answer: nothing was charged", 1)
            try:
                r = await http.post(CHARGE_URL, json={"order_id": order.order_id, "amount": order.amount},
                                    headers={"Idempotency-Key": f"charge-{order.order_id}"}, timeout=CHARGE_TIMEOUT)
            except sandbox.RequestTimeout:
                return JSONResponse({"order_id": order.order_id, "status": "pending"}, status_code=202)
            if r.status_code != 201:
                return JSONResponse({"order_id": order.order_id, "status": "pending"}, status_code=202)
            return JSONResponse({"order_id": order.order_id, "status": "confirmed"}, status_code=201)

        return app

    return factory


RESERVE_TIMEOUT, CHARGE_TIMEOUT = 0.25, 1.0
#: The breaker's world: shoppers, orders a second in all, for how long; inventory cut off from OUTAGE_AT for
#: OUTAGE_FOR seconds.
BREAKER_SHOPPERS, BREAKER_RATE, BREAKER_SECONDS = 20, 40.0, 10.0
OUTAGE_AT, OUTAGE_FOR = 2.0, 4.0
#: Scrapes every SCRAPE seconds; the dashboard's rates over DASHBOARD_WINDOW seconds.
SCRAPE, DASHBOARD_WINDOW = 0.25, 1.0


@dataclass(frozen=True)
class BreakerRun:
    """Lab 06's shoppers through an inventory outage, at a checkout with one breaker setting: the world (for the
    dashboard) and what the breakers did."""

    settings: BreakerSettings
    world: sandbox.World
    opened: float | None  # seconds from the outage's start to the first breaker opening
    calls_open: float  # calls per second to inventory from OPEN_WITHIN after the start to the end of the outage
    closed: float | None  # seconds from the outage's end until every breaker was closed again
    statuses: dict[int | None, int]  # the shoppers' answers, by status (None: no answer)

    def __str__(self) -> str:
        opened = f"opened {self.opened:.2f} s into the outage" if self.opened is not None else "never opened"
        closed = (f"all closed {self.closed:.2f} s after it ended" if self.closed is not None
                  else "not all closed again")
        answers = ", ".join(f"{n} {s if s is not None else 'unanswered'}" for s, n in sorted(
            self.statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
        return (f"breaker {opened}; {self.calls_open:.1f} calls/s to inventory from {lab.OPEN_WITHIN:g} s into the "
                f"outage; {closed}. Answers: {answers}")


def _breaker_settings(failure_rate: int, window: float, min_calls: int, open_for: float) -> BreakerSettings:
    return BreakerSettings(failure_rate, window, min_calls, open_for)


@lru_cache(maxsize=32)
def breaker_run(failure_rate: int = 50, window: float = 1.0, min_calls: int = 10, open_for: float = 1.0,
                seed: int = SEED) -> BreakerRun:
    """BREAKER_SHOPPERS of lab 06's shoppers, BREAKER_RATE orders a second in all, through lab 06's inventory and
    payments, with inventory cut off from the checkout from OUTAGE_AT for OUTAGE_FOR seconds; the checkout
    (two replicas) has a breaker with these settings (``BreakerSettings``). Metrics are on: see
    ``sandbox.viz.dashboard(run.world, "checkout")``.

    Raises:
        sandbox.InvalidParameterError: a setting out of its range.
    """
    settings = _breaker_settings(failure_rate, window, min_calls, open_for)
    world = sandbox.World(seed=seed, metrics=True, scrape_interval=SCRAPE)
    world.add_database(lab.INVENTORY_DB)
    world.add_database(lab.PAYMENTS_DB)
    world.add_service(INVENTORY, lab.create_inventory_app, isolate_module=False)
    world.add_service(PAYMENTS, lab.create_payments_app, isolate_module=False)
    world.add_service(SERVICE, create_breaker_app(settings), replicas=2)
    for i in range(BREAKER_SHOPPERS):
        world.add_client(f"shopper-{i}", lab.shopper, i, BREAKER_RATE / BREAKER_SHOPPERS, BREAKER_SECONDS)
    world.inject(Schedule([Partition(SERVICE, INVENTORY, start=OUTAGE_AT, duration=OUTAGE_FOR)]))
    world.run(settle=1.0)
    moves = [e for e in world.events if e.kind == "breaker"]
    opens = [e.time - OUTAGE_AT for e in moves if e["after"] == "open" and e.time >= OUTAGE_AT]
    end = OUTAGE_AT + OUTAGE_FOR
    last: dict[str, Any] = {}
    for e in moves:
        last[e.node] = e
    settled = [e.time - end for e in last.values()]
    closed = (max(settled) if settled and all(e["after"] == "closed" for e in last.values()) and
              all(t >= 0 for t in settled) else None)
    span = end - (OUTAGE_AT + lab.OPEN_WITHIN)
    calls_open = sum(1 for e in world.events if e.kind == "call" and OUTAGE_AT + lab.OPEN_WITHIN <= e.time < end) / span
    statuses: dict[int | None, int] = {}
    for _i, d in _answers(world):
        status = d.value["status"] if d is not None else None
        statuses[status] = statuses.get(status, 0) + 1
    return BreakerRun(settings, world, min(opens, default=None), calls_open, closed, statuses)


def breaker_figure(run: BreakerRun) -> Any:
    """The checkout's metrics dashboard over the run (``sandbox.viz.dashboard``), the outage shaded; each panel's
    legend moved to a band of its own at the top, so that it covers no line (the breaker's probes reach the top)."""
    from sandbox.viz import dashboard

    fig = dashboard(run.world, SERVICE, window=DASHBOARD_WINDOW)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or ax.get_title(loc="left").startswith("error rate"):
            continue  # the error rate's scale is fixed at 0..100 %, its legend sits where the line is low
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + (high - low) * 0.45)
        ax.legend(fontsize=legend.get_texts()[0].get_fontsize(), frameon=False, loc="upper center", ncols=2)
    return fig


@lru_cache(maxsize=32)
def _breaker_png(failure_rate: int, window: float, min_calls: int, open_for: float, seed: int) -> bytes:
    from sandbox.viz import to_png

    return to_png(breaker_figure(breaker_run(failure_rate, window, min_calls, open_for, seed)))


def breaker_widget(seeds: tuple[int, ...] = (SEED, SEED + 1, SEED + 2)) -> Any:
    """Sliders for the breaker's settings (``BreakerSettings``) and the seed; the checkout's dashboard through
    the outage and a line of what the breakers did (each run cached)."""
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    layout = widgets.Layout(width="420px")
    rate = widgets.IntSlider(value=50, min=10, max=100, step=10, description="failure rate to open (%)",
                             style=style, layout=layout)
    window = widgets.SelectionSlider(options=[0.5, 1.0, 2.0, 4.0], value=1.0, description="window (s)",
                                     style=style, layout=layout)
    calls = widgets.SelectionSlider(options=[1, 5, 10, 20, 50, 200], value=10, description="minimum calls",
                                    style=style, layout=layout)
    wait = widgets.SelectionSlider(options=[0.25, 0.5, 1.0, 2.0, 4.0], value=1.0, description="open for (s)",
                                   style=style, layout=layout)
    options = _seeds(seeds)
    seed = widgets.Dropdown(options=options, value=options[0], description="seed", style=style)
    image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="940px"))
    summary = widgets.HTML()

    def redraw(_change: Any = None) -> None:
        args = (rate.value, window.value, calls.value, wait.value, seed.value)
        image.value = _breaker_png(*args)
        summary.value = f"<p>{breaker_run(*args)}</p>"

    for control in (rate, window, calls, wait, seed):
        control.observe(redraw, "value")
    redraw()
    return widgets.VBox([widgets.HBox([widgets.VBox([rate, window]), widgets.VBox([calls, wait, seed])]),
                         summary, image])


# --- 5. bulkheads and load shedding ---------------------------------------------------------------

#: Calls the checkout may have in flight to its dependencies (in all, or to each with bulkheads).
POOL = 8
BULKHEAD_DESIGNS = ("shared pool", "bulkheads", "bulkheads + shedding")
#: Payments is slow (each message this many seconds late) from PAYMENTS_SLOW_AT for PAYMENTS_SLOW_FOR seconds.
PAYMENTS_LATENCY, PAYMENTS_SLOW_AT, PAYMENTS_SLOW_FOR = 1.0, 1.0, 3.0
#: The workload: carts (two holds a second each) and buyers (an order a second each).
CARTS, BUYERS = 10, 30
#: How long a cart hold may take before it is too slow to be of use (seconds).
HOLD_PATIENCE = 0.5


def create_bulkhead_app(design: str) -> Any:
    """The checkout with two routes: ``POST /orders`` (reserve at inventory, then charge at payments) and ``POST
    /holds`` (put an item in a cart: reserve only). Its calls go through pools of POOL slots (an
    ``anyio.Semaphore``; in the sandbox, ``anyio.CapacityLimiter`` limits nothing: it is for threads): one for both dependencies (``"shared pool"``), one each (``"bulkheads"``), or one
    each and an order refused at once (503, ``Retry-After``) when the payments pool is full
    (``"bulkheads + shedding"``).

    Raises:
        sandbox.InvalidParameterError: an unknown design.
    """
    _choice("design", design, BULKHEAD_DESIGNS)

    def factory() -> FastAPI:
        app = FastAPI(title=f"checkout ({design})")
        shared = anyio.Semaphore(POOL)
        pools = {INVENTORY: shared, PAYMENTS: shared} if design == "shared pool" else {
            INVENTORY: anyio.Semaphore(POOL), PAYMENTS: anyio.Semaphore(POOL)}

        async def reserve(http: sandbox.HttpClient, order: lab.Reservation) -> bool:
            async with pools[INVENTORY]:
                r = await http.post(RESERVE_URL, json=_reservation(order), timeout=2.0)
            return r.status_code == 200

        @app.post("/holds", status_code=201)
        async def hold(item: lab.Reservation, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Any:
            if not await reserve(http, item):
                return _refuse("inventory refused: try again", 1)
            return {"order_id": item.order_id, "status": "held"}

        @app.post("/orders", status_code=201)
        async def place(order: Order, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Any:
            payments = pools[PAYMENTS]
            if design == "bulkheads + shedding" and payments.value < 1:
                return _refuse("payments is slow and its calls are all in use: nothing was charged", 2)
            if not await reserve(http, order):
                return _refuse("inventory refused: nothing was charged", 1)
            async with payments:
                try:
                    r = await http.post(CHARGE_URL, json={"order_id": order.order_id, "amount": order.amount},
                                        headers={"Idempotency-Key": f"charge-{order.order_id}"}, timeout=5.0)
                except sandbox.RequestTimeout:
                    return JSONResponse({"order_id": order.order_id, "status": "pending"}, status_code=202)
            return {"order_id": order.order_id, "status": "confirmed" if r.status_code == 201 else "pending"}

        return app

    return factory


@dataclass(frozen=True)
class BulkheadRun:
    """Cart holds and orders at a checkout of one design while payments is slow."""

    design: str
    holds: int
    holds_fast: int  # answered 201 within HOLD_PATIENCE
    hold_p99: float  # seconds
    orders: int
    order_statuses: dict[int | None, int]
    order_p99: float

    def __str__(self) -> str:
        statuses = ", ".join(f"{n} {s if s is not None else 'unanswered'}" for s, n in sorted(
            self.order_statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
        return (f"{self.design:21} holds: {self.holds_fast}/{self.holds} held within {HOLD_PATIENCE:g} s (p99 "
                f"{self.hold_p99:.2f} s); orders: {statuses} (p99 {self.order_p99:.2f} s)")


@lru_cache(maxsize=32)
def bulkhead_run(design: str, seed: int = SEED) -> BulkheadRun:
    """CARTS carts holding two items a second each and BUYERS buyers placing an order a second each (each
    waiting for its answer), for five seconds, at the checkout of ``design`` (one replica), while
    payments answers PAYMENTS_LATENCY seconds late each way from PAYMENTS_SLOW_AT for PAYMENTS_SLOW_FOR seconds.

    Raises:
        sandbox.InvalidParameterError: an unknown design.
    """
    factory = create_bulkhead_app(design)
    world = sandbox.World(seed=seed)
    world.add_database(lab.INVENTORY_DB)
    world.add_database(lab.PAYMENTS_DB)
    world.add_service(INVENTORY, lab.create_inventory_app, isolate_module=False)
    world.add_service(PAYMENTS, lab.create_payments_app, isolate_module=False)
    world.add_service(SERVICE, factory)
    for i in range(CARTS):
        world.add_client(f"cart-{i}", _visitor, f"http://{SERVICE}/holds", 2.0, 5.0, 10.0, "hold")
    for i in range(BUYERS):
        world.add_client(f"buyer-{i}", _visitor, ORDERS_URL, 1.0, 5.0, 10.0)
    world.inject(Schedule([Delay(PAYMENTS, peer=SERVICE, latency=PAYMENTS_LATENCY, start=PAYMENTS_SLOW_AT,
                                 duration=PAYMENTS_SLOW_FOR)]))
    world.run(settle=12.0)

    def latencies(f: str) -> list[float]:
        return [d.value["latency"] for _i, d in _answers(world, f) if d is not None]

    holds = _answers(world, "hold")
    orders = _answers(world, "order")
    statuses: dict[int | None, int] = {}
    for _i, d in orders:
        status = d.value["status"] if d is not None else None
        statuses[status] = statuses.get(status, 0) + 1
    fast = sum(1 for _i, d in holds if d is not None and d.value["status"] == 201
               and d.value["latency"] <= HOLD_PATIENCE)
    return BulkheadRun(design, len(holds), fast, _quantile(latencies("hold"), 0.99), len(orders), statuses,
                       _quantile(latencies("order"), 0.99))


# --- 6. what "graceful" means to the shopper -------------------------------------------------------

#: Lab 06's checkouts compared: the generated code, one partial fix (a mutant), the reference solution.
CHECKOUTS = {"generated": "generated", "refuses after a charge timed out": "mutants/refuse_after_charge_timeout",
             "reference solution": "solution"}
#: Lab 06's hand-written schedule 5: payments' answers three seconds late, then inventory killed.
GRACEFUL_SCHEDULE = 4


@dataclass(frozen=True)
class GracefulRun:
    """What lab 06's shoppers heard from one checkout, and whether it was honest."""

    checkout: str
    orders: int
    confirmed: int  # 201
    pending: int  # 202
    refused: int  # 503 with Retry-After
    late: int  # no answer within lab.LATENCY_BOUND seconds (or none at all)
    slowest: float  # the longest a shopper waited (seconds; CLIENT_TIMEOUT if one never heard)
    refused_but_charged: int
    verdicts: tuple[str, ...]  # lab 06's checkers: "PASS name" / "FAIL name"

    def row(self) -> str:
        return (f"{self.checkout:33} {self.orders:6} {self.confirmed:6} {self.pending:6} {self.refused:6} "
                f"{self.late:6} {self.slowest:7.1f} {self.refused_but_charged:9}")


@lru_cache(maxsize=16)
def graceful_run(checkout: str, seed: int = SEED, shoppers: int = 10) -> GracefulRun:
    """Lab 06's world (``lab.build_world``, ``shoppers`` of its shoppers: 2 orders a second each) under its
    hand-written schedule GRACEFUL_SCHEDULE, with the checkout ``checkout`` (a key of CHECKOUTS).

    Raises:
        sandbox.InvalidParameterError: an unknown checkout.
    """
    _choice("checkout", checkout, tuple(CHECKOUTS))
    world = lab.build_world(seed, lab.load(CHECKOUTS[checkout]).create_app, shoppers=shoppers)
    world.inject(lab.ADVERSARIAL[GRACEFUL_SCHEDULE])
    world.run(settle=lab.SETTLE, limit=lab.LIMIT)
    charged = {row["order_id"] for row in world.database(lab.PAYMENTS_DB).rows(lab.CHARGES).values()}
    done = [d for _i, d in _answers(world)]
    status = [d.value["status"] if d is not None else None for d in done]
    late = sum(1 for d in done if d is None or d.value["status"] is None or d.value["latency"] > lab.LATENCY_BOUND)
    refused = [d for d in done if d is not None and d.value["status"] == 503]
    checks = (lab.answered_gracefully(), lab.refused_means_not_charged(),
              lab.no_double_charge(lab.PAYMENTS_DB, lab.CHARGES, "order_id"))
    verdicts = tuple(f"{v.outcome.name} {v.invariant}" for v in (c(world) for c in checks))
    slowest = max(lab.CLIENT_TIMEOUT if d is None or d.value["status"] is None else d.value["latency"] for d in done)
    return GracefulRun(checkout, len(done), status.count(201), status.count(202),
                       sum(1 for d in refused if d.value.get("retry_after")), late, slowest,
                       sum(1 for d in refused if d.value["order_id"] in charged), verdicts)


def graceful_table(seed: int = SEED) -> str:
    """Each of CHECKOUTS through the same run: what the shoppers heard, and lab 06's verdicts."""
    runs = [graceful_run(name, seed) for name in CHECKOUTS]
    lines = [f"Lab 06's world, payments' answers 3 s late (t=1..4), then inventory killed (t=4.5..8); seed {seed}",
             f"{'checkout':33} {'orders':>6} {'201':>6} {'202':>6} {'503':>6} {'late':>6} {'slowest':>7} "
             f"{'refused':>9}",
             f"{'':33} {'':6} {'':6} {'':6} {'':6} {'>3.5 s':>6} {'(s)':>7} {'& charged':>9}"]
    lines += [r.row() for r in runs]
    for r in runs:
        lines.append(f"{r.checkout}: " + "; ".join(r.verdicts))
    return "\n".join(lines)


# --- self-check -------------------------------------------------------------------------------------


def check_full_jitter(fn: Any, tries: int = 2000) -> bool:
    """Check the learner's ``fn(attempt, base, cap, rng)``: the wait before retry ``attempt`` with full jitter.
    Prints what is right or wrong (with the value that shows it) and returns True if it is right."""
    rng = random.Random(SEED)
    for attempt, base, cap in ((1, 0.05, 2.0), (3, 0.05, 2.0), (8, 0.05, 2.0), (2, 0.1, 0.15)):
        top = min(cap, base * 2**attempt)
        try:
            waits = [fn(attempt, base, cap, rng) for _ in range(tries)]
        except Exception as error:  # the learner's code: say what went wrong, never a traceback from here
            print(f"not yet: fn({attempt}, {base}, {cap}, rng) raised {type(error).__name__}: {error}")
            return False
        bad = next((w for w in waits if isinstance(w, bool) or not isinstance(w, (int, float))), None)
        if bad is not None or not waits:
            print(f"not yet: fn({attempt}, {base}, {cap}, rng) returned {bad!r}: return a number of seconds")
            return False
        if min(waits) < 0 or max(waits) > top + 1e-12:
            print(f"not yet: with attempt={attempt}, base={base}, cap={cap} a wait of "
                  f"{min(waits) if min(waits) < 0 else max(waits):.4f} s came out; full jitter waits between 0 and "
                  f"min(cap, base * 2**attempt) = {top:g} s")
            return False
        if len(set(waits)) < tries // 2:
            print(f"not yet: with attempt={attempt} the waits take only {len(set(waits))} values in {tries} tries "
                  f"(e.g. {waits[0]!r}): draw each one at random, rng.uniform(0, ...), or the retries stay in step")
            return False
        if sum(waits) / tries < 0.4 * top:
            print(f"not yet: with attempt={attempt} the waits average {sum(waits) / tries:.4f} s; full jitter's "
                  f"are spread evenly over [0, {top:g}] (average {top / 2:g})")
            return False
    print("right: each wait is drawn evenly from [0, min(cap, base * 2**attempt)]: full jitter")
    return True


#: The self-check's questions: the answer, and why (shown once the answer is right or wrong).
_ANSWERS: dict[str, tuple[Any, str]] = {
    "calls_at_the_bottom": (16, "2 attempts at each of 4 layers: 2**4 = 16 calls reach the bottom for one "
                                "request (measured: amplification_run(4, 2) gives {measured:g} per order)"),
    "breaker_opens": (False, "8 calls is fewer than the 10 the breaker needs before it judges: it stays closed "
                             "(minimumNumberOfCalls keeps one unlucky second from opening it)"),
    "status_after_charge_timeout": (202, "the charge may have gone through: 503 would say 'nothing happened' and "
                                         "the shopper would pay twice; 202 says 'accepted, being confirmed'"),
    "remaining_budget": (0.3, "the deadline travels: 1.0 s sent, 0.7 s already used, so 0.3 s is left for the "
                              "next call, whatever its own timeout says"),
}


def check_answers(**answers: Any) -> int:
    """Check the self-check's answers (keywords: the question names of the notebook). Prints, for each, right,
    wrong (and why), or not answered yet (None); returns how many are right.

    Raises:
        sandbox.InvalidParameterError: a keyword that names no question.
    """
    unknown = sorted(set(answers) - set(_ANSWERS))
    if unknown:
        raise sandbox.InvalidParameterError(f"no question named {unknown[0]!r}: the questions are {list(_ANSWERS)}")
    right = 0
    for name, given in answers.items():
        expected, why = _ANSWERS[name]
        if "{measured" in why:
            why = why.format(measured=amplification_run(4, 2))
        if given is None:
            print(f"{name}: not answered yet")
        elif isinstance(expected, float) and isinstance(given, (int, float)) and not isinstance(given, bool) and \
                math.isclose(given, expected, abs_tol=1e-6):
            right += 1
            print(f"{name}: right. {why}")
        elif type(given) is type(expected) and given == expected:
            right += 1
            print(f"{name}: right. {why}")
        else:
            print(f"{name}: {given!r} is not it. {why}")
    return right
