"""Invariants of resilience patterns: sagas, circuit breakers, retry budgets.

Sagas and breakers are checked from the domain events service code reports with
``sandbox.event`` (the conventions are in ``sandbox.checkers.invariants``' module
docstring); retries from the spans of a traced run (``World(seed, tracing=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._vtime import due
from ..errors import InvalidParameterError, UnknownServiceError
from ..events import Event
from ._common import (
    Invariant,
    InvariantBase,
    amount,
    at,
    names,
    optional_text,
    plural,
    quiet,
    text,
    whole,
)
from .traces import node_of, service_of, short_trace, started
from .verdict import Verdict

if TYPE_CHECKING:
    from ..world import World

# --- sagas -----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _Saga(InvariantBase):
    factory: ClassVar[str] = "saga_completed_or_compensated"
    steps: tuple[str, ...]
    kind: str = "saga"
    no_undo: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        steps = names("steps", self.steps, "('reserve', 'charge', 'ship')")
        if not steps or len(set(steps)) != len(steps):
            raise InvalidParameterError(f"steps={self.steps!r}: give the saga's steps in order, each once")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "no_undo", names("no_undo", self.no_undo, "('ship',)"))
        text("kind", self.kind, "saga")
        for step in self.no_undo:
            if step not in steps:
                raise InvalidParameterError(f"no_undo names {step!r}, which is not one of steps={steps!r}")

    def _judge(self, events: list[Event]) -> tuple[str | None, str, str]:
        """(safety problem or None, end state: completed / compensated / half, what is left to do)."""
        done: list[str] = []
        undone: list[str] = []
        began: float | None = None
        completed_at: float | None = None
        for e in events:
            missing = [f for f in ("saga", "step", "action") if f not in e.fields]
            if missing:
                return f"an event lacks {', '.join(missing)}: report saga=, step= and action=", "half", ""
            step, action = e["step"], e["action"]
            if step not in self.steps:
                return f"step {step!r} at {at(e.time)} is not one of steps={self.steps!r}", "half", ""
            if action == "do":
                if began is not None:
                    return f"did {step!r} at {at(e.time)}, after its compensation began at {at(began)}", "half", ""
                if step in done:
                    return f"did {step!r} twice", "half", ""
                expected = self.steps[len(done)]
                if step != expected:
                    return f"did {step!r} before {expected!r}: the steps run in the order {self.steps!r}", "half", ""
                done.append(step)
                if len(done) == len(self.steps):
                    completed_at = e.time
            elif action == "undo":
                if completed_at is not None:
                    return (f"undid {step!r} at {at(e.time)}, after the saga completed ({self.steps[-1]!r} done at "
                            f"{at(completed_at)}): a completed saga is never compensated"), "half", ""
                began = e.time if began is None else began
                todo = [s for s in reversed(done) if s not in self.no_undo and s not in undone]
                if step not in done:
                    return f"undid {step!r} at {at(e.time)}, which it never did", "half", ""
                if step in undone:
                    return f"undid {step!r} twice", "half", ""
                if step in self.no_undo:
                    return f"undid {step!r}, which no_undo says has no compensation", "half", ""
                if step != todo[0]:
                    return f"undid {step!r} before {todo[0]!r}: compensations run in reverse order", "half", ""
                undone.append(step)
            else:
                return f"action {action!r} at {at(e.time)}: report 'do' or 'undo'", "half", ""
        if began is None and len(done) == len(self.steps):
            return None, "completed", ""
        todo = [s for s in reversed(done) if s not in self.no_undo and s not in undone]
        if began is not None and not todo:
            return None, "compensated", ""
        did = ", ".join(done) or "nothing"
        if began is None:
            rest = ", ".join(self.steps[len(done):])
            return None, "half", f"did {did}, then stopped: it should have done {rest}, or undone {', '.join(todo)}"
        return None, "half", f"did {did}, undid {', '.join(undone)}, then stopped: {', '.join(todo)} still to undo"

    def __call__(self, world: World) -> Verdict:
        sagas: dict[Any, list[Event]] = {}
        for e in world.events:
            if e.kind == self.kind:
                sagas.setdefault(e.get("saga"), []).append(e)
        if not sagas:
            return Verdict.unknown(self.name, f"no saga ran: no sandbox.event({self.kind!r}, ...) was recorded")
        broken, half, ends = [], [], {"completed": 0, "compensated": 0}
        for saga, events in sagas.items():
            problem, end, left = self._judge(events)
            if problem is not None:
                broken.append((f"saga {saga} {problem}", events))
            elif end == "half":
                half.append((f"saga {saga} {left}", events))
            else:
                ends[end] += 1
        tally = f"{plural(len(sagas), 'saga')}: {ends['completed']} completed, {ends['compensated']} compensated"
        if half and not broken and not quiet(world):
            return Verdict.unknown(
                self.name, f"the run stopped at {at(world.now)} before its quiet phase (clients still working, or "
                           f"faults still in force), so a saga may yet finish: {half[0][0]}",
                _evidence(half),
            )
        if not broken and not half:
            return Verdict.passing(self.name, tally)
        wrong = broken + half
        summary = wrong[0][0] + (f" (and {plural(len(wrong) - 1, 'more saga')})" if len(wrong) > 1 else "")
        return Verdict.failing(self.name, summary, _evidence(wrong))


def _evidence(items: list[tuple[str, list[Event]]]) -> tuple[Any, ...]:
    out: list[Any] = []
    for line, events in sorted(items, key=lambda item: (item[1][0].time, item[0])):
        out.append(line)
        out += events
    return tuple(out)


def saga_completed_or_compensated(
    steps: Sequence[str], *, kind: str = "saga", no_undo: Sequence[str] = ()
) -> Invariant:
    """Every saga either did all its steps in order, or undid every step it did, in reverse order.

    Sagas report each step with ``sandbox.event(kind, saga=id, step=name,
    action="do" | "undo")`` (see the module docstring of ``sandbox.checkers.invariants``).
    Safety: steps are done in the order of ``steps``, each at most once; nothing is
    undone that was not done, or before the steps done after it; nothing is done
    once compensation began. Liveness, over the whole run: a saga left half-done
    at the end (a reservation never released because the orchestrator crashed
    between two steps) FAILS; if the run stopped before its quiet phase (clients
    still working, injected faults not yet healed), it is UNKNOWN instead. Steps
    in ``no_undo`` (a read, a final email) need no compensation.

    Example::

        saga_completed_or_compensated(("reserve", "charge", "ship"))(world)
        # FAIL saga_completed_or_compensated(steps=('reserve', 'charge', 'ship')): saga ord-4 did reserve,
        #   charge, then stopped: it should have done ship, or undone charge, reserve

    UNKNOWN if no saga event was recorded at all.

    Raises:
        InvalidParameterError: ``steps`` is empty, repeats a step or is a lone str; ``no_undo``
            names a step not in ``steps``.
    """
    return _Saga(steps, kind, no_undo)  # type: ignore[arg-type]


# --- circuit breakers ------------------------------------------------------------------

STATES = ("closed", "open", "half_open")
LEGAL = {("closed", "open"), ("open", "half_open"), ("half_open", "closed"), ("half_open", "open")}


def _state(value: Any) -> Any:
    return value.replace("-", "_") if isinstance(value, str) else value


@dataclass(frozen=True, repr=False)
class _Breaker(InvariantBase):
    factory: ClassVar[str] = "breaker_transitions_legal"
    kind: str = "breaker"
    breaker: str | None = None
    min_open: float | None = None
    callee: str | None = None

    def __post_init__(self) -> None:
        text("kind", self.kind, "breaker")
        optional_text("breaker", self.breaker, "payments")
        amount("min_open", self.min_open, optional=True)
        optional_text("callee", self.callee, "payments")

    def __call__(self, world: World) -> Verdict:
        events = [
            e for e in world.events if e.kind == self.kind and (self.breaker is None or e.get("name") == self.breaker)
        ]
        if not events:
            which = f" named {self.breaker!r}" if self.breaker else ""
            return Verdict.unknown(self.name, f"no breaker{which} changed state: no sandbox.event({self.kind!r}, ...) "
                                              f"was recorded, so its transitions went untested")
        restarts = [(e[0], e[2]) for e in world.recorder.log if e[1] == "node.restart"]
        state: dict[tuple[str, Any], tuple[str, float]] = {}  # (node, name) -> (state, since)
        opened: list[tuple[str, Any, float, float]] = []  # (node, name, from, to) while open
        problems: list[tuple[float, str, Event]] = []
        for e in events:
            who = (e.node, e.get("name"))
            current, since = state.get(who, ("closed", 0.0))
            restart = max((t for t, node in restarts if node == e.node and since < t <= e.time), default=None)
            if restart is not None:  # a restarted replica's breaker starts closed again
                if current == "open":
                    opened.append((e.node, who[1], since, restart))
                current, since = "closed", restart
            before, after = _state(e.get("before")), _state(e.get("after"))
            label = f"breaker {who[1]!r} on {e.node}"
            if who[1] is None:
                problems.append((e.time, f"a {self.kind} event has no name=: name each breaker", e))
            elif before not in STATES or after not in STATES:
                problems.append((e.time, f"{label}: states are {', '.join(STATES)}, not {before!r} -> {after!r}", e))
            elif before != current:
                problems.append((e.time, f"{label} said it went from {before} but it was {current} "
                                         f"(since {at(since)})", e))
            elif (before, after) not in LEGAL:
                problems.append((e.time, f"{label} went {before} -> {after}: the legal moves are closed -> open, "
                                         f"open -> half_open, half_open -> closed or open", e))
            elif before == "open" and self.min_open is not None and not due(e.time, since + self.min_open):
                problems.append((e.time, f"{label} tried again {e.time - since:.4f}s after opening, before "
                                         f"min_open={self.min_open:g}s", e))
            new = after if after in STATES else current
            if current == "open" and new != "open":
                opened.append((e.node, who[1], since, e.time))
            state[who] = (new, e.time if new != current else since)
        for (node, name), (current, since) in state.items():
            if current == "open":
                later = [t for t, n in restarts if n == node and t > since]
                opened.append((node, name, since, min(later) if later else world.now))
        if self.callee is not None:
            problems += self._sent_while_open(world, opened)
        if not problems:
            breakers = len(state)
            return Verdict.passing(self.name, f"{plural(len(events), 'transition')} of {plural(breakers, 'breaker')}, "
                                              f"all legal")
        problems.sort(key=lambda p: (p[0], p[1]))
        summary = problems[0][1] + (f" (and {plural(len(problems) - 1, 'more problem')})" if len(problems) > 1 else "")
        return Verdict.failing(self.name, summary, tuple(x for _t, line, e in problems for x in (line, e)))

    def _sent_while_open(self, world: World, opened: list[tuple[str, Any, float, float]]) -> list[tuple[float, str, Any]]:
        if self.callee not in world.services:
            raise UnknownServiceError(f"callee={self.callee!r} is no service of this world; services: "
                                      f"{sorted(world.services)}")
        callee_nodes = {i.name for i in world.services[self.callee].instances}
        sent: dict[int, tuple[float, str, str]] = {}
        paths: dict[int, str] = {}
        for e in world.recorder.log:
            # (t, "net.send" | "net.drop", src, dst, kind, msg_id, ...): the first is when it was sent
            if e[1] in ("net.send", "net.drop") and e[4] == "http" and e[3] in callee_nodes and e[5] not in sent:
                sent[e[5]] = (e[0], e[2], e[3])
            elif e[1] == "http.request":  # (t, "http.request", node, caller, msg_id, method, path)
                paths.setdefault(e[4], f"{e[5]} {e[6]}")
        out = []
        for msg_id, (t, src, dst) in sorted(sent.items()):
            for node, name, begin, end in opened:
                if node == src and begin < t < end:
                    what = paths.get(msg_id, "a request")
                    out.append((t, f"{src} sent {what} to {dst} at {at(t)} while breaker {name!r} was open "
                                   f"(since {at(begin)})", f"request #{msg_id}"))
        return out


def breaker_transitions_legal(
    *, kind: str = "breaker", breaker: str | None = None, min_open: float | None = None, callee: str | None = None
) -> Invariant:
    """Every circuit breaker moved only along its legal transitions, and stayed shut while open.

    Breakers report each change with ``sandbox.event(kind, name=..., before=...,
    after=...)``. A breaker (one per replica and name; it starts ``closed``, and
    again after its replica restarts) may only go closed -> open, open ->
    half_open, half_open -> closed, half_open -> open, and each event's ``before``
    must be the state the previous one left it in. With ``min_open`` it must stay
    open at least that many seconds before trying again; with ``callee`` (a
    service), its replica must send no request to the callee while it is open:
    that is the whole point of opening. ``breaker`` checks only the breaker of
    that name (give it with ``callee`` when a replica has several breakers).

    Example::

        breaker_transitions_legal(breaker="payments", min_open=1.0, callee="payments")(world)
        # FAIL ...: breaker 'payments' on orders-0 went closed -> half_open: the legal moves are ...

    UNKNOWN if no breaker event was recorded at all.

    Raises:
        InvalidParameterError: an empty kind or name, a negative ``min_open``.
        UnknownServiceError: (when run) ``callee`` is no service of the world.
    """
    return _Breaker(kind, breaker, min_open, callee)


# --- retries ---------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class _Retries(InvariantBase):
    factory: ClassVar[str] = "retries_within_budget"
    caller: str
    callee: str
    max_attempts: int = 3
    ratio: float | None = None

    def __post_init__(self) -> None:
        text("caller", self.caller, "orders")
        text("callee", self.callee, "payments")
        whole("max_attempts", self.max_attempts, 1)
        amount("ratio", self.ratio, optional=True)

    def __call__(self, world: World) -> Verdict:
        for role, name in (("caller", self.caller), ("callee", self.callee)):
            if name not in world.services and not (role == "caller" and name in world.clients):
                raise UnknownServiceError(f"{role}={name!r} is no service of this world; services: "
                                          f"{sorted(world.services)}")
        if world.tracing is None:
            return Verdict.unknown(self.name, "tracing was off: attempts of one call are told apart by their trace; "
                                              "build the world with World(seed, tracing=True)")
        hosts = {self.callee} | {i.name for i in world.services[self.callee].instances}
        calls: dict[tuple[int, str, str], list[Any]] = {}
        for span in world.spans():
            address = span.attributes.get("server.address")
            if span.kind.name == "CLIENT" and service_of(span) == self.caller and address in hosts:
                method, url = str(span.attributes.get("http.request.method")), str(span.attributes.get("url.full"))
                calls.setdefault((span.context.trace_id, method, url), []).append(span)
        if not calls:
            return Verdict.unknown(self.name, f"{self.caller} sent no request to {self.callee} in this run")
        retries = sum(len(a) - 1 for a in calls.values())
        worst = max(len(a) for a in calls.values())
        over = sorted((a for a in calls.values() if len(a) > self.max_attempts), key=lambda a: started(a[0]))
        budget = None if self.ratio is None else self.ratio * len(calls)
        evidence = [line for a in over for line in _attempts(a)]
        if over:
            (trace_id, method, url) = next(k for k, v in calls.items() if v is over[0])
            summary = (f"{self.caller} tried {method} {url} {len(over[0])} times in one call (trace "
                       f"{short_trace(trace_id)}), more than max_attempts={self.max_attempts}")
            if len(over) > 1:
                summary += f" (and {plural(len(over) - 1, 'more call')})"
            return Verdict.failing(self.name, summary, tuple(evidence))
        if budget is not None and retries > budget + 1e-9:
            many = sorted((a for a in calls.values() if len(a) > 1), key=lambda a: started(a[0]))
            return Verdict.failing(
                self.name,
                f"{self.caller} retried {plural(retries, 'time')} over {plural(len(calls), 'call')} to {self.callee}: "
                f"above the budget of {self.ratio:g} retries per call ({budget:g} allowed)",
                tuple(line for a in many for line in _attempts(a)),
            )
        within = f", within the budget of {budget:g}" if budget is not None else ""
        return Verdict.passing(self.name, f"{plural(len(calls), 'call')} from {self.caller} to {self.callee}, at most "
                                          f"{plural(worst, 'attempt')} each; {plural(retries, 'retry', 'retries')}{within}")


def _attempts(spans: list[Any]) -> list[str]:
    out = []
    for i, span in enumerate(sorted(spans, key=started), 1):
        status = span.attributes.get("http.response.status_code")
        outcome = str(status) if status is not None else (span.status.description or "no answer").split(":")[0]
        out.append(f"{at(started(span))} {node_of(span)} attempt {i}: {span.attributes.get('http.request.method')} "
                   f"{span.attributes.get('url.full')} -> {outcome} (trace {short_trace(span.context.trace_id)})")
    return out


def retries_within_budget(caller: str, callee: str, *, max_attempts: int = 3, ratio: float | None = None) -> Invariant:
    """No call from ``caller`` to ``callee`` was tried more than ``max_attempts`` times, and
    (with ``ratio``) all retries together stayed within ``ratio`` retries per call.

    Retries turn a slow dependency into an overloaded one: three attempts per call
    at each of three layers is 27 requests at the bottom. A retry budget (Finagle's
    RetryBudget, gRPC's retry throttling) caps retries at a share of calls; here
    it is checked over the whole run: total retries <= ``ratio`` x logical calls.

    A logical call is found from the spans of a traced run: the CLIENT spans of
    ``caller`` to ``callee`` inside one trace with the same method and URL are
    attempts of one call (a request a replica serves is one trace, so its retries
    share it). Without tracing the sandbox cannot tell one call's retries from
    concurrent calls on the same replica, so the verdict is UNKNOWN. ``caller``
    may also be a workload client (a client's own retries start new traces, so
    they count as separate calls).

    Example::

        world = order_system.run_to_completion(order_system.build_world(2, tracing=True))
        retries_within_budget("orders", "payments", max_attempts=1)(world)
        # FAIL ...: orders tried POST http://payments/charges 2 times in one call (trace c1f1484e), more
        #   than max_attempts=1
        #   - t=0.6752 orders-0 attempt 1: POST http://payments/charges -> RequestTimeout (trace c1f1484e)
        #   - t=0.9252 orders-0 attempt 2: POST http://payments/charges -> 201 (trace c1f1484e)

    Raises:
        InvalidParameterError: an empty name, ``max_attempts`` < 1, a negative ``ratio``.
        UnknownServiceError: (when run) ``caller`` or ``callee`` is no service of the world.
    """
    return _Retries(caller, callee, max_attempts, ratio)
