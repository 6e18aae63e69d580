"""Putting a schedule into a world: each fault starts, acts, and heals, in virtual time.

``world.inject(schedule)`` checks every name against the world (before anything
runs), then arranges for each fault to start at its ``start`` and end at its end
or at the schedule's ``fault_phase_end``, whichever comes first. What it does is
logged (``fault.start`` / ``fault.end``), counted (``fired``: messages dropped or
delayed, nodes killed, operations slowed...) and shown by ``world.chaos.windows``
and ``world.chaos.coverage()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._vtime import call_at
from ..errors import InvalidParameterError, SandboxError
from ..network import LinkRule, LinkState
from ..storage import IORule
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
    LinkFault,
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
    from ..nodes import Node
    from ..world import World


@dataclass(frozen=True)
class FaultWindow:
    """When one fault of a schedule was in force, what it hit, and how often it acted.

    ``end`` is None if the run ended before it healed; ``nodes`` are the nodes (or
    databases, or consumer groups) it chose, ``peers`` the other side of a link
    fault; ``fired`` counts what it did (messages dropped or delayed, nodes killed,
    operations slowed, commits lost).
    """

    index: int
    fault: Fault
    label: str
    family: str
    start: float
    end: float | None
    nodes: tuple[str, ...]
    peers: tuple[str, ...]
    fired: int

    def __str__(self) -> str:
        end = "end of run" if self.end is None else f"{self.end:.3f}"
        return f"#{self.index} {self.label}: t={self.start:.3f}..{end}, fired {self.fired}x"


class _Counter:
    __slots__ = ("fired", "groups", "probability")

    def __init__(self) -> None:
        self.fired = 0
        self.groups: frozenset[str] = frozenset()
        self.probability = 0.0

    def hit(self) -> None:
        self.fired += 1


class _Active:
    """One fault of the schedule, as it runs: what it chose, how to undo it, what it did."""

    def __init__(self, index: int, fault: Fault) -> None:
        self.index = index
        self.fault = fault
        self.label = fault.action
        self.nodes: tuple[str, ...] = ()
        self.peers: tuple[str, ...] = ()
        self.started: float | None = None
        self.ended: float | None = None
        self.undo: list[Callable[[], None]] = []
        self.counters: list[Any] = []
        self.fired_direct = 0

    @property
    def fired(self) -> int:
        return self.fired_direct + sum(c.fired for c in self.counters)


class _Skews:
    """The clock skews in force on one node, and the wall error and drift its clock had when the first began."""

    __slots__ = ("active", "error", "drift")

    def __init__(self, error: float, drift: float) -> None:
        self.active: dict[int, ClockSkew] = {}  # by fault index, in the order they began
        self.error = error
        self.drift = drift


class Chaos:
    """The faults of one schedule, in one world (``world.chaos``)."""

    def __init__(self, world: World, schedule: Schedule) -> None:
        if not isinstance(schedule, Schedule):
            raise InvalidParameterError(
                f"schedule={schedule!r}: inject a sandbox.faults.Schedule (a list of faults), "
                f"e.g. world.inject(Schedule([Loss('payments', start=1, duration=2)]))"
            )
        self.world = world
        self.schedule = schedule
        self.heal_at = schedule.fault_phase_end
        self.healed = False
        # Faults on one node compose: which faults hold each node ("down" / "paused", node) ...
        self._holds: dict[tuple[str, str], set[int]] = {}
        # ... and which clock skews are in force on it.
        self._skews: dict[str, _Skews] = {}
        now = world.now
        for i, fault in enumerate(schedule):
            if fault.start < now:
                raise InvalidParameterError(
                    f"fault {i} {fault!r} starts at t={fault.start:g}, before now (t={now:g}): "
                    f"inject the schedule before running the world, or start the fault later"
                )
            try:
                _starter(fault)
                candidates = self._candidates(fault)
                if isinstance(fault, DiskLoss):
                    diskless = [n for n in candidates if not hasattr(world.nodes[n], "lose_disk")]
                    if diskless:
                        raise InvalidParameterError(
                            f"{diskless[0]!r} has no local disk to lose: DiskLoss targets service replicas (their "
                            f"sandbox.disk); for a database, use Kill (its storage survives) or StorageTimeout"
                        )
                if isinstance(fault, LinkFault) and fault.peer is not None:
                    overlap = sorted(set(candidates) & set(world._expand(fault.peer)))
                    if overlap:
                        raise InvalidParameterError(
                            f"target and peer overlap on {overlap!r}: a node cannot be on both sides; "
                            f"name different services or replicas"
                        )
            except SandboxError as exc:
                raise InvalidParameterError(f"fault {i} {fault!r}: {exc}") from None
        self.active = [_Active(i, f) for i, f in enumerate(schedule)]
        for act in self.active:
            if act.fault.start > self.heal_at:
                continue
            self._at(act.fault.start, lambda act=act: self._start(act))
            end = act.fault.end(self.heal_at)
            if end < self.heal_at:
                self._at(end, lambda act=act: self._end(act))
        self._at(self.heal_at, self.heal)

    # --- timing ------------------------------------------------------------------------

    def _at(self, when: float, action: Callable[[], None]) -> None:
        call_at(self.world.env, when, action)

    def heal(self) -> None:
        """End every fault still in force: the quiet phase begins."""
        if self.healed:
            return
        self.healed = True
        for act in self.active:
            if act.started is not None and act.ended is None:
                self._end(act)
        self.world.record("fault.healed")

    # --- choosing targets ----------------------------------------------------------------

    def _candidates(self, fault: Fault) -> list[str]:
        world = self.world
        if fault.targets == "databases":
            for name in fault.target:
                if name not in world.databases:
                    raise InvalidParameterError(
                        f"no database named {name!r}; databases: {sorted(world.databases)}"
                    )
            return list(fault.target)
        if fault.targets == "groups":
            known = self.groups()
            for name in fault.target:
                if name not in known:
                    raise InvalidParameterError(
                        f"no consumer group named {name!r}; the services declare these groups: {sorted(known)}"
                    )
            return list(fault.target)
        return world._expand(fault.target)

    def groups(self) -> list[str]:
        """The consumer groups the world's services declare (and any that already polled)."""
        found: dict[str, None] = {}
        for service in self.world.services.values():
            for instance in service.instances:
                subs = getattr(getattr(instance.app, "state", None), "chaos_dojo_consumers", None) or ()
                for sub in subs:
                    found[sub.group] = None
        if self.world._broker is not None:
            for g in self.world._broker.groups():
                found[g] = None
        return sorted(found)

    def _choose(self, act: _Active) -> list[str]:
        fault = act.fault
        names = self._candidates(fault)
        rng = self.world.streams[f"faults/{act.index}"]
        if fault.mode == "all" or not names:
            return names
        if fault.mode == "one":
            return [rng.choice(names)]
        if fault.mode == "fixed":
            count = min(int(fault.value or 1), len(names))
        else:
            count = max(1, math.floor(len(names) * float(fault.value or 0) / 100))
        chosen = set(rng.sample(names, count))
        return [n for n in names if n in chosen]

    # --- starting and ending ---------------------------------------------------------------

    def _start(self, act: _Active) -> None:
        if self.healed or act.started is not None:
            return
        world = self.world
        fault = act.fault
        act.started = world.now
        nodes = self._choose(act)
        act.nodes = tuple(nodes)
        _starter(fault)(self, act, nodes)
        world.record("fault.start", act.index, fault.family, fault.action, act.label, act.nodes, act.peers)

    def _end(self, act: _Active) -> None:
        if act.started is None or act.ended is not None:
            return
        act.ended = self.world.now
        for undo in reversed(act.undo):
            undo()
        self.world.record("fault.end", act.index, act.label)

    # --- what each fault does ---------------------------------------------------------------

    def _link(self, act: _Active, nodes: list[str]) -> None:
        fault = act.fault
        assert isinstance(fault, LinkFault)
        peers = None if fault.peer is None else self.world._expand(fault.peer)
        act.peers = tuple(peers or ())
        arrow = {"both": "<->", "to": "->", "from": "<-"}[fault.direction]
        act.label = f"{fault.action} {','.join(nodes)} {arrow} {','.join(peers) if peers else 'all'}"
        if fault._details():
            act.label += f" {fault._details()}"
        kwargs: dict[str, Any] = {}
        if isinstance(fault, Delay):
            state = LinkState(latency=fault.latency, jitter=fault.jitter, distribution=fault.distribution)
            kwargs["delay"] = state
        elif isinstance(fault, Loss):
            kwargs["loss"] = fault.probability
        elif isinstance(fault, Duplicate):
            kwargs["duplicate"] = fault.probability
        elif isinstance(fault, Reorder):
            kwargs["reorder"] = fault.probability
            kwargs["reorder_gap"] = fault.gap
        elif isinstance(fault, Bandwidth):
            kwargs["rate"] = fault.rate
        elif isinstance(fault, Clog):
            kwargs["clog"] = True
        peer_set = None if peers is None else frozenset(peers) - frozenset(nodes)
        rule = LinkRule(frozenset(nodes), peer_set, fault.direction, f"fault {act.index}", **kwargs)
        network = self.world.network
        network.add_rule(rule)
        act.counters.append(rule)
        act.undo.append(lambda: network.remove_rule(rule))

    def _cut(self, act: _Active, side_a: list[str], side_b: list[str] | None, one_way: bool, inbound: bool = False) -> None:
        counter = _Counter()
        network = self.world.network
        handle = network.cut(side_a, side_b, one_way=one_way, inbound=inbound, on_drop=counter.hit)
        act.counters.append(counter)
        act.undo.append(lambda: network.uncut(handle))

    def _partition(self, act: _Active, nodes: list[str]) -> None:
        fault = act.fault
        assert isinstance(fault, Partition)
        peers = None if fault.peer is None else [p for p in self.world._expand(fault.peer) if p not in nodes]
        act.peers = tuple(peers or ())
        other = ",".join(peers) if peers is not None else "all"
        arrow = {"both": "|", "to": "-x->", "from": "<-x-"}[fault.direction]
        act.label = f"partition {','.join(nodes)} {arrow} {other}"
        self._cut(act, nodes, peers, one_way=fault.direction != "both", inbound=fault.direction == "from")

    def _isolate(self, act: _Active, nodes: list[str]) -> None:
        act.label = f"isolate {','.join(nodes)}"
        self._cut(act, nodes, None, one_way=False)

    def _halves(self, act: _Active, nodes: list[str]) -> None:
        if len(nodes) < 2:
            act.label = f"halves {','.join(nodes)} (too few nodes to split)"
            return
        rng = self.world.streams[f"faults/{act.index}/split"]
        shuffled = list(nodes)
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        a, b = sorted(shuffled[:half]), sorted(shuffled[half:])
        act.nodes, act.peers = tuple(a), tuple(b)
        act.label = f"halves {','.join(a)} | {','.join(b)}"
        self._cut(act, a, b, one_way=False)

    def _bridge(self, act: _Active, nodes: list[str]) -> None:
        if len(nodes) < 3:
            act.label = f"bridge {','.join(nodes)} (too few nodes: a bridge needs 3)"
            return
        rng = self.world.streams[f"faults/{act.index}/split"]
        shuffled = list(nodes)
        rng.shuffle(shuffled)
        middle = shuffled[len(shuffled) // 2]
        rest = [n for n in shuffled if n != middle]
        half = len(rest) // 2
        a, b = sorted(rest[:half]), sorted(rest[half:])
        act.nodes, act.peers = tuple(a), tuple(b)
        act.label = f"bridge {','.join(a)} | {','.join(b)} via {middle}"
        self._cut(act, a, b, one_way=False)

    def _down(self, act: _Active, nodes: list[str]) -> None:
        act.label = f"{act.fault.action} {','.join(nodes)}"
        self._hold(act, nodes, "down", free=lambda n: n.alive, held=lambda n: not n.alive,
                   take=lambda n: n.crash(), give=lambda n: n.restart())

    def _disk_loss(self, act: _Active, nodes: list[str]) -> None:
        """Crash the replicas (as ``_down``) and, those that went down with this fault, empty their disks."""
        was_up = {name for name in nodes if self.world.nodes[name].alive}
        self._down(act, nodes)
        act.label = f"disk-loss {','.join(nodes)}"
        for name in nodes:
            node = self.world.nodes[name]
            if name in was_up and not node.alive:
                node.lose_disk()

    def _pause(self, act: _Active, nodes: list[str]) -> None:
        act.label = f"pause {','.join(nodes)}"
        self._hold(act, nodes, "paused", free=lambda n: n.alive and not n.paused, held=lambda n: n.paused,
                   take=lambda n: n.pause(), give=lambda n: n.resume())

    def _hold(self, act: _Active, nodes: list[str], state: str, *, free: Callable[[Node], bool],
              held: Callable[[Node], bool], take: Callable[[Node], None], give: Callable[[Node], None]) -> None:
        """Keep each node ``state`` (down, paused) for the window of ``act``, with any other fault doing so.

        A ``free`` node is taken (crashed, paused); one already ``held`` by other faults is held by this
        one too (it counts as fired: the fault keeps it so); one in that state for another reason
        (crashed by hand) is left alone. A node is given back (restarted, resumed) only when the last
        fault holding it ends.
        """
        held_here: list[Node] = []
        for name in nodes:
            node = self.world.nodes[name]
            holders = self._holds.setdefault((state, name), set())
            if free(node):
                take(node)
            elif not (holders and held(node)):
                continue
            holders.add(act.index)
            held_here.append(node)
            act.fired_direct += 1

        def release() -> None:
            for node in held_here:
                holders = self._holds[(state, node.name)]
                holders.discard(act.index)
                if not holders:
                    give(node)

        act.undo.append(release)

    def _clock(self, act: _Active, nodes: list[str]) -> None:
        fault = act.fault
        assert isinstance(fault, ClockSkew)
        world = self.world
        act.label = f"clock {','.join(nodes)} {fault._details()}"
        for name in nodes:
            clock = world.nodes[name].clock
            skews = self._skews.get(name)
            if skews is None:  # the first skew on this node: remember its clock as it was
                skews = self._skews[name] = _Skews(clock.monotonic() + clock.offset - world.now, clock.drift)
            skews.active[act.index] = fault
            clock.offset += fault.offset
            clock.drift = skews.drift + sum(f.drift for f in skews.active.values())
            act.fired_direct += 1
            act.undo.append(lambda name=name: self._unskew(name, act.index))

    def _unskew(self, name: str, index: int) -> None:
        """End skew ``index`` on node ``name``: take its offset and drift away, or, if it was the last
        one, step the clock back to the error and drift it had before the first (as NTP would)."""
        world = self.world
        clock = world.nodes[name].clock
        skews = self._skews[name]
        fault = skews.active.pop(index)
        if skews.active:
            clock.offset -= fault.offset
            clock.drift = skews.drift + sum(f.drift for f in skews.active.values())
            return
        del self._skews[name]
        clock.drift = skews.drift
        # Wall time goes back to its old error; monotonic time keeps going.
        clock.offset = skews.error - (clock.monotonic() - world.now)

    def _storage(self, act: _Active, nodes: list[str]) -> None:
        fault = act.fault
        act.label = f"{fault.action} {','.join(nodes)}"
        if fault._details():
            act.label += f" {fault._details()}"
        if isinstance(fault, SlowStorage):
            rule = IORule(f"fault {act.index}", latency=fault.latency)
        elif isinstance(fault, StorageTimeout):
            rule = IORule(f"fault {act.index}", timeout=fault.probability)
        else:
            assert isinstance(fault, LockTimeouts)
            rule = IORule(f"fault {act.index}", lock_timeout=fault.lock_timeout)
        act.counters.append(rule)
        for name in nodes:
            store = self.world.databases[name].store
            store.io_rules.append(rule)
            act.undo.append(lambda store=store: store.io_rules.remove(rule))

    def _rebalance(self, act: _Active, groups: list[str]) -> None:
        fault = act.fault
        assert isinstance(fault, Rebalance)
        act.label = f"rebalance {','.join(groups)}"
        broker = self.world.broker

        def once(k: int) -> None:
            if act.ended is not None:
                return
            if broker.alive and not broker.paused:  # a broker down or frozen rebalances nothing
                for group in groups:
                    if group in broker.groups():
                        broker.rebalance(group)
                        act.fired_direct += 1
            if fault.every is not None:
                # start + k * every, not now + every: added up, the float error would let a
                # rebalance due exactly at the fault's end slip in before it.
                self._at(fault.start + (k + 1) * fault.every, lambda: once(k + 1))

        once(0)

    def _redelivery(self, act: _Active, groups: list[str]) -> None:
        fault = act.fault
        assert isinstance(fault, Redelivery)
        act.label = f"redelivery {','.join(groups)} {fault._details()}"
        counter = _Counter()
        counter.groups = frozenset(groups)
        counter.probability = fault.probability
        broker = self.world.broker
        broker.commit_faults.append(counter)
        act.counters.append(counter)
        act.undo.append(lambda: broker.commit_faults.remove(counter))

    # --- reading --------------------------------------------------------------------------

    @property
    def windows(self) -> list[FaultWindow]:
        """Every fault that started, in start order, with what it hit and how often it fired."""
        started = [a for a in self.active if a.started is not None]
        started.sort(key=lambda a: (a.started, a.index))
        return [
            FaultWindow(
                a.index, a.fault, a.label, a.fault.family, a.started, a.ended, a.nodes, a.peers, a.fired
            )
            for a in started
            if a.started is not None
        ]

    def coverage(self) -> Any:
        """What the faults did and which recovery paths the code took: see ``sandbox.faults.coverage``."""
        from .coverage import coverage

        return coverage(self.world)


_STARTERS: dict[type, Callable[[Chaos, _Active, list[str]], None]] = {
    Delay: Chaos._link,
    Loss: Chaos._link,
    Duplicate: Chaos._link,
    Reorder: Chaos._link,
    Bandwidth: Chaos._link,
    Clog: Chaos._link,
    Partition: Chaos._partition,
    Isolate: Chaos._isolate,
    SplitHalves: Chaos._halves,
    Bridge: Chaos._bridge,
    Kill: Chaos._down,
    DiskLoss: Chaos._disk_loss,
    Failure: Chaos._down,
    Pause: Chaos._pause,
    ClockSkew: Chaos._clock,
    SlowStorage: Chaos._storage,
    StorageTimeout: Chaos._storage,
    LockTimeouts: Chaos._storage,
    Rebalance: Chaos._rebalance,
    Redelivery: Chaos._redelivery,
}


def _starter(fault: Fault) -> Callable[[Chaos, _Active, list[str]], None]:
    """What starts ``fault``: the action of its class, or of the nearest base class that has one.

    Raises:
        InvalidParameterError: a class the injector cannot start (``Fault``, ``LinkFault``, a new kind).
    """
    for cls in type(fault).__mro__:
        if cls in _STARTERS:
            return _STARTERS[cls]
    raise InvalidParameterError(
        f"{type(fault).__name__} is no fault the injector can start; "
        f"use one of {', '.join(cls.__name__ for cls in KINDS.values())}"
    )
