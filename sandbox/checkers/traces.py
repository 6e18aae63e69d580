"""Invariants of distributed traces: every request is one connected trace.

With ``World(seed, tracing=True)`` the sandbox records OpenTelemetry spans by
itself (see ``sandbox.tracing``): a CLIENT span for every HTTP request, a SERVER
span for every request served (child of the caller's span, through the W3C
``traceparent`` header), database and producer spans as children of whatever
span is current, and a CONSUMER span per message handled, child of the message's
``traceparent`` header if the producer put one there. Workload clients start no
span of their own, so each HTTP request a client sends is the root of one trace
(a client that retries starts a second trace).

A trace that breaks in two (a consumer that starts a new trace because the
context was not carried through Kafka, a background task started outside the
request's context, a span that was never ended) is invisible in a trace viewer
until the one day it is needed. ``connected_traces`` finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._vtime import due
from ..clocks import EPOCH_NS
from ..errors import UnknownNameError
from ._common import Invariant, InvariantBase, at, crashes, names, plural
from .verdict import Verdict

if TYPE_CHECKING:
    from ..world import World

Span = Any  # an OpenTelemetry ReadableSpan


def node_of(span: Span) -> str:
    """The node (service replica or client) that recorded ``span``."""
    return str(span.resource.attributes.get("service.instance.id", "?"))


def service_of(span: Span) -> str:
    """The service (or client) name of the node that recorded ``span``."""
    return str(span.resource.attributes.get("service.name", "?"))


def started(span: Span) -> float:
    """When ``span`` started, in virtual seconds."""
    return (span.start_time - EPOCH_NS) / 1e9


def ended(span: Span) -> float:
    return ((span.end_time or span.start_time) - EPOCH_NS) / 1e9


def short_trace(trace_id: int) -> str:
    """The first 8 hex digits of a trace id: enough to tell the traces of one run apart."""
    return f"{trace_id:032x}"[:8]


def describe(span: Span) -> str:
    """``t=0.1234 orders-0 SERVER 'POST /orders' (trace 3fa2c1d0, span 9b1e...)``: one span in one line."""
    return (
        f"{at(started(span))} {node_of(span)} {span.kind.name} {span.name!r} "
        f"(trace {short_trace(span.context.trace_id)}, span {span.context.span_id:016x})"
    )


_WHY_ROOT = {
    "CONSUMER": "the message carried no traceparent header: inject the context when sending "
                "(TraceContextTextMapPropagator().inject(headers)) so the consumer continues the trace",
    "SERVER": "the request carried no traceparent header, so the caller's trace stops there",
}
_WHY_ROOT_DEFAULT = (
    "it was started outside any request's context (a background task, or an explicit empty context), "
    "so the work it records is cut off from the request that caused it"
)


@dataclass(frozen=True, repr=False)
class _ConnectedTraces(InvariantBase):
    factory: ClassVar[str] = "connected_traces"
    entry_points: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "entry_points", names("entry_points", self.entry_points, "('scheduler',)"))

    def __call__(self, world: World) -> Verdict:
        if world.tracing is None:
            return Verdict.unknown(
                self.name, "tracing was off: build the world with World(seed, tracing=True) to check its traces"
            )
        spans = world.spans()
        if not spans:
            return Verdict.unknown(self.name, "no span was recorded: nothing ran")
        for name in self.entry_points:
            if name not in world.services and name not in world.nodes:
                raise UnknownNameError(
                    f"entry_points names {name!r}, which is no service or node of this world; "
                    f"services: {sorted(world.services)}"
                )
        entry = set(world.clients) | set(self.entry_points)
        traces: dict[int, set[int]] = {}
        roots: dict[int, list[Span]] = {}
        for span in spans:
            traces.setdefault(span.context.trace_id, set()).add(span.context.span_id)
            if span.parent is None:
                roots.setdefault(span.context.trace_id, []).append(span)
        problems: list[tuple[float, str, Span, str]] = []  # (time, sentence, span, short reason)
        lost = 0
        callers = _callers(world)
        crashed = crashes(world)
        children: dict[tuple[int, int], list[Span]] = {}  # (trace, parent span) -> the spans that name it
        for span in spans:
            if span.parent is not None:
                children.setdefault((span.context.trace_id, span.parent.span_id), []).append(span)
        for span in spans:
            if span.parent is None:
                if node_of(span) not in entry and service_of(span) not in entry:
                    why = _WHY_ROOT.get(span.kind.name, _WHY_ROOT_DEFAULT)
                    sentence = f"{span.kind.name} span {span.name!r} on {node_of(span)} starts a trace of its own: {why}"
                    problems.append((started(span), sentence, span, "root of a trace of its own"))
            elif span.parent.span_id not in traces[span.context.trace_id]:
                if _lost_in_crash(span, callers, crashed, children[(span.context.trace_id, span.parent.span_id)]):
                    lost += 1
                    continue
                how = "remote (it came in a traceparent header)" if span.parent.is_remote else "local"
                missing = f"parent span {span.parent.span_id:016x}"
                problems.append((started(span), f"{span.kind.name} span {span.name!r} on {node_of(span)} is an "
                                                 f"orphan: its {how} {missing} was never recorded (never ended, or "
                                                 f"ended after the run)", span, f"orphan: {missing} never recorded"))
        for trace_id, found in roots.items():
            if len(found) > 1:
                problems.append((started(found[1]), f"trace {trace_id:032x} has {len(found)} root spans", found[1],
                                 "a second root in its trace"))
        excused = f"; {plural(lost, 'span')} lost {'its' if lost == 1 else 'their'} parent to a node crash" if lost else ""
        if not problems:
            return Verdict.passing(
                self.name,
                f"{plural(len(traces), 'trace')}, {plural(len(spans), 'span')}, each trace one tree from its "
                f"client's request{excused}",
            )
        problems.sort(key=lambda p: (p[0], p[1]))
        evidence = tuple(f"{describe(span)}: {reason}" for _t, _sentence, span, reason in problems)
        summary = f"{plural(len(problems), 'span')} broke a trace apart: {problems[0][1]}"
        return Verdict.failing(self.name, summary, evidence)


def _callers(world: World) -> dict[tuple[str, int], list[tuple[str, str, str, float]]]:
    """Who sent each request a replica served, and when: ``(node, start ns) -> [(caller, method, path, sent)]``."""
    sent: dict[int, float] = {}
    out: dict[tuple[str, int], list[tuple[str, str, str, float]]] = {}
    for e in world.recorder.log:
        if e[1] == "net.send" and e[4] == "http":  # (t, "net.send", src, dst, kind, msg_id, delay)
            sent.setdefault(e[5], e[0])
        elif e[1] == "http.request":  # (t, "http.request", node, caller, msg_id, method, path)
            out.setdefault((e[2], EPOCH_NS + round(e[0] * 1e9)), []).append((e[3], e[5], e[6], sent.get(e[4], e[0])))
    return out


def _lost_in_crash(span: Span, callers: dict[tuple[str, int], list[tuple[str, str, str, float]]],
                   crashed: dict[str, list[float]], siblings: list[Span]) -> bool:
    """True if the missing parent of ``span`` may have been lost with a node that crashed
    (a crashed process exports none of its open spans, as with a real SDK). For a SERVER
    span, that is a sender that crashed at any time after it sent the request: while
    waiting for the answer, or even before the request arrived (it was still on the wire).
    For another span with a remote parent (a CONSUMER span, whose parent came in a message),
    it is the parent's node crashing while the parent was open: the parent's node is that of
    a recorded local child of the same parent (``siblings``: the spans naming the same parent;
    the parent was open when such a child started), else unknown, and then any crash will do.
    A replica that crashed and restarted is a new process under the same name: the span may
    run on the very node whose earlier incarnation lost its parent."""
    node = node_of(span)
    if not span.parent.is_remote:  # the parent was open on this node when it crashed
        return any(due(t, ended(span)) for t in crashed.get(node, ()))
    if span.kind.name == "SERVER":
        method, path = span.attributes.get("http.request.method"), span.attributes.get("url.path")
        senders = [(c, at) for c, m, p, at in callers.get((node, span.start_time), ()) if (m, p) == (method, path)]
        return any(due(t, at) for c, at in senders for t in crashed.get(c, ()))
    local = [s for s in siblings if not s.parent.is_remote]
    if local:
        return any(due(t, started(s)) for s in local for t in crashed.get(node_of(s), ()))
    return any(crashed.values())


def connected_traces(*, entry_points: tuple[str, ...] = ()) -> Invariant:
    """Every trace is one tree rooted at a client's request: no span starts a trace of its own
    in the middle of the system, and no span is an orphan.

    A span may be a root (have no parent) only on a workload client (each request
    a client sends starts a trace) or on a node or service named in
    ``entry_points`` (a scheduler that starts work by itself). Every other span's
    parent must be a recorded span of the same trace. A parent lost with a node
    that crashed (a crashed process exports none of its open spans) is excused and
    counted in the summary. Run the world with some ``settle`` time so that the
    requests in flight finish and their spans are recorded.

    Example::

        world = order_system.build_world(3, tracing=True)
        connected_traces()(order_system.run_to_completion(world))
        # FAIL connected_traces(): 16 spans broke a trace apart: CONSUMER span 'process order-placed'
        #   on notifications-1 starts a trace of its own: the message carried no traceparent header ...

    UNKNOWN when tracing was off or no span was recorded.

    Raises:
        InvalidParameterError: ``entry_points`` is not a tuple of names.
        UnknownNameError: (when run) an entry point is no service or node of the world.
    """
    return _ConnectedTraces(entry_points)
