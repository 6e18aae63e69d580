"""Module 01 (CAP): the blackboard. A like counter on three replicas, a partition, two designs.

One post's like counter (``POST /like``, ``POST /unlike``, ``GET /likes``) runs on three
replicas, ``likes-0``, ``likes-1`` and ``likes-2``. Three readers, one per replica, like,
unlike and read. From ``PARTITION_START`` to ``PARTITION_END`` the network between the
replicas splits: ``likes-2`` alone on one side, ``likes-0`` and ``likes-1`` on the other
(clients still reach their replica). After the heal the ``auditor`` reads every replica.

Three designs of the same API:

* ``"CP"``: ``likes-0`` is the primary. Every request goes to it (the others relay);
  it applies a change only once a majority (itself and one more replica) stored it.
  A replica that cannot reach the primary, or a primary without a majority, refuses: 504
  (unknown: some replica may have the change), or 503 if it knows no replica has it.
* ``"AP-LWW"``: each replica answers from its own copy and gossips ``(count, timestamp)``;
  on merge the later timestamp wins (last writer wins).
* ``"AP-PN"``: each replica answers from its own copy, a PN-counter (``PNCounter``), and
  gossips it; merging takes the larger entry per replica, so nothing is lost.

Example::

    run = simulate("CP", partition=True, seed=1)
    run.per_side()      # answered / refused / stale reads on each side of the partition
    run.final           # what each replica says after the heal, and the true count
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import Depends, FastAPI, HTTPException
from matplotlib.figure import Figure
from pydantic import BaseModel

import sandbox
from sandbox.faults import Partition, Schedule

from . import html_table

SERVICE = "likes"
REPLICAS = ("likes-0", "likes-1", "likes-2")
PRIMARY = "likes-0"
#: Which client talks to which replica (clients always reach their replica).
READERS = {"ana": "likes-0", "ben": "likes-1", "cy": "likes-2"}
#: The two sides of the partition: the majority and the minority.
SIDES = {"likes-0": "majority", "likes-1": "majority", "likes-2": "minority"}
PARTITION_START, PARTITION_END = 1.0, 2.5
#: Clients act until WORKLOAD_END; the auditor reads every replica at AUDIT_AT.
WORKLOAD_END = 3.5
AUDIT_AT = 4.2
#: The anti-entropy timer: every GOSSIP_EVERY seconds each AP replica sends its state to the others.
GOSSIP_EVERY = 0.1
CLIENT_TIMEOUT = 0.3
PEER_TIMEOUT = 0.1
THINK = 0.08
DESIGNS = ("CP", "AP-LWW", "AP-PN")


# --- the CRDT, on the blackboard ------------------------------------------------------------


@dataclass
class PNCounter:
    """A PN-counter (Shapiro et al. 2011): per replica, how many +1s (``p``) and -1s (``n``) it took.

    Only a replica changes its own entries, and entries only grow; merging takes the larger
    entry per replica, so merges commute, associate and may repeat: replicas that have seen
    the same updates agree, in whatever order the gossip came.

    Example::

        a, b = PNCounter(), PNCounter()
        a.add("a", +1); b.add("b", +1); b.add("b", -1)
        a.merge(b).value() == b.merge(a).value() == 1
    """

    p: dict[str, int] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)

    def add(self, replica: str, delta: int) -> None:
        side = self.p if delta >= 0 else self.n
        side[replica] = side.get(replica, 0) + abs(delta)

    def value(self) -> int:
        return sum(self.p.values()) - sum(self.n.values())

    def merge(self, other: PNCounter) -> PNCounter:
        """A new counter: the larger entry of the two, per replica."""
        def biggest(x: dict[str, int], y: dict[str, int]) -> dict[str, int]:
            return {r: max(x.get(r, 0), y.get(r, 0)) for r in sorted(set(x) | set(y))}
        return PNCounter(biggest(self.p, other.p), biggest(self.n, other.n))


@dataclass(frozen=True)
class LWWCount:
    """The count as one value stamped with the writer's clock: on merge, the later stamp wins."""

    count: int = 0
    stamp: tuple[float, str] = (0.0, "")

    def merge(self, other: LWWCount) -> LWWCount:
        return other if other.stamp > self.stamp else self


# --- the replicas ---------------------------------------------------------------------------


class Counted(BaseModel):
    likes: int


def _me() -> str:
    return sandbox.hostname()


def _peers() -> list[str]:
    return [r for r in REPLICAS if r != _me()] if _me() in REPLICAS else []


def create_cp_app() -> FastAPI:
    """CP: the primary orders every change and commits it once a majority stored it; else 503."""
    app = FastAPI(title="likes (CP)")
    state = {"likes": 0, "seq": 0}          # this replica's copy (each replica builds its own app)
    locks: list[anyio.Lock] = []            # one lock, made in the first request (inside the sandbox)

    async def relay(http: sandbox.HttpClient, method: str, path: str) -> Counted:
        try:
            r = await http.request(method, f"http://{PRIMARY}{path}", timeout=CLIENT_TIMEOUT - 0.05)
        except sandbox.RequestTimeout:  # the primary may have applied it and only its answer was lost: unknown
            raise HTTPException(504, "no answer from the primary: refusing rather than guessing") from None
        if r.status_code != 200:
            raise HTTPException(r.status_code, r.json().get("detail"))
        return Counted(**r.json())

    async def change(delta: int, http: sandbox.HttpClient) -> Counted:
        if _me() != PRIMARY:
            return await relay(http, "POST", "/like" if delta > 0 else "/unlike")
        if not locks:
            locks.append(anyio.Lock())
        async with locks[0]:                 # one change at a time, in one order
            new = {"likes": state["likes"] + delta, "seq": state["seq"] + 1}

            async def store(peer: str) -> bool | None:
                try:
                    r = await http.post(f"http://{peer}/store", json=new, timeout=PEER_TIMEOUT)
                    return r.status_code == 200
                except sandbox.RequestTimeout:
                    return None              # no answer: it may have stored it, or not

            answers = await sandbox.gather(*(store(p) for p in _peers()))
            if 1 + answers.count(True) < 2:  # a majority of three is two
                if answers.count(False) == len(answers):
                    raise HTTPException(503, "every other replica refused: applied nowhere")
                raise HTTPException(504, "no majority answered: not committed, but a replica may have it")
            state.update(new)
            return Counted(likes=state["likes"])

    @app.post("/like")
    async def like(http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Counted:
        return await change(+1, http)

    @app.post("/unlike")
    async def unlike(http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Counted:
        return await change(-1, http)

    @app.get("/likes")
    async def likes(http: sandbox.HttpClient = Depends(sandbox.http_client)) -> Counted:
        if _me() != PRIMARY:
            return await relay(http, "GET", "/likes")
        return Counted(likes=state["likes"])

    @app.post("/store")
    async def store(new: dict) -> dict:
        if new["seq"] > state["seq"]:
            state.update(new)
        return {"stored": new["seq"]}

    return app


def _create_ap_app(kind: str) -> FastAPI:
    """AP: answer from the local copy; ``POST /gossip`` sends it to the others, who merge it."""
    app = FastAPI(title=f"likes ({kind})")
    copy: dict[str, Any] = {"crdt": PNCounter(), "lww": LWWCount()}

    def value() -> int:
        return copy["crdt"].value() if kind == "AP-PN" else copy["lww"].count

    def change(delta: int) -> Counted:
        if kind == "AP-PN":
            copy["crdt"].add(_me(), delta)
        else:
            copy["lww"] = LWWCount(copy["lww"].count + delta, (time.time(), _me()))
        return Counted(likes=value())

    @app.post("/like")
    async def like() -> Counted:
        return change(+1)

    @app.post("/unlike")
    async def unlike() -> Counted:
        return change(-1)

    @app.get("/likes")
    async def likes() -> Counted:
        return Counted(likes=value())

    @app.post("/gossip")
    async def gossip(http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        """Send my state to every other replica (called by the anti-entropy timer)."""
        state = {"p": copy["crdt"].p, "n": copy["crdt"].n, "count": copy["lww"].count, "stamp": copy["lww"].stamp}
        for peer in _peers():
            try:
                await http.post(f"http://{peer}/merge", json=state, timeout=PEER_TIMEOUT)
            except sandbox.RequestTimeout:
                pass                         # cut off: the next round sends it again
        return {"sent": len(_peers())}

    @app.post("/merge")
    async def merge(state: dict) -> dict:
        copy["crdt"] = copy["crdt"].merge(PNCounter(state["p"], state["n"]))
        copy["lww"] = copy["lww"].merge(LWWCount(state["count"], tuple(state["stamp"])))
        return {"likes": value()}

    return app


def create_ap_lww_app() -> FastAPI:
    """AP, last writer wins: the count with a timestamp; on merge the later one replaces the other."""
    return _create_ap_app("AP-LWW")


def create_ap_pn_app() -> FastAPI:
    """AP, PN-counter: per replica +1s and -1s; on merge the larger entry per replica."""
    return _create_ap_app("AP-PN")


FACTORIES: dict[str, Callable[[], FastAPI]] = {
    "CP": create_cp_app, "AP-LWW": create_ap_lww_app, "AP-PN": create_ap_pn_app,
}


# --- the world ------------------------------------------------------------------------------


async def _call(client: sandbox.Client, f: str, replica: str) -> None:
    method, path = {"like": ("POST", "/like"), "unlike": ("POST", "/unlike"), "read": ("GET", "/likes")}[f]
    async with client.operation(f, {"replica": replica}) as op:
        try:
            r = await client.http.request(method, f"http://{replica}{path}", timeout=CLIENT_TIMEOUT)
        except sandbox.RequestTimeout:
            op.info({"replica": replica, "status": None}, "no answer")
            return
        if r.status_code == 200:
            op.ok({"replica": replica, "status": 200, "likes": r.json()["likes"]})
        elif r.status_code == 503:            # refused, and applied nowhere: it did not happen
            op.fail({"replica": replica, "status": r.status_code}, r.json().get("detail"))
        else:                                 # 504 and the like: it may or may not have happened
            op.info({"replica": replica, "status": r.status_code}, r.json().get("detail"))


def _reader(replica: str) -> Callable[[sandbox.Client], Any]:
    async def reader(client: sandbox.Client) -> None:
        """Like (55 %), unlike (10 %) or read (35 %) at my replica, until WORKLOAD_END."""
        await client.sleep(client.random.uniform(0, THINK))
        while client.now < WORKLOAD_END:
            x = client.random.random()
            await _call(client, "like" if x < 0.55 else "unlike" if x < 0.65 else "read", replica)
            await client.sleep(client.random.expovariate(1 / THINK))

    return reader


async def _gossip_timer(client: sandbox.Client) -> None:
    """The anti-entropy timer (a cron job): asks each AP replica to gossip, every GOSSIP_EVERY seconds."""
    while client.now < AUDIT_AT - 0.2:
        await client.sleep(GOSSIP_EVERY)
        for replica in REPLICAS:
            try:
                await client.http.post(f"http://{replica}/gossip", timeout=PEER_TIMEOUT)
            except sandbox.RequestTimeout:
                pass


async def _auditor(client: sandbox.Client) -> None:
    await client.sleep(AUDIT_AT)
    for replica in REPLICAS:
        async with client.operation("audit", {"replica": replica}) as op:
            r = await client.http.get(f"http://{replica}/likes", timeout=CLIENT_TIMEOUT)
            op.ok({"replica": replica, "status": r.status_code, "likes": r.json().get("likes")})


def build_world(design: str, *, partition: bool, seed: int) -> sandbox.World:
    """Three replicas of ``design``, the three readers, the auditor (and, AP, the gossip timer). Built, not run."""
    if design not in FACTORIES:
        raise sandbox.InvalidParameterError(f"design={design!r}: one of {DESIGNS}")
    world = sandbox.World(seed=seed)
    world.add_service(SERVICE, FACTORIES[design], replicas=len(REPLICAS), isolate_module=False)
    for name, replica in READERS.items():
        world.add_client(name, _reader(replica))
    if design != "CP":
        world.add_client("gossip-timer", _gossip_timer)
    world.add_client("auditor", _auditor)
    if partition:
        world.inject(Schedule([Partition("likes-2", ["likes-0", "likes-1"], start=PARTITION_START,
                                         duration=PARTITION_END - PARTITION_START)]))
    return world


# --- what happened --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One client request: when it started and ended, where, and what came back."""

    client: str
    replica: str
    f: str                    # like, unlike, read
    start: float
    end: float
    outcome: str              # "ok", "refused" (an error answer) or "no answer"
    likes: int | None         # the count the replica answered (None unless ok)
    stale: bool = False       # a read no moment of the request could have returned

    @property
    def side(self) -> str:
        return SIDES[self.replica]

    @property
    def delta(self) -> int:
        return {"like": 1, "unlike": -1}.get(self.f, 0)


@dataclass(frozen=True)
class Run:
    """One finished run of a design: its requests, the audit after the heal, and the truth."""

    design: str
    partition: bool
    seed: int
    requests: tuple[Request, ...]
    final: dict[str, int]     # replica -> count after the heal, plus "truth": the acknowledged total
    fingerprint: str

    def per_side(self) -> dict[str, dict[str, int]]:
        """Per side ("majority", "minority"): requests answered, refused (or unanswered), stale reads."""
        out = {side: {"answered": 0, "refused": 0, "stale reads": 0} for side in ("majority", "minority")}
        for r in self.requests:
            row = out[r.side]
            row["answered" if r.outcome == "ok" else "refused"] += 1
            row["stale reads"] += r.stale
        return out

    @property
    def stale_reads(self) -> int:
        return sum(r.stale for r in self.requests)

    @property
    def refused(self) -> int:
        return sum(r.outcome != "ok" for r in self.requests)

    @property
    def lost(self) -> int:
        """How far the replicas' final counts are from the acknowledged total (the worst replica)."""
        return max(abs(self.final[r] - self.final["truth"]) for r in REPLICAS)

    def acknowledged(self, t: float) -> int:
        """The acknowledged total at time ``t``: the likes minus unlikes answered ok by then."""
        return sum(r.delta for r in self.requests if r.outcome == "ok" and r.end <= t)

    def latency_ms(self, side: str, *, during_partition: bool = False) -> float | None:
        """The mean time (ms) of the answered requests at ``side``'s replicas (only those started during
        the partition window if ``during_partition``); None if none was answered."""
        times = [r.end - r.start for r in self.requests if r.outcome == "ok" and r.side == side
                 and (not during_partition or PARTITION_START <= r.start <= PARTITION_END)]
        return round(1000 * sum(times) / len(times), 1) if times else None

    def summary(self) -> str:
        final = ", ".join(f"{r} {self.final[r]}" for r in REPLICAS)
        return (f"{self.design:6}  partition {'on ' if self.partition else 'off'}: {len(self.requests)} requests, "
                f"{self.refused} refused, {self.stale_reads} stale reads; after the heal {final} "
                f"(acknowledged total {self.final['truth']})")


def _requests(world: sandbox.World) -> list[Request]:
    out = []
    for invoke, done in world.history.pairs():
        if invoke.process.startswith("auditor") or done is None:
            continue
        value = done.value if isinstance(done.value, dict) else {}
        answered = value.get("status") is not None
        outcome = "ok" if done.type == "ok" else "refused" if answered else "no answer"
        out.append(Request(invoke.process.split("#")[0], invoke.value["replica"], invoke.f, invoke.time, done.time,
                           outcome, value.get("likes") if outcome == "ok" else None))
    return _mark_stale(out)


def _mark_stale(requests: list[Request]) -> list[Request]:
    """A read is stale if no moment between its start and its end could give its value: it must be
    the changes acknowledged before it started, plus any of those still in flight meanwhile
    (for a counter this is what linearizability asks of each read)."""
    changes = [r for r in requests if r.delta]
    marked = []
    for r in requests:
        if r.f == "read" and r.outcome == "ok":
            before = sum(c.delta for c in changes if c.outcome == "ok" and c.end < r.start)
            overlap = [c.delta for c in changes if c.start < r.end and not (c.outcome == "ok" and c.end < r.start)]
            low = before + sum(d for d in overlap if d < 0)
            high = before + sum(d for d in overlap if d > 0)
            r = Request(**{**r.__dict__, "stale": not low <= r.likes <= high})
        marked.append(r)
    return marked


@functools.lru_cache(maxsize=None)
def simulate(design: str, *, partition: bool, seed: int = 1) -> Run:
    """Run ``design`` (with or without the partition) from ``seed``; cached, the same run every time."""
    world = build_world(design, partition=partition, seed=seed)
    world.run(settle=0.1)
    requests = _requests(world)
    final = {op.value["replica"]: op.value["likes"] for op in world.history if op.f == "audit" and op.type == "ok"}
    final["truth"] = sum(r.delta for r in requests if r.outcome == "ok")
    return Run(design, partition, seed, tuple(requests), final, world.fingerprint())


def table(runs: list[Run]) -> str:
    """A plain-text table of runs: per side, answered / refused / stale reads, then the counts after the heal."""
    head = (f"{'design':7} {'partition':9}  {'majority side':>22}  {'minority side':>22}  "
            f"{'after heal: likes-0/1/2':>24}  {'truth':>5}")
    lines = [head, f"{'':7} {'':9}  {'ok / refused / stale':>22}  {'ok / refused / stale':>22}", "-" * len(head)]
    for run in runs:
        s = run.per_side()
        cells = ["{answered:>4} / {refused:>3} / {stale reads:>3}".format(**s[side]) for side in ("majority", "minority")]
        final = " / ".join(str(run.final[r]) for r in REPLICAS)
        lines.append(f"{run.design:7} {'on' if run.partition else 'off':9}  {cells[0]:>22}  {cells[1]:>22}  "
                     f"{final:>24}  {run.final['truth']:>5}")
    return "\n".join(lines)


# --- pictures -------------------------------------------------------------------------------

COLORS = {"likes-0": "#1864ab", "likes-1": "#2b8a3e", "likes-2": "#e8590c"}


def timeline(run: Run, ax: Any = None) -> Figure:
    """The count each reader saw over time against the acknowledged total; refusals as x, stale reads circled."""
    fig = ax.figure if ax is not None else Figure(figsize=(6.4, 3.2), layout="constrained")
    ax = ax if ax is not None else fig.add_subplot()
    end = max([r.end for r in run.requests] + [WORKLOAD_END])
    times = sorted({0.0, end} | {r.end for r in run.requests if r.outcome == "ok" and r.delta})
    ax.step(times, [run.acknowledged(t) for t in times], where="post", color="#212529", lw=1.4,
            label="acknowledged total")
    if run.partition:
        ax.axvspan(PARTITION_START, PARTITION_END, color="#e8590c", alpha=0.12, lw=0)
        ax.text((PARTITION_START + PARTITION_END) / 2, 0.98, "partition", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=9, color="#c2410c")
    low = 0
    for replica in REPLICAS:
        seen = [r for r in run.requests if r.replica == replica and r.outcome == "ok"]
        ax.plot([r.end for r in seen], [r.likes for r in seen], ".", ms=5, color=COLORS[replica],
                label=f"answers at {replica} ({SIDES[replica]})")
        stale = [r for r in seen if r.stale]
        ax.plot([r.end for r in stale], [r.likes for r in stale], "o", ms=9, mfc="none", mec="#c92a2a", mew=1.3)
        low = min([low] + [r.likes for r in seen])
    refused = [r for r in run.requests if r.outcome != "ok"]
    ax.plot([r.end for r in refused], [low - 1.5] * len(refused), "x", ms=5, color="#c92a2a", label="refused (503, 504)")
    if any(r.stale for r in run.requests):
        ax.plot([], [], "o", ms=9, mfc="none", mec="#c92a2a", label="stale read")
    ax.set_xlabel("virtual time (s)", fontsize=9)
    ax.set_ylabel("likes", fontsize=9)
    ax.tick_params(labelsize=8.5)
    ax.set_title(f"{run.design}, partition {'on' if run.partition else 'off'}", fontsize=11)
    ax.legend(fontsize=8.5, loc="upper left", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def side_by_side(runs: list[Run]) -> Figure:
    """One timeline per run, side by side, on a shared y axis."""
    fig = Figure(figsize=(5.2 * len(runs), 3.3), layout="constrained")
    axes = fig.subplots(1, len(runs), sharey=True)
    for run, ax in zip(runs, list(getattr(axes, "flat", [axes]))):
        timeline(run, ax)
    return fig


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


# --- the widget -----------------------------------------------------------------------------


def _panel_html(run: Run) -> str:
    s = run.per_side()
    table = html_table(["side", "answered", "refused", "stale reads"],
                       [[side, str(s[side]["answered"]), str(s[side]["refused"]), str(s[side]["stale reads"])]
                        for side in ("majority", "minority")])
    final = ", ".join(f"{r}: <b>{run.final[r]}</b>" for r in REPLICAS)
    ok = "all agree on the truth" if run.lost == 0 else f"<span style='color:#c92a2a'>off by up to {run.lost}</span>"
    return (f"<h4 style='margin:4px 0'>{run.design}</h4>"
            f"{table}"
            f"<p style='margin:4px 0'>After the heal: {final} (acknowledged total <b>{run.final['truth']}</b>): {ok}</p>")


def widget(seed: int = 1) -> Any:
    """A partition toggle and the AP merge rule; CP and AP side by side (precomputed seeded runs)."""
    import ipywidgets as w

    runs = {(d, p): simulate(d, partition=p, seed=seed) for d in DESIGNS for p in (False, True)}
    images = {key: png(timeline(run)) for key, run in runs.items()}
    wide = {"button_width": "170px", "description_width": "100px"}
    toggle = w.ToggleButtons(options=[("healthy", False), ("likes-2 cut off", True)], value=True,
                             description="Network:", style=wide,
                             tooltips=["no fault", "likes-2 | likes-0, likes-1 from t=1.0 to t=2.5"])
    merge = w.ToggleButtons(options=[("PN-counter", "AP-PN"), ("last writer wins", "AP-LWW")],
                            value="AP-PN", description="AP merges by:", style=wide)
    panels = [(w.HTML(), w.Image(format="png", layout=w.Layout(width="100%"))) for _ in range(2)]

    def show(_: Any = None) -> None:
        for (html, image), design in zip(panels, ("CP", merge.value)):
            key = (design, toggle.value)
            html.value = _panel_html(runs[key])
            image.value = images[key]

    toggle.observe(show, names="value")
    merge.observe(show, names="value")
    show()
    columns = [w.VBox([html, image], layout=w.Layout(width="50%")) for html, image in panels]
    return w.VBox([toggle, merge, w.HBox(columns)])
