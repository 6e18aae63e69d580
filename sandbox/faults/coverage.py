"""Fault coverage: did the faults fire, and did the code take its recovery paths?

A green run under a schedule whose partition started after the last request, or
whose retry path never ran, proves little. ``coverage(world)`` reports, for a run:

* each fault of the schedule: when it was in force, what it hit, how often it
  fired (messages dropped or delayed, nodes killed, operations slowed...);
* the recovery paths the system took, read from the event log: requests that
  timed out, messages delivered again by the broker, nodes restarted, lock
  timeouts, transactions aborted, consumer handlers that failed, duplicate
  deliveries, and the domain events service code reported (saga compensations,
  breaker transitions...);
* every ``sandbox.sometimes`` / ``sandbox.reachable`` assertion, and whether it held.

Example::

    world.inject(schedule)
    world.run(settle=2.0)
    print(world.chaos.coverage())
    # Faults
    #   #0 loss orders-0 <-> payments-0 30%  t=1.000..3.000  fired 14x
    # Recovery paths
    #   requests timed out          9
    #   ...
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..events import Assertion

if TYPE_CHECKING:
    from ..world import World
    from .injector import FaultWindow

#: Log entry kinds that show a recovery path, and how the report names them.
RECOVERY_KINDS: dict[str, str] = {
    "rpc.timeout": "requests timed out",
    "net.duplicate": "messages duplicated by the network",
    "net.late": "late replies ignored",
    "node.restart": "nodes restarted",
    "db.lock_timeout": "lock waits timed out",
    "db.abort": "transactions aborted",
    "db.stalled": "database answers lost",
    "broker.rebalance": "consumer group rebalances",
    "broker.commit_lost": "consumer commits lost",
    "consumer.failed": "consumer handler failures",
}


@dataclass(frozen=True)
class Coverage:
    """What one run exercised: fault windows, recovery paths, and "sometimes" assertions."""

    faults: tuple[FaultWindow, ...]
    recovery: tuple[tuple[str, int], ...]
    assertions: tuple[Assertion, ...]

    @property
    def fired(self) -> tuple[FaultWindow, ...]:
        """The faults that acted at least once."""
        return tuple(w for w in self.faults if w.fired)

    @property
    def idle(self) -> tuple[FaultWindow, ...]:
        """The faults that were in force but never acted (a wasted fault, or one that missed)."""
        return tuple(w for w in self.faults if not w.fired)

    @property
    def unexercised(self) -> tuple[Assertion, ...]:
        """The ``sometimes`` / ``reachable`` assertions that never held: paths this run did not test."""
        return tuple(a for a in self.assertions if not a.held)

    def count(self, path: str) -> int:
        """How often the recovery path ``path`` (a name shown in the report) was taken."""
        return dict(self.recovery).get(path, 0)

    def __str__(self) -> str:
        lines = ["Faults"]
        if not self.faults:
            lines.append("  (none started)")
        for w in self.faults:
            end = "end" if w.end is None else f"{w.end:.3f}"
            flag = "" if w.fired else "   <- never fired"
            lines.append(f"  #{w.index} {w.label}  t={w.start:.3f}..{end}  fired {w.fired}x{flag}")
        lines.append("Recovery paths")
        if not self.recovery:
            lines.append("  (none taken)")
        width = max((len(name) for name, _ in self.recovery), default=0)
        for name, n in self.recovery:
            lines.append(f"  {name:<{width}}  {n}")
        if self.assertions:
            lines.append("Sometimes assertions")
            lines += [f"  {a}" for a in self.assertions]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        return f"<pre>{escape(str(self))}</pre>"


def coverage(world: World) -> Coverage:
    """The coverage report of a run (see the module docstring); works with or without a schedule."""
    counts: Counter[str] = Counter()
    delivered: set[tuple] = set()
    redelivered = 0
    for entry in world.recorder.log:
        kind = entry[1]
        if kind in RECOVERY_KINDS:
            counts[RECOVERY_KINDS[kind]] += 1
        elif kind == "broker.deliver":
            key = (entry[2], entry[4], entry[5], entry[6])  # group, topic, partition, offset
            if key in delivered:
                redelivered += 1
            else:
                delivered.add(key)
    if redelivered:
        counts["messages delivered again by the broker"] += redelivered
    for event in world.events:
        action = event.get("action")
        name = f"event {event.kind}" + (f" ({action})" if isinstance(action, str) else "")
        counts[name] += 1
    chaos = getattr(world, "chaos", None)
    windows = tuple(chaos.windows) if chaos is not None else ()
    assertions = tuple(world.assertions[m] for m in sorted(world.assertions))
    return Coverage(windows, tuple(sorted(counts.items())), assertions)
