"""The nemesis: a fault schedule drawn from a seed.

Jepsen calls the process that breaks a system on purpose its *nemesis*. Here it
is a function: give it a seed and what may break, and it draws a ``Schedule`` of
``count`` faults of the chosen ``kinds``, each starting somewhere in the first
``within`` seconds and lasting between ``duration[0]`` and ``duration[1]``
seconds. The same seed gives the same schedule in every process.

Example::

    from sandbox.faults import nemesis

    schedule = nemesis(7, world, kinds=("partition", "kill", "delay"), count=3, within=5.0)
    print(schedule)
    # 0. delay payments <-> all +212 ms, t=0.84..2.31
    # 1. ...
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._checks import seconds
from .._streams import check_seed, derive
from ..errors import InvalidParameterError
from .specs import (
    KINDS,
    Bandwidth,
    Bridge,
    ClockSkew,
    Clog,
    Delay,
    DiskLoss,
    Duplicate,
    Failure,
    Fault,
    Isolate,
    Kill,
    LockTimeouts,
    Loss,
    Partition,
    Pause,
    Rebalance,
    Redelivery,
    Reorder,
    Schedule,
    SlowStorage,
    SplitHalves,
    StorageTimeout,
)

if TYPE_CHECKING:
    from ..world import World

#: What a nemesis draws when not told: the faults every service meets in production.
DEFAULT_KINDS = ("delay", "loss", "duplicate", "partition", "kill", "pause")
#: Kinds that target databases, and kinds that target consumer groups.
STORAGE_KINDS = ("slow", "timeout", "lock-timeout")
BROKER_KINDS = ("rebalance", "redelivery")


class Targets:
    """What a nemesis may break: services (or nodes), databases and consumer groups, each sorted."""

    def __init__(self, nodes: Sequence[str], databases: Sequence[str] = (), groups: Sequence[str] = ()) -> None:
        self.nodes = tuple(nodes)
        self.databases = tuple(databases)
        self.groups = tuple(groups)

    @classmethod
    def of(cls, world_or_names: World | Iterable[str]) -> Targets:
        """The targets of a world (its services, databases and consumer groups), or a list of names."""
        if isinstance(world_or_names, Targets):
            return world_or_names
        services = getattr(world_or_names, "services", None)
        if services is not None and hasattr(world_or_names, "databases"):
            world = world_or_names
            groups: dict[str, None] = {}
            for service in world.services.values():  # type: ignore[union-attr]
                for instance in service.instances:
                    for sub in getattr(getattr(instance.app, "state", None), "chaos_dojo_consumers", None) or ():
                        groups[sub.group] = None
            return cls(sorted(services), sorted(world.databases), sorted(groups))  # type: ignore[union-attr]
        if isinstance(world_or_names, str):
            world_or_names = [world_or_names]
        names = list(world_or_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise InvalidParameterError(
                f"targets={world_or_names!r}: give the world, or a non-empty list of service names"
            )
        return cls(names)

    def available(self, kind: str) -> bool:
        if kind in STORAGE_KINDS:
            return bool(self.databases)
        if kind in BROKER_KINDS:
            return bool(self.groups)
        if kind == "bridge":
            return len(self.nodes) >= 3
        if kind in ("halves",):
            return len(self.nodes) >= 2
        return True


Draw = Callable[[Any, Targets, float, float], Fault]


def _ms(x: float) -> float:
    return round(x, 3)


def _one(rng: Any, names: Sequence[str]) -> str:
    return names[rng.randrange(len(names))]


def _link_args(rng: Any, t: Targets) -> dict[str, Any]:
    target = _one(rng, t.nodes)
    others = [n for n in t.nodes if n != target]
    peer = _one(rng, others) if others and rng.random() < 0.7 else None
    return {"target": target, "peer": peer, "direction": rng.choice(("both", "both", "to", "from"))}


def draw_fault(kind: str, rng: Any, targets: Targets, start: float, duration: float) -> Fault:
    """One fault of ``kind`` with parameters drawn from ``rng`` (a ``random.Random``)."""
    when = {"start": _ms(start), "duration": _ms(duration)}
    if kind == "delay":
        return Delay(**_link_args(rng, targets), latency=_ms(rng.uniform(0.05, 0.5)), jitter=_ms(rng.uniform(0, 0.05)), **when)
    if kind == "loss":
        return Loss(**_link_args(rng, targets), probability=round(rng.uniform(0.1, 0.7), 2), **when)
    if kind == "duplicate":
        return Duplicate(**_link_args(rng, targets), probability=round(rng.uniform(0.1, 0.6), 2), **when)
    if kind == "reorder":
        return Reorder(**_link_args(rng, targets), probability=round(rng.uniform(0.2, 0.7), 2), gap=_ms(rng.uniform(0.01, 0.05)), **when)
    if kind == "bandwidth":
        return Bandwidth(**_link_args(rng, targets), rate=float(rng.choice((2_000, 5_000, 10_000, 20_000))), **when)
    if kind == "clog":
        return Clog(**_link_args(rng, targets), **when)
    if kind == "partition":
        args = _link_args(rng, targets)
        return Partition(args["target"], args["peer"], direction=args["direction"], **when)
    if kind == "isolate":
        return Isolate(_one(rng, targets.nodes), **when)
    if kind == "halves":
        return SplitHalves(list(targets.nodes), **when)
    if kind == "bridge":
        return Bridge(list(targets.nodes), **when)
    if kind == "kill":
        return Kill(_one(rng, targets.nodes), start=_ms(start), restart_after=_ms(min(duration, rng.uniform(0.1, 1.0))))
    if kind == "disk-loss":  # a replica's local disk: never a database's (a node of its own)
        replicas = [n for n in targets.nodes if n not in targets.databases] or list(targets.nodes)
        return DiskLoss(_one(rng, replicas), start=_ms(start), restart_after=_ms(min(duration, rng.uniform(0.1, 1.0))))
    if kind == "failure":
        return Failure(_one(rng, targets.nodes), **when)
    if kind == "pause":
        return Pause(_one(rng, targets.nodes), **when)
    if kind == "clock-skew":
        offset = _ms(rng.uniform(-5, 5)) or 0.001  # never a skew of nothing
        return ClockSkew(_one(rng, targets.nodes), offset=offset, drift=round(rng.uniform(-0.01, 0.01), 4), **when)
    if kind == "slow":
        return SlowStorage(_one(rng, targets.databases), latency=_ms(rng.uniform(0.05, 0.5)), **when)
    if kind == "timeout":
        return StorageTimeout(_one(rng, targets.databases), probability=round(rng.uniform(0.05, 0.3), 2), **when)
    if kind == "lock-timeout":
        return LockTimeouts(_one(rng, targets.databases), lock_timeout=_ms(rng.uniform(0.005, 0.05)), **when)
    if kind == "rebalance":
        return Rebalance(_one(rng, targets.groups), every=_ms(rng.uniform(0.2, 1.0)), **when)
    if kind == "redelivery":
        return Redelivery(_one(rng, targets.groups), probability=round(rng.uniform(0.2, 0.6), 2), **when)
    raise InvalidParameterError(f"kind={kind!r}: fault kinds are {', '.join(sorted(KINDS))}")


def check_kinds(kinds: Iterable[str], targets: Targets) -> tuple[str, ...]:
    """The kinds, checked: known, and with something to act on among the targets."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    if not kinds:
        raise InvalidParameterError(f"kinds={kinds!r}: name at least one fault kind, e.g. ('partition', 'kill')")
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidParameterError(f"kind {kind!r} is not a fault kind; kinds are {', '.join(sorted(KINDS))}")
        if not targets.available(kind):
            need = "databases" if kind in STORAGE_KINDS else "consumer groups" if kind in BROKER_KINDS else "more nodes"
            raise InvalidParameterError(f"kind {kind!r} needs {need} among the targets; targets: {targets.nodes}")
    return kinds


def check_durations(duration: Any) -> tuple[float, float]:
    try:
        low, high = duration
    except (TypeError, ValueError):
        raise InvalidParameterError(f"duration={duration!r}: give (shortest, longest) in seconds, e.g. (0.2, 2.0)") from None
    low, high = seconds("duration[0]", low, positive=True), seconds("duration[1]", high, positive=True)
    if low > high:
        raise InvalidParameterError(f"duration={duration!r}: the shortest is longer than the longest")
    if low < 0.001:  # durations are drawn in whole milliseconds: a shorter one would round to 0
        raise InvalidParameterError(f"duration={duration!r}: faults last whole milliseconds; make the shortest >= 0.001")
    return low, high


def nemesis(
    seed: int,
    targets: World | Iterable[str],
    *,
    kinds: Iterable[str] = DEFAULT_KINDS,
    count: int = 4,
    within: float = 10.0,
    duration: tuple[float, float] = (0.2, 2.0),
) -> Schedule:
    """A schedule of ``count`` faults of ``kinds`` drawn from ``seed`` (see the module docstring).

    ``targets`` is the world (its services, databases and consumer groups) or a list
    of service names. Faults start in ``[0, within)`` and last ``duration``
    (a ``(shortest, longest)`` range); the quiet phase starts when the last ends.

    Raises:
        InvalidParameterError: an unknown kind, a kind with nothing to act on, a bad count or range.
    """
    seed = check_seed(seed)
    t = Targets.of(targets)
    kinds = check_kinds(kinds, t)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidParameterError(f"count={count!r}: use a whole number of faults >= 0")
    within = seconds("within", within, positive=True)
    low, high = check_durations(duration)
    rng = random.Random(derive(seed, "nemesis"))
    faults = []
    for _ in range(count):
        kind = kinds[rng.randrange(len(kinds))]
        start = rng.uniform(0.0, within)
        faults.append(draw_fault(kind, rng, t, start, rng.uniform(low, high)))
    faults.sort(key=lambda f: f.start)
    return Schedule(faults)
