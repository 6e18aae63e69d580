"""The state of a finished run at one moment of virtual time: what the stepper shows."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from .._checks import seconds
from ._run import FaultWindow, NodeName, WireMessage, read_run

if TYPE_CHECKING:
    from ..world import World

RECENT = 8
_EPOCH_SUFFIX = re.compile(r"#\d+$")


@dataclass(frozen=True)
class NodeState:
    """One node at one moment: up, down or paused, what it is working on, what is on the wire to and from it."""

    name: NodeName
    status: str
    work: tuple[str, ...] = ()
    sending: tuple[WireMessage, ...] = ()
    receiving: tuple[WireMessage, ...] = ()


@dataclass(frozen=True)
class RunState:
    """A finished run seen at virtual time ``time``: everything logged up to and including ``time`` has happened.

    ``nodes`` maps each node to its ``NodeState`` (status "up", "down" or "paused";
    ``work``: the HTTP requests it is serving, or a client's open operation);
    ``in_flight`` holds the messages sent and not yet delivered or dropped;
    ``faults`` the fault windows in force; ``recent`` the last few log entries.

    Example::

        state = sandbox.viz.state_at(world, 1.25)
        state.nodes["orders-0"].status      # 'down'
        [str(m) for m in state.in_flight]   # ['customer-0 -> orders-1  POST /orders  (#88, sent 1.2490)']
    """

    time: float
    nodes: Mapping[NodeName, NodeState]
    in_flight: tuple[WireMessage, ...]
    faults: tuple[FaultWindow, ...]
    recent: tuple[tuple, ...]

    @property
    def down(self) -> tuple[NodeName, ...]:
        """Names of the nodes that are down."""
        return tuple(name for name, node in self.nodes.items() if node.status == "down")

    @property
    def paused(self) -> tuple[NodeName, ...]:
        """Names of the nodes that are paused."""
        return tuple(name for name, node in self.nodes.items() if node.status == "paused")

    def __str__(self) -> str:
        lines = [f"t = {self.time:.4f} s"]
        for node in self.nodes.values():
            extra = "; ".join(node.work)
            lines.append(f"  {node.name:<18} {node.status:<6} {extra}")
        lines += [f"  in flight: {m}" for m in self.in_flight]
        lines += [f"  fault: {w}" for w in self.faults]
        return "\n".join(lines)


def state_at(world: World, t: float) -> RunState:
    """The state of ``world``'s run at virtual time ``t``, read from its log (a pure function of the log).

    Example::

        world.run(until=5)
        state = sandbox.viz.state_at(world, 2.0)
        state.down                        # ('payments-0',)
        len(state.in_flight)              # 3

    Raises:
        InvalidParameterError: ``t`` is not a finite number of seconds >= 0.
    """
    t = seconds("t", t)
    run = read_run(world)
    in_flight = tuple(
        m for m in run.messages
        if m.left and m.sent <= t and (m.ended is None or m.ended > t)
    )
    work: dict[str, list[str]] = {}
    crashed_at = {
        node: max((when for when, what in events if what == "node.crash" and when <= t), default=-1.0)
        for node, events in run.life.items()
    }
    answered: dict[tuple[str, int], int] = {}
    for when, node, msg_id in run.http_responses:
        if when <= t:
            answered[(node, msg_id)] = answered.get((node, msg_id), 0) + 1
    for when, node, caller, msg_id, method, path in run.http_requests:
        if when > t:
            break
        if answered.get((node, msg_id), 0) > 0:
            answered[(node, msg_id)] -= 1
            continue
        if when >= crashed_at.get(node, -1.0):
            work.setdefault(node, []).append(f"serving {method} {path} for {caller}")
    for invoke, completion in world.history.pairs():
        if invoke.time <= t and (completion is None or completion.time > t):
            client = _EPOCH_SUFFIX.sub("", invoke.process)
            work.setdefault(client, []).append(f"waiting: {invoke.f} {invoke.value!r}"[:90])
    seen = {m.src for m in run.messages} | {m.dst for m in run.messages}
    names = list(run.order) + sorted(seen - set(run.order))
    nodes = {
        name: NodeState(
            name,
            run.status(name, t),
            tuple(work.get(name, ())),
            tuple(m for m in in_flight if m.src == name),
            tuple(m for m in in_flight if m.dst == name),
        )
        for name in dict.fromkeys(names)
    }
    end = bisect_right(run.times, t)
    return RunState(
        time=t,
        nodes=MappingProxyType(nodes),
        in_flight=in_flight,
        faults=tuple(w for w in run.faults if w.active_at(t)),
        recent=tuple(world.recorder.log[max(0, end - RECENT) : end]),
    )
