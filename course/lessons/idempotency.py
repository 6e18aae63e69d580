"""Module 02's blackboard: a small payment service, a client that retries, and a consumer.

Everything here is a small world run from a seed (``sandbox.World``), so the notebook
shows real runs, not canned numbers:

* three versions of one tiny card-charging service, ``POST /charges``:
  ``create_naive_app`` (charges every request), ``create_check_first_app`` (looks the
  ``Idempotency-Key`` up, charges, then stores it: check-then-act) and
  ``create_keyed_app`` (claims the key with one atomic insert, stores the response with
  the charge, answers a retry from what it stored, 409 while the first is in flight);
* ``retry_run``: one payment from a client that times out and retries over a slow link;
  ``retry_timeline`` draws it; ``retry_widget`` switches between runs (cached);
* ``double_click``: two requests with one key at the same moment (the check-then-act race);
* ``consumer_run``: a loyalty-points consumer under Kafka redelivery, with and without a
  processed-messages table written in the same transaction as the points.

The service here is deliberately smaller than what Lab 02 asks for: no payload
fingerprint (422), keys optional (no 400), no recovery of a claim whose request died.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from matplotlib.figure import Figure
from pydantic import BaseModel, Field

import sandbox
from sandbox.faults import Redelivery, Schedule

SEED = 8
SERVICE, DB, URL = "pay", "pay-db", "http://pay/charges"
#: How long the card network takes to approve a charge (seconds).
CARD_TIME = 0.05


# --- the service, three ways ---------------------------------------------------------------


class ChargeRequest(BaseModel):
    """Charge ``amount`` cents to ``account``."""

    account: str
    amount: int = Field(gt=0)


async def card_network(req: ChargeRequest) -> None:
    """The card network moves the money (simulated: it takes CARD_TIME seconds)."""
    await sandbox.sleep(CARD_TIME)


def new_charge(req: ChargeRequest, now: float) -> dict:
    return {"id": f"ch-{uuid.uuid4().hex[:8]}", "account": req.account, "amount": req.amount, "at": round(now, 4)}


def create_naive_app() -> FastAPI:
    """Charges every request it gets: a retry is a new charge."""
    app = FastAPI(title="pay (naive)")

    @app.post("/charges", status_code=201)
    async def create_charge(req: ChargeRequest, db: sandbox.Database = Depends(sandbox.database(DB)),
                            clock: sandbox.Clock = Depends(sandbox.clock)) -> dict:
        await card_network(req)
        charge = new_charge(req, clock.monotonic())
        await db.insert("charges", charge["id"], charge)
        return charge

    return app


def create_check_first_app() -> FastAPI:
    """Looks the key up, charges if it is new, then stores the key: check, then act."""
    app = FastAPI(title="pay (check first)")

    @app.post("/charges", status_code=201)
    async def create_charge(req: ChargeRequest, idempotency_key: str | None = Header(None),
                            db: sandbox.Database = Depends(sandbox.database(DB)),
                            clock: sandbox.Clock = Depends(sandbox.clock)) -> dict:
        if idempotency_key is not None:
            seen = await db.get("keys", idempotency_key)     # 1. check
            if seen is not None:
                return seen                                  # charged already: the same answer
        await card_network(req)                               # 2. act (others run meanwhile)
        charge = new_charge(req, clock.monotonic())
        await db.insert("charges", charge["id"], charge)
        if idempotency_key is not None:
            await db.put("keys", idempotency_key, charge)     # 3. remember, too late
        return charge

    return app


def create_keyed_app() -> FastAPI:
    """Claims the key first, with one atomic insert; stores the response with the charge."""
    app = FastAPI(title="pay (keyed)")

    @app.post("/charges", status_code=201)
    async def create_charge(req: ChargeRequest, idempotency_key: str | None = Header(None),
                            db: sandbox.Database = Depends(sandbox.database(DB)),
                            clock: sandbox.Clock = Depends(sandbox.clock)) -> Any:
        if idempotency_key is not None:
            try:
                await db.insert("keys", idempotency_key, {"state": "in flight"})   # only one request wins
            except sandbox.DuplicateKey:
                seen = await db.get("keys", idempotency_key)
                if seen["state"] == "done":
                    return JSONResponse(seen["response"], status_code=201)       # the stored response
                raise HTTPException(409, "a request with this key is in flight; retry later") from None
        await card_network(req)
        charge = new_charge(req, clock.monotonic())
        async with db.transaction() as tx:                  # the charge and the response: both or neither
            await tx.insert("charges", charge["id"], charge)
            if idempotency_key is not None:
                await tx.put("keys", idempotency_key, {"state": "done", "response": charge})
        return charge

    return app


SERVICES = {"naive": create_naive_app, "check first": create_check_first_app, "keyed": create_keyed_app}


# --- a client that retries over a slow link --------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt: sent at ``sent``; ``status`` None if the client gave up at ``ended`` (timeout)."""

    number: int
    sent: float
    ended: float
    status: int | None
    charge_id: str | None = None


@dataclass(frozen=True)
class RetryRun:
    """One payment, retried: the attempts the client made and the charges the service made."""

    seed: int
    delay: float
    timeout: float
    retries: int
    keyed: bool
    service: str
    attempts: tuple[Attempt, ...]
    charges: tuple[dict, ...]
    fingerprint: str

    @property
    def answered(self) -> bool:
        return any(a.status == 201 for a in self.attempts)

    def __str__(self) -> str:
        key = "with a key" if self.keyed else "no key"
        got = "answered" if self.answered else "never answered"
        return (f"seed {self.seed}, {key}: {len(self.attempts)} attempts, {got}, "
                f"{len(self.charges)} charge{'s' if len(self.charges) != 1 else ''}")


async def pay(client: sandbox.Client, timeout: float, retries: int, keyed: bool, log: list[Attempt]) -> None:
    """One payment of $25: send; on a timeout (or a 409) wait a little and send again, at most ``retries``
    more times. With ``keyed``, every attempt carries the same Idempotency-Key (a UUID from the seed)."""
    key = str(uuid.UUID(int=client.random.getrandbits(128), version=4))
    headers = {"Idempotency-Key": key} if keyed else {}
    body = {"account": "acct-42", "amount": 2500}
    async with client.operation("pay", {"key": key if keyed else None, **body}) as op:
        for number in range(1, retries + 2):
            sent = client.now
            try:
                r = await client.http.post(URL, json=body, headers=headers, timeout=timeout)
            except sandbox.RequestTimeout:
                log.append(Attempt(number, sent, client.now, None))
            else:
                charge_id = r.json().get("id") if r.status_code == 201 else None
                log.append(Attempt(number, sent, client.now, r.status_code, charge_id))
                if r.status_code == 201:
                    op.ok(r.json())
                    return
            await client.sleep(0.05 * 2 ** (number - 1) * client.random.uniform(0.5, 1.0))   # back off
        op.info(None, "no answer: the client does not know whether it paid")


def build_retry_world(seed: int, *, delay: float, timeout: float, retries: int, keyed: bool,
                      service: str = "keyed") -> tuple[sandbox.World, list[Attempt]]:
    """The world of one retried payment: the ``service`` (one of SERVICES) and its database, and a
    client ``shopper`` whose link to it takes ``delay`` seconds each way (plus a random tail)."""
    world = sandbox.World(seed=seed)
    world.add_database(DB)
    world.add_service(SERVICE, SERVICES[service], isolate_module=False)
    log: list[Attempt] = []
    world.add_client("shopper", pay, timeout, retries, keyed, log)
    world.network.set_links("shopper", SERVICE, both_ways=True, latency=delay, jitter=delay / 2,
                            distribution="exponential")
    return world, log


@lru_cache(maxsize=512)
def retry_run(seed: int = SEED, *, delay: float = 0.08, timeout: float = 0.2, retries: int = 3,
              keyed: bool = False, service: str = "keyed") -> RetryRun:
    """Run one retried payment (see ``build_retry_world``); cached, so a widget switches back at once."""
    world, log = build_retry_world(seed, delay=delay, timeout=timeout, retries=retries, keyed=keyed, service=service)
    world.run(limit=30.0)
    charges = sorted(world.database(DB).rows("charges").values(), key=lambda c: c["at"])
    return RetryRun(seed, delay, timeout, retries, keyed, service, tuple(log), tuple(charges), world.fingerprint())


# --- the picture ------------------------------------------------------------------------------

OK, TIMEOUT, OTHER, CHARGE, INK = "#2b8a3e", "#e67700", "#868e96", "#c92a2a", "#343a40"


class Picture(Figure):
    """A matplotlib figure that shows itself in a notebook (made without pyplot: nothing to close)."""

    def _repr_png_(self) -> bytes:
        return png(self)


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def retry_timeline(run: RetryRun, ax: Any = None) -> Figure:
    """A timeline of ``run``: the client's attempts (a bar each, from sending to its answer or its
    timeout) above, the service's charges (a red mark each) below, on one time axis."""
    fig = None
    if ax is None:
        fig = Picture(figsize=(8.0, 2.6), layout="constrained")
        ax = fig.add_subplot()
    first_charge = {c["id"]: c["at"] for c in run.charges}
    for a in run.attempts:
        if a.status is None:
            color, label = TIMEOUT, "timeout"
        elif a.status == 201:
            stored = a.charge_id in first_charge and first_charge[a.charge_id] < a.sent
            color, label = OK, "201 (stored)" if stored else "201"
        else:
            color, label = OTHER, str(a.status)
        ax.barh(1, a.ended - a.sent, left=a.sent, height=0.45, color=color, edgecolor="white")
        ax.text(a.sent + (a.ended - a.sent) / 2, 1.34, f"#{a.number} {label}", ha="center", va="bottom",
                fontsize=9, color=INK)
    for c in run.charges:
        ax.plot([c["at"]], [0], marker="D", markersize=8, color=CHARGE)
        ax.axvline(c["at"], ymin=0.12, ymax=0.5, color=CHARGE, linewidth=0.6, linestyle=":")
    ax.set_xlim(0, _end(run))
    ax.set_ylim(-0.6, 1.9)
    ax.set_yticks([0, 1], ["charges\n(service)", "attempts\n(client)"], fontsize=8.5)
    ax.set_xlabel("virtual time (s)", fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    n = len(run.charges)
    title = (f"{'with' if run.keyed else 'without'} an Idempotency-Key: {len(run.attempts)} attempt"
             f"{'s' if len(run.attempts) != 1 else ''}, {n} charge{'s' if n != 1 else ''}")
    ax.set_title(title, fontsize=10, loc="left", color=CHARGE if n > 1 else INK)
    return fig if fig is not None else ax.figure


def _end(run: RetryRun) -> float:
    return max([a.ended for a in run.attempts] + [c["at"] for c in run.charges] + [run.timeout]) * 1.05


def retry_comparison(seed: int = SEED, **params: Any) -> Figure:
    """The same payment without and with a key, one timeline above the other."""
    fig = Picture(figsize=(8.0, 4.8), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    runs = retry_run(seed, keyed=False, **params), retry_run(seed, keyed=True, **params)
    for run, ax in zip(runs, (top, bottom)):
        retry_timeline(run, ax)
    top.set_xlim(0, max(_end(run) for run in runs))
    top.set_xlabel("")
    return fig


# --- the widget -------------------------------------------------------------------------------

DELAYS = (0.02, 0.05, 0.08, 0.1, 0.15)
TIMEOUTS = (0.1, 0.2, 0.3, 0.5)


def retry_widget(seeds: tuple[int, ...] = (SEED, SEED + 1, SEED + 2)) -> Any:
    """Controls (seed, link delay, client timeout, retries, key on/off) over a timeline of the run.
    Each run is cached: moving back to a setting already seen redraws at once."""
    import ipywidgets as widgets

    style = {"description_width": "110px"}
    seed = widgets.Dropdown(options=list(seeds), value=seeds[0], description="seed", style=style)
    delay = widgets.SelectionSlider(options=[(f"{d * 1000:.0f} ms", d) for d in DELAYS], value=0.08,
                                    description="link delay", style=style)
    timeout = widgets.SelectionSlider(options=[(f"{t * 1000:.0f} ms", t) for t in TIMEOUTS], value=0.2,
                                      description="client timeout", style=style)
    retries = widgets.IntSlider(value=3, min=0, max=5, description="retries", style=style)
    keyed = widgets.ToggleButtons(options=[("no key", False), ("Idempotency-Key", True)], value=False,
                                  description="key", style=style)
    image = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="820px"))
    summary = widgets.HTML()

    def redraw(_change: Any = None) -> None:
        run = retry_run(seed.value, delay=delay.value, timeout=timeout.value, retries=retries.value,
                        keyed=keyed.value)
        color = "#c92a2a" if len(run.charges) > 1 else "#2b8a3e"
        summary.value = f"<b style='color:{color}'>{len(run.charges)} charge(s)</b> &nbsp; {run}"
        image.value = _timeline_png(seed.value, delay.value, timeout.value, retries.value, keyed.value)

    for w in (seed, delay, timeout, retries, keyed):
        w.observe(redraw, names="value")
    redraw()
    controls = widgets.HBox([widgets.VBox([seed, delay, timeout]), widgets.VBox([retries, keyed])])
    return widgets.VBox([controls, summary, image])


@lru_cache(maxsize=512)
def _timeline_png(seed: int, delay: float, timeout: float, retries: int, keyed: bool) -> bytes:
    """The widget's picture; the time axis is the same with and without a key, so switching compares like with like."""
    runs = {k: retry_run(seed, delay=delay, timeout=timeout, retries=retries, keyed=k) for k in (False, True)}
    fig = retry_timeline(runs[keyed])
    fig.axes[0].set_xlim(0, max(_end(run) for run in runs.values()))
    return png(fig)


def retry_table(seeds: tuple[int, ...] = (SEED, SEED + 1, SEED + 2), delays: tuple[float, ...] = (0.02, 0.05, 0.08, 0.1),
                **params: Any) -> str:
    """A text table of the charges per run, without and with a key (what the widget shows, for a page
    read without a kernel)."""
    lines = [f"{'seed':>4} {'delay':>6}   {'no key: attempts, charges':>25}   {'with key: attempts, charges':>27}"]
    for seed in seeds:
        for d in delays:
            a, b = retry_run(seed, delay=d, keyed=False, **params), retry_run(seed, delay=d, keyed=True, **params)
            lines.append(f"{seed:>4} {d * 1000:>4.0f}ms   {len(a.attempts):>16}, {len(a.charges):>7}   "
                         f"{len(b.attempts):>18}, {len(b.charges):>7}")
    return "\n".join(lines)


# --- the double click: check-then-act races ------------------------------------------------------


async def double_clicker(client: sandbox.Client, log: list[int]) -> None:
    """Two requests with the same key at the same moment, as a double click sends them."""
    key = str(uuid.UUID(int=client.random.getrandbits(128), version=4))
    body = {"account": "acct-7", "amount": 1200}

    async def once() -> int:
        r = await client.http.post(URL, json=body, headers={"Idempotency-Key": key}, timeout=2.0)
        return r.status_code

    log.extend(await sandbox.gather(once(), once()))


def double_click(service: str, seed: int = SEED) -> tuple[list[int], int]:
    """Run one double click against ``service`` (one of SERVICES, two replicas): the two statuses, the charges."""
    world = sandbox.World(seed=seed)
    world.add_database(DB)
    world.add_service(SERVICE, SERVICES[service], replicas=2, isolate_module=False)
    log: list[int] = []
    world.add_client("shopper", double_clicker, log)
    world.run(limit=30.0)
    return log, len(world.database(DB).rows("charges"))


# --- the consumer: at-least-once delivery --------------------------------------------------------

TOPIC, GROUP, POINTS_DB = "order-placed", "rewards", "rewards-db"


def create_shop_app() -> FastAPI:
    """Publishes one ``order-placed`` event per order (not the point of the lesson)."""
    app = FastAPI(title="shop")

    @app.post("/orders/{order_id}", status_code=202)
    async def place(order_id: str, producer: sandbox.Producer = Depends(sandbox.producer)) -> dict:
        await producer.send(TOPIC, {"order_id": order_id, "points": 10}, key=order_id)
        return {"order_id": order_id}

    return app


def create_rewards_app() -> FastAPI:
    """Awards loyalty points for each order-placed event: at least once means sometimes twice."""
    app = FastAPI(title="rewards")

    @sandbox.consumer(app, TOPIC, group=GROUP)
    async def on_order_placed(message: sandbox.Message,
                              db: sandbox.Database = Depends(sandbox.database(POINTS_DB))) -> None:
        award = f"aw-{uuid.uuid4().hex[:8]}"
        await db.insert("awards", award, {"order_id": message.value["order_id"], "points": message.value["points"]})

    return app


def create_dedup_rewards_app() -> FastAPI:
    """The same consumer, deduplicating: the message's id goes into ``processed`` in the same
    transaction as the points, so a redelivered message finds it there and is skipped."""
    app = FastAPI(title="rewards (deduplicating)")

    @sandbox.consumer(app, TOPIC, group=GROUP)
    async def on_order_placed(message: sandbox.Message,
                              db: sandbox.Database = Depends(sandbox.database(POINTS_DB))) -> None:
        try:
            async with db.transaction() as tx:
                await tx.insert("processed", message.value["order_id"], {"offset": message.offset})
                award = f"aw-{uuid.uuid4().hex[:8]}"
                await tx.insert("awards", award, {"order_id": message.value["order_id"],
                                                  "points": message.value["points"]})
        except sandbox.DuplicateKey:
            return  # processed before: acknowledge, award nothing

    return app


async def orders(client: sandbox.Client, n: int) -> None:
    for i in range(n):
        async with client.operation("place", f"o-{i}") as op:
            r = await client.http.post(f"http://shop/orders/o-{i}", timeout=1.0)
            op.ok() if r.status_code == 202 else op.fail(r.status_code)
        await client.sleep(0.05)


@dataclass(frozen=True)
class ConsumerRun:
    dedup: bool
    points: dict[str, int]      # order id -> points awarded
    world: sandbox.World

    def __str__(self) -> str:
        twice = sorted(o for o, p in self.points.items() if p > 10)
        return (f"{'deduplicating' if self.dedup else 'plain'} consumer: {len(self.points)} orders, "
                f"{sum(self.points.values())} points (expected {10 * len(self.points)}); "
                f"awarded more than once: {twice or 'none'}")


def consumer_run(dedup: bool, seed: int = SEED, n: int = 6, redelivery: bool = True) -> ConsumerRun:
    """``n`` orders through the shop and the rewards consumer. With ``redelivery``, for the first half
    second each commit of the consumer group is lost with probability 1/2 (KafkaChaos): the group
    rebalances and the messages since the last commit that stuck are delivered again."""
    world = sandbox.World(seed=seed)
    world.add_database(POINTS_DB)
    world.broker.create_topic(TOPIC, partitions=2)
    world.add_service("shop", create_shop_app, isolate_module=False)
    world.add_service("rewards", create_dedup_rewards_app if dedup else create_rewards_app, isolate_module=False)
    world.add_client("shopper", orders, n)
    if redelivery:
        world.inject(Schedule([Redelivery(GROUP, probability=0.5, start=0.0, duration=0.5)]))
    world.run(limit=30.0, settle=3.0)
    points: dict[str, int] = {}
    for award in world.database(POINTS_DB).rows("awards").values():
        points[award["order_id"]] = points.get(award["order_id"], 0) + award["points"]
    return ConsumerRun(dedup, dict(sorted(points.items())), world)
