"""Module 03's blackboard: a trip booked as a saga (flight, hotel, car) and a widget that steps through it.

Three small providers, each a FastAPI service with its own database, and an
orchestrator, ``trips``, that books one of each for a customer. Nothing spans the
three databases: each booking is a local transaction in one service (T1, T2, T3),
each cancellation a compensating transaction (C1, C2). The orchestrator comes in
the variants the module compares, switched by three flags:

* ``compensate``: when a step is refused, cancel what was booked, last first;
* ``persist``: the saga's log (where it stands) lives in ``trips-db`` and a
  restarted orchestrator finishes what it finds there; otherwise the log is a
  dictionary in the process's memory, and a crash forgets it;
* ``stable_ids``: each step's booking id derives from the trip id, so sending a
  step again returns the first booking; otherwise every attempt has a new id.

``run_trip`` runs one trip in a fresh world from a seed, with one thing going
wrong (a provider with nothing left, or the orchestrator killed right after a
step); ``saga_log`` turns the finished run into the moments the widget steps
through; ``saga_explorer`` is the widget, precomputed for every combination.

Example::

    from lessons import sagas
    run = sagas.run_trip(seed=3, trouble="car refused", compensate=True)
    print(run.outcome)                      # 'compensated: hotel, flight'
    print(run.verdict)                      # PASS saga_completed_or_compensated(...)
"""

from __future__ import annotations

import contextlib
import html
import uuid
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import sandbox
from sandbox.checkers import saga_completed_or_compensated
from sandbox.faults import Kill, Schedule

#: The saga's steps in order, and the provider that does each one.
STEPS = ("flight", "hotel", "car")
PROVIDER = {"flight": "airline", "hotel": "hotel", "car": "carhire"}
#: What can go wrong in a run: nothing, one provider refuses, or the orchestrator dies after a step.
TROUBLES = ("nothing", "flight refused", "hotel refused", "car refused", "crash after flight", "crash after hotel")
#: The orchestrator's variants, as the widget names them.
VARIANTS = {
    "no compensation": {"compensate": False, "persist": False, "stable_ids": True},
    "compensate (log in memory)": {"compensate": True, "persist": False, "stable_ids": True},
    "compensate + persisted log, new id per attempt": {"compensate": True, "persist": True, "stable_ids": False},
    "compensate + persisted log + stable ids": {"compensate": True, "persist": True, "stable_ids": True},
}
#: How long a killed orchestrator stays down, and the quiet time after the trip.
RESTART_AFTER = 0.3
SETTLE = 2.0


# --- the providers (the same code three times: an airline, a hotel, a car hire) ---------------


class BookingRequest(BaseModel):
    """Book one unit for ``trip``; ``id`` is chosen by the caller: the same id is the same booking."""

    id: str
    trip: str


def create_provider_app(provider: str, step: str) -> FastAPI:
    """A provider: ``POST /bookings`` (idempotent by ``id``), ``POST /bookings/{id}/cancel`` (a
    compensation: the booking is kept, marked cancelled, and its unit goes back on sale)."""
    app = FastAPI(title=provider)
    provider_db = Depends(sandbox.database(f"{provider}-db"))

    @app.post("/bookings", status_code=201)
    async def book(req: BookingRequest, db: sandbox.Database = provider_db) -> dict:
        async with db.transaction() as tx:
            booking = await tx.get("bookings", req.id)
            if booking is not None:
                return booking  # the same id again: the same booking, nothing new
            left = await tx.get("capacity", "units", for_update=True)
            if left["n"] > 0:
                left["n"] -= 1
                await tx.put("capacity", "units", left)
                booking = {"id": req.id, "trip": req.trip, "status": "booked"}
                await tx.put("bookings", req.id, booking)
        if booking is None:
            raise HTTPException(409, f"no {step} left")
        sandbox.event("saga", saga=req.trip, step=step, action="do", booking=req.id)
        return booking

    @app.post("/bookings/{booking_id}/cancel")
    async def cancel(booking_id: str, db: sandbox.Database = provider_db) -> dict:
        async with db.transaction() as tx:
            booking = await tx.get("bookings", booking_id, for_update=True)
            if booking is None or booking["status"] == "cancelled":
                return booking or {"id": booking_id, "status": "unknown"}  # cancelling twice changes nothing
            booking["status"] = "cancelled"  # a semantic undo: the booking stays on record, cancelled
            await tx.put("bookings", booking_id, booking)
            left = await tx.get("capacity", "units", for_update=True)
            left["n"] += 1
            await tx.put("capacity", "units", left)
        sandbox.event("saga", saga=booking["trip"], step=step, action="undo", booking=booking_id)
        return booking

    return app


# --- the orchestrator ---------------------------------------------------------------------------


class TripRequest(BaseModel):
    """What a customer sends: who travels."""

    traveller: str


def create_trips_app(compensate: bool = True, persist: bool = True, stable_ids: bool = True) -> FastAPI:
    """The orchestrator: ``POST /trips`` books a flight, a hotel and a car, as a saga (see the module docstring)."""
    memory: dict[str, dict] = {}  # the saga log when it is not persisted: gone when the process dies

    async def save(db: sandbox.Database, saga: dict) -> None:
        if persist:
            await db.put("sagas", saga["id"], saga)
        else:
            memory[saga["id"]] = dict(saga)
        sandbox.event("saga-log", trip=saga["id"], status=saga["status"], done=",".join(saga["done"]),
                      undone=",".join(saga["undone"]), refused=saga["refused"],
                      kept_in="trips-db" if persist else "memory")

    def booking_id(saga: dict, step: str) -> str:
        if stable_ids:
            return f"{saga['id']}-{step}"  # the same on every attempt: a retry is the same booking
        return f"{saga['id']}-{step}-{uuid.uuid4().hex[:4]}"  # new on every attempt: a retry books again

    async def drive(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
        """Take the saga from where its log says it stands to its end."""
        for step in STEPS:
            if saga["status"] != "running":
                break
            if step in saga["done"]:
                continue
            r = await http.post(f"http://{PROVIDER[step]}/bookings",
                                json={"id": booking_id(saga, step), "trip": saga["id"]}, timeout=1.0)
            if r.status_code == 201:
                saga["done"].append(step)
                saga["ids"][step] = r.json()["id"]
            else:
                saga["status"] = "compensating" if compensate else "failed"
                saga["refused"] = step
            await save(db, saga)
        if saga["status"] == "running":
            saga["status"] = "completed"
            await save(db, saga)
        if saga["status"] == "compensating":
            for step in reversed(saga["done"]):  # last booked, first cancelled
                if step not in saga["undone"]:
                    url = f"http://{PROVIDER[step]}/bookings/{saga['ids'][step]}/cancel"
                    await http.post(url, timeout=1.0)
                    saga["undone"].append(step)
                    await save(db, saga)
            saga["status"] = "compensated"
            await save(db, saga)
        return saga

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if persist:  # a (re)started orchestrator first finishes the sagas its log says are unfinished
            db = await sandbox.resolve(app, sandbox.database("trips-db"))  # no request at startup
            http = await sandbox.resolve(app, sandbox.http_client)
            for row in await db.scan("sagas"):
                if row.value["status"] in ("running", "compensating"):
                    sandbox.event("recovery", trip=row.value["id"], status=row.value["status"])
                    await drive(row.value, db, http)
        yield

    app = FastAPI(title="trips", lifespan=lifespan)
    trips_db, http_client = Depends(sandbox.database("trips-db")), Depends(sandbox.http_client)

    @app.post("/trips", status_code=201)
    async def book_trip(req: TripRequest, db: sandbox.Database = trips_db,
                        http: sandbox.HttpClient = http_client) -> dict:
        saga = {"id": f"trip-{req.traveller}", "status": "running", "done": [], "undone": [], "ids": {},
                "refused": None}
        await save(db, saga)  # the log first: from now on a restart can find this saga
        saga = await drive(saga, db, http)
        if saga["status"] != "completed":
            raise HTTPException(409, f"trip not booked: no {saga['refused']} available ({saga['status']})")
        return saga

    return app


# --- one run --------------------------------------------------------------------------------------


@dataclass
class TripRun:
    """One finished run: the world, what went wrong, the orchestrator's variant, and what it came to."""

    world: sandbox.World
    trouble: str
    flags: dict[str, bool]
    verdict: Any
    outcome: str
    bookings: dict[str, list[dict]] = field(default_factory=dict)


def build_world(seed: int, trouble: str = "nothing", **flags: bool) -> sandbox.World:
    """A world for one trip: the three providers (the refusing one with nothing left), the orchestrator
    ``trips`` (one replica, variant ``flags``) and one customer. Not run yet."""
    if trouble not in TROUBLES:
        raise ValueError(f"trouble={trouble!r}: choose one of {TROUBLES}")
    world = sandbox.World(seed=seed)
    world.network.set_defaults(latency=0.005, jitter=0.001)
    world.add_database("trips-db")
    for step in STEPS:
        provider = PROVIDER[step]
        world.add_database(f"{provider}-db")
        units = 0 if trouble == f"{step} refused" else 3
        world.database(f"{provider}-db").load("capacity", {"units": {"n": units}})
        world.add_service(provider, lambda p=provider, s=step: create_provider_app(p, s), isolate_module=False)
    world.add_service("trips", lambda: create_trips_app(**flags), isolate_module=False)
    world.add_client("ada", traveller, "ada", start=0.05)  # once trips is up
    return world


async def traveller(client: sandbox.Client, name: str) -> None:
    """One customer booking one trip; the answer (or the lack of one) goes into the history."""
    async with client.operation("book-trip", name) as op:
        try:
            r = await client.http.post("http://trips/trips", json={"traveller": name}, timeout=3.0)
        except sandbox.RequestTimeout:
            op.info(error="no answer")
            return
        if r.status_code == 201:
            op.ok({"status": "confirmed"})
        elif r.status_code < 500:
            op.fail(r.json())
        else:
            op.info({"status": r.status_code})


def run_trip(seed: int, trouble: str = "nothing", *, compensate: bool = True, persist: bool = True,
             stable_ids: bool = True) -> TripRun:
    """Book one trip in a fresh world from ``seed``, with ``trouble``; return the finished run.

    "crash after flight" kills the orchestrator just after the airline committed the flight, while
    the airline's reply is still on the wire; it restarts RESTART_AFTER seconds later.
    """
    flags = {"compensate": compensate, "persist": persist, "stable_ids": stable_ids}
    world = build_world(seed, trouble, **flags)
    if trouble.startswith("crash after "):
        step = trouble.removeprefix("crash after ")
        at = _time_of_step(seed, step, flags)
        world.inject(Schedule([Kill("trips", start=at + 0.001, restart_after=RESTART_AFTER)]))
    world.run(settle=SETTLE)
    bookings = {step: list(world.database(f"{PROVIDER[step]}-db").rows("bookings").values()) for step in STEPS}
    verdict = saga_completed_or_compensated(STEPS)(world)
    return TripRun(world, trouble, flags, verdict, _outcome(bookings), bookings)


def _time_of_step(seed: int, step: str, flags: dict[str, bool]) -> float:
    """When ``step`` is committed in the same run without the crash (the runs agree up to the crash)."""
    world = build_world(seed, "nothing", **flags)
    world.run(settle=SETTLE)
    return next(e.time for e in world.events if e.kind == "saga" and e["step"] == step and e["action"] == "do")


def _outcome(bookings: dict[str, list[dict]]) -> str:
    held = {s: sum(b["status"] == "booked" for b in bookings[s]) for s in STEPS}
    cancelled = [s for s in reversed(STEPS) if any(b["status"] == "cancelled" for b in bookings[s])]
    if any(n > 1 for n in held.values()):
        return "booked twice: " + ", ".join(s for s, n in held.items() if n > 1)
    if all(held.values()):
        return "completed"
    if not any(held.values()):
        return "compensated: " + ", ".join(cancelled) if cancelled else "nothing booked"
    return "half done: " + ", ".join(s for s in STEPS if held[s]) + " booked"


# --- the saga's log, moment by moment -------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    """One line of the saga's story, and the state of every participant just after it."""

    time: float
    who: str
    what: str
    providers: dict[str, str]  # step -> "-", "booked", "booked x2", "cancelled"...
    log: str  # what the orchestrator's saga log says, or that it is lost
    kind: str  # "do", "undo", "refused", "crash", "restart", "recovery", "answer", "log"


def saga_log(run: TripRun) -> list[Moment]:
    """The run as the moments a learner steps through: each booking and cancellation, each write of
    the orchestrator's log, each refusal, crash, restart and recovery, and the customer's answer."""
    world = run.world
    entries: list[tuple[float, int, str, Any]] = []
    for i, e in enumerate(world.events):
        entries.append((e.time, i, "event", e))
    for i, entry in enumerate(world.recorder.log):
        if entry[1] in ("node.crash", "node.restart") and str(entry[2]).startswith("trips"):
            entries.append((entry[0], i, entry[1], entry[2]))
    for op in world.history:
        if op.f == "book-trip" and op.type != "invoke":
            entries.append((op.time, 10**9, "answer", op))
    entries.sort(key=lambda x: (x[0], x[1]))

    state = {s: [] for s in STEPS}  # per step: the status of each booking made
    log = "(empty)"
    moments = [Moment(0.0, "", "the trip is requested: nothing booked yet", _show(state), log, "start")]
    for time, _, kind, item in entries:
        if kind == "event":
            e = item
            if e.kind == "saga":
                n = STEPS.index(e["step"]) + 1
                if e["action"] == "do":
                    state[e["step"]].append("booked")
                    what = f"T{n}: {e.node.rsplit('-', 1)[0]} books the {e['step']} ({e['booking']})"
                else:
                    state[e["step"]][state[e["step"]].index("booked")] = "cancelled"
                    what = f"C{n}: {e.node.rsplit('-', 1)[0]} cancels the {e['step']} ({e['booking']})"
                moments.append(Moment(time, e.node, what, _show(state), log, e["action"]))
            elif e.kind == "saga-log":
                log = _log_text(e)
                why = f" ({e['refused']} refused)" if e["refused"] and e["status"] in ("compensating", "failed") else ""
                moments.append(Moment(time, e.node, f"trips writes its saga log to {e['kept_in']}: "
                                      f"{e['status']}{why}, done [{e['done']}]", _show(state), log, "log"))
            elif e.kind == "recovery":
                moments.append(Moment(time, e.node, f"trips, restarted, reads its log: {e['trip']} is "
                                      f"{e['status']}, so it takes the saga over", _show(state), log, "recovery"))
        elif kind == "node.crash":
            if not run.flags["persist"]:
                log = "LOST (it was in the crashed process's memory)"
            moments.append(Moment(time, str(item), "the orchestrator crashes (killed)", _show(state), log, "crash"))
        elif kind == "node.restart":
            moments.append(Moment(time, str(item), "the orchestrator restarts, from fresh memory", _show(state),
                                  log, "restart"))
        elif kind == "answer":
            op = item
            said = {"ok": "confirmed (201)", "fail": "refused", "info": "no answer (timed out)"}[op.type]
            moments.append(Moment(time, op.process, f"the customer is told: {said}", _show(state), log, "answer"))
    return moments


def _show(state: dict[str, list[str]]) -> dict[str, str]:
    out = {}
    for step, marks in state.items():
        if not marks:
            out[step] = "-"
        elif len(marks) == 1:
            out[step] = marks[0]
        else:
            out[step] = " + ".join(marks)
    return out


def _log_text(e: sandbox.Event) -> str:
    parts = [f"status={e['status']}", f"done=[{e['done']}]"]
    if e["undone"]:
        parts.append(f"undone=[{e['undone']}]")
    return " ".join(parts) + f"  (in {e['kept_in']})"


# --- the widget -----------------------------------------------------------------------------------

_COLOURS = {"-": "#adb5bd", "booked": "#2b8a3e", "cancelled": "#e67700"}
_KIND_COLOURS = {"crash": "#c92a2a", "restart": "#1971c2", "recovery": "#1971c2", "answer": "#5f3dc4",
                 "undo": "#e67700", "do": "#2b8a3e"}


def _badge(status: str) -> str:
    colour = _COLOURS.get(status, "#c92a2a")  # anything else (booked twice) in red
    return (f"<span style='background:{colour};color:white;border-radius:3px;padding:1px 6px'>"
            f"{html.escape(status)}</span>")


def render_moment(run: TripRun, moments: list[Moment], index: int) -> str:
    """The HTML the widget shows for moment ``index`` of ``run``: the participants, the log, the story so far."""
    m = moments[index]
    e = html.escape
    cell = "padding:3px 10px;border-bottom:1px solid #e9ecef;text-align:left"
    rows = "".join(f"<tr><td style='{cell}'><b>{e(PROVIDER[s])}</b> ({s})</td><td style='{cell}'>{_badge(st)}</td></tr>"
                   for s, st in m.providers.items())
    story = []
    for i, past in enumerate(moments[: index + 1]):
        colour = _KIND_COLOURS.get(past.kind, "#495057")
        weight = "bold" if i == index else "normal"
        story.append(f"<div style='color:{colour};font-weight:{weight}'>{past.time:7.3f} s&nbsp; {e(past.what)}</div>")
    end = ""
    if index == len(moments) - 1:
        v = run.verdict
        colour = "#2b8a3e" if v.outcome.name == "PASS" else "#c92a2a"
        end = (f"<div style='margin-top:6px;color:{colour}'><b>End of the run: {e(run.outcome)}</b><br>"
               f"checker: {e(v.outcome.name)}: {e(v.summary)}</div>")
    return (f"<div style='font-family:sans-serif;font-size:13px'>"
            f"<div><b>moment {index + 1} of {len(moments)}</b>, t = {m.time:.3f} s: {e(m.what)}</div>"
            f"<table style='border-collapse:collapse;margin:6px 0'>{rows}</table>"
            f"<div><b>the orchestrator's saga log:</b> <code>{e(m.log)}</code></div>"
            f"<div style='margin-top:6px'><b>the story so far</b></div>"
            f"<div style='font-family:monospace;font-size:12px'>{''.join(story)}</div>{end}</div>")


def all_runs(seed: int) -> dict[tuple[str, str], TripRun]:
    """Every (trouble, variant) run for ``seed``: what the widget switches between."""
    return {(t, v): run_trip(seed, t, **VARIANTS[v]) for t, v in product(TROUBLES, VARIANTS)}


class Summary:
    """How every run ended, one row per trouble, one column per variant: text when printed, a table in a notebook."""

    SHORT = ("no compensation", "compensate", "+ persisted log", "+ stable ids")

    def __init__(self, runs: dict[tuple[str, str], TripRun]) -> None:
        self.rows = [(t, [runs[(t, v)] for v in VARIANTS]) for t in TROUBLES]

    def __str__(self) -> str:
        width = 2 + max(len(run.outcome) for _, row in self.rows for run in row)
        lines = [f"{'what goes wrong':<20}" + "".join(f"{s:<{width}}" for s in self.SHORT)]
        for t, row in self.rows:
            lines.append(f"{t:<20}" + "".join(f"{run.outcome:<{width}}" for run in row))
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        cell = "padding:3px 8px;text-align:left;border-bottom:1px solid #e9ecef"
        head = "".join(f"<th style='{cell}'>{html.escape(s)}</th>" for s in ("what goes wrong", *self.SHORT))
        body = []
        for t, row in self.rows:
            tds = []
            for run in row:
                colour = "#2b8a3e" if run.verdict.outcome.name == "PASS" else (
                    "#c92a2a" if run.verdict.outcome.name == "FAIL" else "#495057")
                tds.append(f"<td style='{cell};color:{colour}'>{html.escape(run.outcome)}</td>")
            body.append(f"<tr><td style='{cell}'><b>{html.escape(t)}</b></td>{''.join(tds)}</tr>")
        return (f"<table style='border-collapse:collapse;font-size:13px'><tr>{head}</tr>{''.join(body)}</table>"
                f"<div style='font-size:12px;color:#868e96'>green: the checker passes; red: it fails; grey: "
                f"nothing to check (no step was done)</div>")


def summary(runs: dict[tuple[str, str], TripRun]) -> Summary:
    """How each run ended: for each trouble, each variant (``print`` it for text)."""
    return Summary(runs)


def saga_explorer(seed: int, runs: dict[tuple[str, str], TripRun] | None = None) -> Any:
    """The widget: pick what goes wrong and the orchestrator's variant, then step through the saga's log.
    Every run is computed up front (``all_runs``), so each click only redraws."""
    import ipywidgets as widgets

    runs = runs if runs is not None else all_runs(seed)
    logs = {key: saga_log(run) for key, run in runs.items()}
    trouble = widgets.Dropdown(options=TROUBLES, value="car refused", description="goes wrong:",
                               layout=widgets.Layout(width="320px"))
    variant = widgets.Dropdown(options=list(VARIANTS), value="no compensation", description="orchestrator:",
                               style={"description_width": "initial"}, layout=widgets.Layout(width="460px"))
    slider = widgets.IntSlider(value=0, min=0, max=1, description="moment", layout=widgets.Layout(width="55%"))
    back = widgets.Button(description="< back")
    forward = widgets.Button(description="forward >")
    to_end = widgets.Button(description="end >>", button_style="info")
    view = widgets.HTML()

    def key() -> tuple[str, str]:
        return trouble.value, variant.value

    def render(*_: Any) -> None:
        moments = logs[key()]
        view.value = render_moment(runs[key()], moments, min(slider.value, len(moments) - 1))

    def switch(*_: Any) -> None:
        slider.max = len(logs[key()]) - 1
        slider.value = 0
        render()

    def move(step: int) -> None:
        slider.value = min(max(slider.value + step, 0), slider.max)

    trouble.observe(switch, names="value")
    variant.observe(switch, names="value")
    slider.observe(render, names="value")
    back.on_click(lambda _: move(-1))
    forward.on_click(lambda _: move(+1))
    to_end.on_click(lambda _: setattr(slider, "value", slider.max))
    box = widgets.VBox([widgets.HBox([trouble, variant]), widgets.HBox([back, slider, forward, to_end]), view])
    box.runs, box.trouble, box.variant, box.slider, box.view = runs, trouble, variant, slider, view  # for tests
    switch()
    return box


# --- a picture ------------------------------------------------------------------------------------


def strip_figure(runs: dict[tuple[str, str], TripRun], trouble: str) -> Any:
    """One row of coloured cells per variant: each provider's state after every moment of the saga's log,
    for one ``trouble``. Grey: nothing; green: booked; orange: cancelled; red: booked twice."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = list(VARIANTS)
    fig = Figure(figsize=(11, 1.1 + 1.25 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    code = {"-": 0, "booked": 1, "cancelled": 2}
    colours = ["#dee2e6", "#2b8a3e", "#f08c00", "#c92a2a"]
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(colours)
    for ax, name in zip(axes, names):
        moments = saga_log(runs[(trouble, name)])
        grid = [[code.get(m.providers[s], 3) for m in moments] for s in STEPS]
        ax.imshow(grid, aspect="auto", cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        ax.set_yticks(range(len(STEPS)), [PROVIDER[s] for s in STEPS], fontsize=8)
        for i, m in enumerate(moments):
            if m.kind in ("crash", "restart", "recovery"):
                ax.axvline(i, color=_KIND_COLOURS[m.kind], lw=2)
        ax.set_xticks([])
        ax.set_title(f"{name}: {runs[(trouble, name)].outcome}", fontsize=9, loc="left")
    axes[-1].set_xlabel("moments of the saga's log (left to right); vertical lines: crash (red), restart "
                        "and recovery (blue)", fontsize=8)
    fig.legend(handles=[Patch(color=c, label=lab) for c, lab in
                        zip(colours, ["nothing", "booked", "cancelled", "booked twice"])],
               loc="outside upper right", ncols=4, fontsize=8)
    fig.suptitle(f"Trip saga, {trouble}", fontsize=10, x=0.01, ha="left")
    return fig
