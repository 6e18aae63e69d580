"""Module 04's blackboard: a sign-up that crosses three services and a Kafka topic, traced.

A visitor signs up through the ``gateway``, which forwards the request to ``accounts``;
``accounts`` saves the user and publishes ``user-signed-up``; the ``emails`` service
consumes it (group ``welcome``) and asks the ``mailer`` to send a welcome email. The
mailer refuses addresses at ``bounce.example`` (502), so one sign-up in the demo fails
downstream, long after the visitor was told "welcome".

::

    visitor --HTTP--> gateway --HTTP--> accounts --Kafka: user-signed-up--> emails --HTTP--> mailer

Two switches change the code, not the world:

* ``propagate``: does ``accounts`` inject the trace context (W3C ``traceparent``) into the
  message headers? Without it the consumer starts a new root trace, and one sign-up is
  two traces.
* ``end_spans``: does the consumer end the span it opens around the mailer call? Without
  it that span is never exported, and the mailer call below it is an orphan.

The widget (``span_by_span``) replays a finished run span by span, in start order; it
draws with ``waterfall``, a small cousin of ``sandbox.viz.trace_waterfall`` that can put
several traces on one time axis and mark the newest span.

Example::

    world = run_flow(4)
    spans = signup_spans(world, "ada")
    waterfall(spans)
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import ipywidgets as widgets
from fastapi import Depends, FastAPI, HTTPException
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Status, StatusCode, Tracer
from pydantic import BaseModel

import sandbox
from sandbox.viz import _style as style

TOPIC = "user-signed-up"
GROUP = "welcome"
TIMEOUT = 1.0
#: The visitors of the demo, and the address each signs up with (cy's bounces).
VISITORS = {"ada": "ada@example.com", "bo": "bo@example.com", "cy": "cy@bounce.example"}


class SignUp(BaseModel):
    """A sign-up as the visitor sends it."""

    user: str
    email: str


# --- the services --------------------------------------------------------------------------


def create_gateway() -> FastAPI:
    """The edge: ``POST /signup`` forwards to ``accounts`` (the HTTP client injects ``traceparent`` by itself)."""
    app = FastAPI(title="gateway")

    @app.post("/signup", status_code=201)
    async def signup(body: SignUp, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        r = await http.post("http://accounts/users", json=body.model_dump(), timeout=TIMEOUT)
        if r.status_code != 201:
            raise HTTPException(502, f"accounts answered {r.status_code}")
        return r.json()

    return app


def create_accounts(propagate: bool = True) -> FastAPI:
    """``POST /users``: save the user, publish ``user-signed-up``; with ``propagate``, the message carries
    the current trace context in its headers (OpenTelemetry's ``inject``)."""
    app = FastAPI(title="accounts")

    @app.post("/users", status_code=201)
    async def create_user(
        body: SignUp,
        db: sandbox.Database = Depends(sandbox.database("accounts-db")),
        producer: sandbox.Producer = Depends(sandbox.producer),
    ) -> dict:
        trace.get_current_span().set_attribute("user.id", body.user)  # the SERVER span
        await db.put("users", body.user, body.model_dump())
        headers: dict[str, str] = {}
        if propagate:
            inject(headers)  # writes headers["traceparent"] from the current span
        await producer.send(TOPIC, body.model_dump(), key=body.user, headers=headers)
        return {"user": body.user, "status": "welcome"}

    return app


def create_emails(end_spans: bool = True) -> FastAPI:
    """The ``welcome`` consumer of ``user-signed-up``: ask the mailer for a welcome email, inside a span of
    its own; a refusal is recorded on that span and on the CONSUMER span (status ERROR). With
    ``end_spans=False`` it opens its span by hand and forgets to end it."""
    app = FastAPI(title="emails")

    @sandbox.consumer(app, TOPIC, group=GROUP)
    async def welcome(
        message: sandbox.Message,
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        tracer: Tracer = Depends(sandbox.tracer),
    ) -> None:
        user = message.value
        consumer_span = trace.get_current_span()  # made by the sandbox, as an instrumentation library would
        consumer_span.set_attribute("user.id", user["user"])
        attributes = {"user.id": user["user"], "email.template": "welcome"}
        try:
            if end_spans:
                with tracer.start_as_current_span("send-welcome-email", attributes=attributes):
                    r = await http.post("http://mailer/send", json={"to": user["email"]}, timeout=TIMEOUT)
                    r.raise_for_status()  # escapes the with: the span records it and ends with status ERROR
            else:
                span = tracer.start_span("send-welcome-email", attributes=attributes)
                with trace.use_span(span, end_on_exit=False):  # the bug: nothing ever calls span.end()
                    r = await http.post("http://mailer/send", json={"to": user["email"]}, timeout=TIMEOUT)
                    r.raise_for_status()
        except Exception as exc:  # noqa: BLE001 (any failure of the call is the email's failure)
            # Do not block the topic for one bad address, but say so in the trace.
            consumer_span.record_exception(exc)
            consumer_span.set_status(Status(StatusCode.ERROR, f"welcome email failed: {exc}"))

    return app


def create_mailer() -> FastAPI:
    """``POST /send``: 20-60 ms; refuses (502) any address at ``bounce.example``."""
    app = FastAPI(title="mailer")

    @app.post("/send", status_code=202)
    async def send(body: dict) -> dict:
        await sandbox.sleep(random.uniform(0.02, 0.06))  # seeded by the world inside the sandbox
        if str(body.get("to", "")).endswith("@bounce.example"):
            raise HTTPException(502, "the mail server refused the address")
        return {"queued": body["to"]}

    return app


async def visitor(client: sandbox.Client, email: str) -> None:
    """One visitor signing up once, at a moment of the first 100 ms drawn from the seed."""
    await client.sleep(client.random.uniform(0.0, 0.1))
    body = {"user": client.name, "email": email}
    async with client.operation("signup", body) as op:
        r = await client.http.post("http://gateway/signup", json=body, timeout=2.0)
        op.ok(r.json()) if r.status_code == 201 else op.fail(r.status_code)


def build_world(seed: int, *, propagate: bool = True, end_spans: bool = True) -> sandbox.World:
    """The sign-up world for ``seed``, tracing on, one visitor per entry of ``VISITORS``."""
    world = sandbox.World(seed=seed, tracing=True)
    world.add_database("accounts-db")
    world.add_service("gateway", create_gateway, isolate_module=False)
    world.add_service("accounts", lambda: create_accounts(propagate), isolate_module=False)
    world.add_service("emails", lambda: create_emails(end_spans), isolate_module=False)
    world.add_service("mailer", create_mailer, isolate_module=False)
    world.broker.create_topic(TOPIC, partitions=1)
    for name, email in VISITORS.items():
        world.add_client(name, visitor, email)
    return world


def run_flow(seed: int, *, propagate: bool = True, end_spans: bool = True) -> sandbox.World:
    """``build_world`` run until every sign-up is handled (1 s of virtual time after the last request)."""
    return build_world(seed, propagate=propagate, end_spans=end_spans).run(settle=1.0)


# --- reading spans --------------------------------------------------------------------------


def service_of(span: Any) -> str:
    """The replica a span ran on (``service.instance.id``: ``accounts-0``, or a visitor's name)."""
    return str(span.resource.attributes.get("service.instance.id", "?"))


def span_name(span: Any) -> str:
    """The span's name; an HTTP CLIENT span (named by its method alone) gets its URL: ``POST accounts/users``."""
    url = (span.attributes or {}).get("url.full")
    if span.kind.name == "CLIENT" and isinstance(url, str) and " " not in span.name:
        return f"{span.name} {url.split('://', 1)[-1]}"
    return span.name


def describe(span: Any) -> str:
    """``CONSUMER 'process user-signed-up' on emails-0``."""
    return f"{span.kind.name} {span_name(span)!r} on {service_of(span)}"


def signup_spans(world: sandbox.World, user: str) -> list[Any]:
    """Every span of ``user``'s sign-up: the trace of the visitor's request, and any trace that holds a
    span tagged ``user.id=user`` (the consumer's, when it started a trace of its own); in start order."""
    spans = world.spans()
    mine = {s.context.trace_id for s in spans if service_of(s) == user}
    mine |= {s.context.trace_id for s in spans if (s.attributes or {}).get("user.id") == user}
    return sorted((s for s in spans if s.context.trace_id in mine), key=lambda s: (s.start_time, _depth(s, spans)))


def _depth(span: Any, spans: Sequence[Any]) -> int:
    by_id = {s.context.span_id: s for s in spans if s.context.trace_id == span.context.trace_id}
    depth, parent = 0, span.parent
    while parent is not None and parent.span_id in by_id:
        depth += 1
        parent = by_id[parent.span_id].parent
    return depth


def traces_of(spans: Sequence[Any]) -> list[int]:
    """The trace ids among ``spans``, in the order each trace began."""
    first: dict[int, int] = {}
    for s in spans:
        first[s.context.trace_id] = min(first.get(s.context.trace_id, s.start_time), s.start_time)
    return sorted(first, key=first.__getitem__)


def roots(spans: Sequence[Any]) -> list[Any]:
    """The spans with no parent: each one began a trace."""
    return [s for s in spans if s.parent is None]


def span_table(spans: Sequence[Any]) -> str:
    """One line per span: trace (first 8 hex digits), span id, parent id, kind, name, replica, status."""
    lines = [f"{'trace':8}  {'span':16}  {'parent':16}  {'kind':8}  {'name':24}  {'on':10}  status"]
    for s in spans:
        parent = f"{s.parent.span_id:016x}" if s.parent is not None else "-"
        lines.append(f"{s.context.trace_id:032x}"[:8] + f"  {s.context.span_id:016x}  {parent:16}  "
                     f"{s.kind.name:8}  {span_name(s)[:24]:24}  {service_of(s):10}  {s.status.status_code.name}")
    return "\n".join(lines)


class TraceParent(NamedTuple):
    """The four fields of a W3C ``traceparent`` header."""

    version: str
    trace_id: str
    parent_id: str
    flags: str

    @property
    def sampled(self) -> bool:
        """The lowest bit of the flags: the caller recorded its span (and asks you to record yours)."""
        return bool(int(self.flags, 16) & 1)


def parse_traceparent(header: str) -> TraceParent:
    """Split a ``traceparent`` header (``00-<32 hex>-<16 hex>-<2 hex>``) into its fields.

    Raises:
        ValueError: not four dash-separated lowercase hex fields of 2, 32, 16 and 2 digits, or an id of zeros.
    """
    parts = header.strip().split("-")
    sizes = (2, 32, 16, 2)
    if len(parts) != 4 or any(len(p) != n or p.strip("0123456789abcdef") for p, n in zip(parts, sizes)):
        raise ValueError(f"{header!r} is not a traceparent: want 00-<32 hex>-<16 hex>-<2 hex>, lowercase")
    if parts[1] == "0" * 32 or parts[2] == "0" * 16:
        raise ValueError(f"{header!r}: an all-zero trace id or parent id is invalid")
    return TraceParent(*parts)


def message_headers(world: sandbox.World, user: str) -> dict[str, str]:
    """The headers of ``user``'s ``user-signed-up`` message, as stored in the topic."""
    return next(m.headers for m in world.broker.messages(TOPIC) if m.key == user)


def kept_by_sampler(trace_id: int, ratio: float) -> bool:
    """OpenTelemetry's ``TraceIdRatioBased`` head sampler: keep a trace if the low 64 bits of its id fall
    below ``ratio`` of the 64-bit range. Every service computes the same answer for the same trace id."""
    return (trace_id & (2**64 - 1)) < round(ratio * 2**64)


# --- the waterfall -------------------------------------------------------------------------

ROW_IN = 0.3
NAME_IN = 3.3
BAR_IN = 6.4


@dataclass(frozen=True)
class _Row:
    span: Any | None  # None: a trace's heading row
    depth: int
    text: str


def _rows(spans: Sequence[Any]) -> list[_Row]:
    """Rows in Jaeger's order: trace by trace, each parent followed by its children by start time."""
    rows: list[_Row] = []
    traces = traces_of(spans)
    for n, tid in enumerate(traces, 1):
        mine = [s for s in spans if s.context.trace_id == tid]
        ids = {s.context.span_id for s in mine}
        children: dict[int | None, list[Any]] = {}
        for s in mine:
            parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
            children.setdefault(parent, []).append(s)
        rows.append(_Row(None, 0, f"trace {n} of {len(traces)}: {tid:032x}"))

        stack = [(root, 0) for root in sorted(children.get(None, []), key=lambda s: (s.start_time, s.name), reverse=True)]
        while stack:  # depth first, each parent before its children, children by start time
            span, depth = stack.pop()
            orphan = "  (orphan: parent never ended)" if span.parent is not None and span.parent.span_id not in ids else ""
            rows.append(_Row(span, depth, ("└ " if depth else "") + f"{service_of(span)}  {span_name(span)}{orphan}"))
            kids = sorted(children.get(span.context.span_id, []), key=lambda c: (c.start_time, c.name), reverse=True)
            stack.extend((child, depth + 1) for child in kids)
    return rows


def waterfall(spans: Sequence[Any], *, shown: int | None = None, title: str | None = None,
              rows_for: Sequence[Any] | None = None) -> Figure:
    """``spans`` as a waterfall, trace under trace on one time axis (ms since the first span).

    ``shown``: draw only the first ``shown`` spans in start order, the last of them outlined (the
    layout, axis and height stay those of all the spans, so that the picture grows in place).
    A red bar ended with status ERROR; a hatched bar is an orphan.
    """
    spans = sorted(spans, key=lambda s: (s.start_time, _depth(s, spans)))
    visible = spans if shown is None else spans[:shown]
    newest = visible[-1] if shown and visible else None
    t0 = min((s.start_time for s in spans), default=0)
    total = max(((s.end_time - t0) / 1e6 for s in spans), default=1.0) or 1.0
    rows = _rows(visible)
    n_rows = len(_rows(rows_for if rows_for is not None else spans))
    plot_h = max(n_rows, 1) * ROW_IN
    fig = Figure(figsize=(NAME_IN + BAR_IN + 0.5, plot_h + 1.2))
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((NAME_IN / fw, 0.55 / fh, BAR_IN / fw, plot_h / fh))
    colors: dict[str, str] = {}
    for s in spans:
        name = str(s.resource.attributes.get("service.name", "?"))
        colors.setdefault(name, style.SERVICE_COLORS[len(colors) % len(style.SERVICE_COLORS)])
    for y, row in enumerate(rows):
        if row.span is None:
            ax.axhline(y - 0.5, color="#adb5bd", lw=0.8)
            ax.text(-NAME_IN / BAR_IN + 0.01, y, row.text, transform=ax.get_yaxis_transform(), ha="left",
                    va="center", fontsize=style.FONT_SMALL + 0.5, fontweight="bold", color="#495057", clip_on=False)
            continue
        s = row.span
        start, end = (s.start_time - t0) / 1e6, (s.end_time - t0) / 1e6
        error = s.status.status_code is StatusCode.ERROR
        orphan = "orphan" in row.text
        color = style.ERROR_COLOR if error else colors[str(s.resource.attributes.get("service.name", "?"))]
        ax.add_patch(Rectangle((start, y - 0.32), max(end - start, total * 0.004), 0.64, facecolor=color,
                               hatch="//" if orphan else None, edgecolor="#212529" if s is newest else "white",
                               lw=2.0 if s is newest else 0.0))
        label = f"{end - start:.1f} ms"
        if end > total * 0.85:
            ax.text(start - total * 0.01, y, label, ha="right", va="center", fontsize=style.FONT_SMALL, color="#495057")
        else:
            ax.text(end + total * 0.01, y, label, ha="left", va="center", fontsize=style.FONT_SMALL, color="#495057")
        ax.text(-(NAME_IN - 0.15 - 0.16 * row.depth) / BAR_IN, y, row.text, transform=ax.get_yaxis_transform(),
                ha="left", va="center", fontsize=style.FONT_SMALL + 0.5, clip_on=False,
                fontweight="bold" if s is newest else "normal",
                color=style.ERROR_COLOR if error else "#212529")
    if len(visible) < len(spans) and n_rows > len(rows):  # the room the rest of the spans will take, said
        rest = len(spans) - len(visible)
        ax.text(0.5, (len(rows) + n_rows - 1) / 2, f"{rest} more span{'s' if rest != 1 else ''} to come: "
                f"press next \N{BLACK RIGHT-POINTING SMALL TRIANGLE} or move the slider", transform=ax.get_yaxis_transform(),
                ha="center", va="center", fontsize=style.FONT_SMALL + 1, color="#868e96", style="italic")
    ax.set_xlim(0, total * 1.03)
    ax.set_ylim(max(n_rows, 1) - 0.5, -0.5)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=style.FONT_SMALL)
    ax.set_xlabel("ms since the sign-up began (virtual time)", fontsize=style.FONT_SMALL)
    ax.grid(axis="x", color="#e9ecef", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title is None:
        n = len(traces_of(spans))
        title = f"{len(spans)} spans in {n} trace{'s' if n != 1 else ''}"
    fig.text(0.12 / fw, 1 - 0.12 / fh, title, fontsize=style.FONT_TITLE, fontweight="bold", va="top", ha="left")
    return fig


def caption(spans: Sequence[Any], shown: int) -> str:
    """What the ``shown``-th span (in start order) is: kind, where, parent, status and attributes."""
    spans = sorted(spans, key=lambda s: (s.start_time, _depth(s, spans)))
    s = spans[shown - 1]
    by_id = {(x.context.trace_id, x.context.span_id): x for x in spans}
    if s.parent is None:
        parent = "none: a root span, so a NEW TRACE begins here"
    else:
        p = by_id.get((s.context.trace_id, s.parent.span_id))
        parent = describe(p) if p is not None else f"{s.parent.span_id:016x}, which never ended (orphan)"
    attrs = ", ".join(f"{k}={v!r}" for k, v in sorted((s.attributes or {}).items()))
    t0 = spans[0].start_time
    status = s.status.status_code.name + (f" ({s.status.description})" if s.status.description else "")
    return (f"<b>{shown}/{len(spans)}: {describe(s)}</b>, from {(s.start_time - t0) / 1e6:.1f} to "
            f"{(s.end_time - t0) / 1e6:.1f} ms<br>parent: {parent}<br>status: {status}<br>"
            f"attributes: <code>{attrs}</code>")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def span_by_span(runs: dict[str, Sequence[Any]]) -> widgets.VBox:
    """A widget that builds a waterfall span by span: a toggle chooses the run (``runs``: label -> the
    spans of one request), a slider and Previous/Next buttons add the spans in start order, and a caption
    says what the newest span is. Pictures are drawn once each and cached, so each click only swaps a PNG."""
    labels = list(runs)
    cache: dict[tuple[str, int], bytes] = {}
    toggle = widgets.ToggleButtons(options=labels, value=labels[0])
    slider = widgets.IntSlider(value=1, min=1, max=len(runs[labels[0]]), description="spans",
                               continuous_update=True, layout=widgets.Layout(width="420px"))
    prev, nxt = widgets.Button(description="◀ previous"), widgets.Button(description="next ▶")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
    text = widgets.HTML()

    def render(*_: Any) -> None:
        spans = runs[toggle.value]
        slider.max = len(spans)
        k = min(slider.value, len(spans))
        key = (toggle.value, k)
        if key not in cache:
            cache[key] = _png(waterfall(spans, shown=k, title=f"{toggle.value}: {k} of {len(spans)} spans"))
        image.value = cache[key]
        text.value = caption(spans, k)

    def step(delta: int) -> None:
        slider.value = max(slider.min, min(slider.max, slider.value + delta))

    prev.on_click(lambda _b: step(-1))
    nxt.on_click(lambda _b: step(+1))
    slider.observe(render, names="value")
    toggle.observe(render, names="value")
    render()
    return widgets.VBox([toggle, widgets.HBox([prev, slider, nxt]), text, image])
