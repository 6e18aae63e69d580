"""Faults as data: what to break, where, when and for how long.

Each fault is a frozen record named after the tool an engineer meets at work:
Chaos Mesh's ``NetworkChaos`` (delay, loss, duplicate, reorder, partition,
bandwidth), ``PodChaos`` (pod-kill, pod-failure, pause), ``TimeChaos`` (clock
offset and drift), ``IOChaos`` (slow or timed-out storage, lock timeouts) and a
``KafkaChaos`` of broker faults (rebalance, redelivery). Every fault has:

* a **target**: names of services (all their replicas), nodes, databases (for
  storage faults) or consumer groups (for broker faults), and a **mode** choosing
  among the target's nodes as Chaos Mesh does: ``"all"``, ``"one"`` (one at random),
  ``"fixed"`` (``value`` of them at random), ``"percent"`` (``value`` percent of
  them, rounded down, at least one);
* a **start** (virtual seconds from the start of the run) and a **duration**
  (``None``: until the fault phase ends at the schedule's ``heal_at`` and the quiet
  phase heals everything).

Link faults (delay, loss, duplicate, reorder, clog, bandwidth, partition) act on the links
between the target's nodes and their ``peer`` (``None``: every other node), in the
given ``direction``: ``"to"`` (target -> peer), ``"from"`` (peer -> target) or
``"both"``.

Example::

    from sandbox.faults import Delay, Kill, Partition, Schedule

    schedule = Schedule([
        Delay("payments", latency=0.3, start=1.0, duration=2.0),
        Partition("orders", "payments", direction="to", start=4.0, duration=1.0),
        Kill("inventory", mode="one", start=6.0, restart_after=0.5),
    ])
    world.inject(schedule)

Malformed specs fail when they are made (a negative duration, a probability
outside [0, 1], an unknown mode); names that are no node of the world fail when
the schedule is injected, before the run starts. Both raise ``InvalidParameterError``
(a ``SandboxError``) with the bad value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from .._checks import probability, seconds
from ..errors import InvalidParameterError
from ..network import DISTRIBUTIONS

MODES = ("all", "one", "fixed", "percent")
DIRECTIONS = ("both", "to", "from")
Names = tuple[str, ...]


def _names(what: str, value: Any, *, optional: bool = False) -> Names | None:
    if value is None and optional:
        return None
    names = (value,) if isinstance(value, str) else value
    if isinstance(names, (list, tuple)) and names and all(isinstance(v, str) and v for v in names):
        return tuple(dict.fromkeys(names))
    raise InvalidParameterError(
        f"{what}={value!r}: name a service, node or database (\"payments\"), or give a list of names"
        + (", or None" if optional else "")
    )


def _number(name: str, value: Any, *, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameterError(f"{name}={value!r}: use a finite number")
    if low is not None and value < low:
        raise InvalidParameterError(f"{name}={value!r}: use a number >= {low:g}")
    return float(value)


@dataclass(frozen=True)
class Fault:
    """What every fault has: target, mode, value, start and duration (see the module docstring)."""

    family: ClassVar[str] = ""
    action: ClassVar[str] = ""
    #: Which part of the world the target names: "nodes", "databases" or "groups".
    targets: ClassVar[str] = "nodes"

    target: Names
    mode: str = field(default="all", kw_only=True)
    value: float | None = field(default=None, kw_only=True)
    start: float = field(default=0.0, kw_only=True)
    duration: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "target", _names("target", self.target))
        if self.mode not in MODES:
            raise InvalidParameterError(f"mode={self.mode!r}: use one of {', '.join(map(repr, MODES))}")
        if self.mode in ("fixed", "percent"):
            if self.value is None:
                raise InvalidParameterError(
                    f"mode={self.mode!r} needs value= (how many nodes for 'fixed', what percent for 'percent')"
                )
            if self.mode == "fixed" and (isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 1):
                raise InvalidParameterError(f"value={self.value!r} with mode='fixed': use a whole number >= 1")
            if self.mode == "percent" and (
                isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not 0 < self.value <= 100
            ):
                raise InvalidParameterError(f"value={self.value!r} with mode='percent': use a number in (0, 100]")
        elif self.value is not None:
            raise InvalidParameterError(
                f"value={self.value!r} is only used with mode='fixed' or 'percent' (mode is {self.mode!r})"
            )
        set_(self, "start", seconds("start", self.start))
        if self.duration is not None:
            set_(self, "duration", seconds("duration", self.duration, positive=True))

    # --- describing ------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"NetworkChaos/partition"``: the family and action, as Chaos Mesh names them."""
        return f"{self.family}/{self.action}"

    def end(self, heal_at: float) -> float:
        """When this fault ends if the fault phase ends at ``heal_at``."""
        if self.duration is None:
            return max(heal_at, self.start)
        return min(self.start + self.duration, max(heal_at, self.start))

    def _what(self) -> str:
        return ", ".join(self.target)

    def _details(self) -> str:
        return ""

    def describe(self) -> str:
        """One line: action, target, details and window, e.g. ``partition orders -> payments, t=1.0..3.0``."""
        mode = {"all": "", "one": "one of ", "fixed": f"{self.value} of ", "percent": f"{self.value}% of "}[self.mode]
        details = self._details()
        when = f"t={self.start:g}" + (f"..{self.start + self.duration:g}" if self.duration is not None else "..heal")
        return f"{self.action} {mode}{self._what()}{' ' + details if details else ''}, {when}"

    def __repr__(self) -> str:
        shown = [repr(self.target[0] if len(self.target) == 1 else list(self.target))]
        for f in sorted(fields(self), key=lambda f: bool(f.kw_only)):  # positional ones first, unnamed
            if f.name == "target" or not f.init or not f.repr:
                continue
            value = getattr(self, f.name)
            # metadata["default"]: what a None default stands for (Kill's restart_after), left out as well
            if value != f.metadata.get("default", f.default) or not f.kw_only:
                if isinstance(value, tuple):
                    value = value[0] if len(value) == 1 else list(value)
                shown.append(f"{f.name}={value!r}" if f.kw_only else repr(value))
        return f"{type(self).__name__}({', '.join(shown)})"

    def replace(self, **changes: Any) -> Fault:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True, repr=False)
class LinkFault(Fault):
    """A fault on links: between the target's nodes and ``peer`` in ``direction``."""

    family: ClassVar[str] = "NetworkChaos"

    peer: Names | None = field(default=None, kw_only=True)
    direction: str = field(default="both", kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "peer", _names("peer", self.peer, optional=True))
        if self.direction not in DIRECTIONS:
            raise InvalidParameterError(
                f"direction={self.direction!r}: use 'to' (target -> peer), 'from' (peer -> target) or 'both'"
            )

    def _what(self) -> str:
        arrow = {"both": "<->", "to": "->", "from": "<-"}[self.direction]
        return f"{', '.join(self.target)} {arrow} {', '.join(self.peer) if self.peer else 'all'}"


@dataclass(frozen=True, repr=False)
class Delay(LinkFault):
    """NetworkChaos delay: messages on the links take ``latency`` seconds longer (+/- ``jitter``).

    Example: ``Delay("payments", latency=0.3, jitter=0.1, start=2, duration=5)``.
    """

    action: ClassVar[str] = "delay"
    latency: float = field(default=0.1, kw_only=True)
    jitter: float = field(default=0.0, kw_only=True)
    distribution: str = field(default="normal", kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "latency", seconds("latency", self.latency))
        object.__setattr__(self, "jitter", seconds("jitter", self.jitter))
        if self.distribution not in DISTRIBUTIONS:
            raise InvalidParameterError(
                f"distribution={self.distribution!r} is not one of {', '.join(map(repr, DISTRIBUTIONS))}"
            )

    def _details(self) -> str:
        return f"+{self.latency * 1000:g} ms" + (f" +/-{self.jitter * 1000:g}" if self.jitter else "")


@dataclass(frozen=True, repr=False)
class _PerMessage(LinkFault):
    """A link fault that acts on each message with ``probability``."""

    probability: float = field(default=0.5, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "probability", probability("probability", self.probability))

    def _details(self) -> str:
        return f"{self.probability:.0%}"


@dataclass(frozen=True, repr=False)
class Loss(_PerMessage):
    """NetworkChaos loss: each message on the links is dropped with ``probability``."""

    action: ClassVar[str] = "loss"


@dataclass(frozen=True, repr=False)
class Duplicate(_PerMessage):
    """NetworkChaos duplicate: each message on the links is delivered twice with ``probability``."""

    action: ClassVar[str] = "duplicate"


@dataclass(frozen=True, repr=False)
class Reorder(_PerMessage):
    """NetworkChaos reorder: with ``probability`` a message is held back ``gap`` seconds, so later ones overtake it."""

    action: ClassVar[str] = "reorder"
    gap: float = field(default=0.02, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "gap", seconds("gap", self.gap, positive=True))

    def _details(self) -> str:
        return f"{self.probability:.0%} by {self.gap * 1000:g} ms"


@dataclass(frozen=True, repr=False)
class Bandwidth(LinkFault):
    """NetworkChaos bandwidth: each link carries at most ``rate`` bytes per second; messages queue behind each other."""

    action: ClassVar[str] = "bandwidth"
    rate: float = field(default=10_000.0, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
            raise InvalidParameterError(f"rate={rate!r}: use bytes per second, a number > 0 (10_000 is 10 kB/s)")
        object.__setattr__(self, "rate", float(rate))

    def _details(self) -> str:
        return f"{self.rate:g} B/s"


@dataclass(frozen=True, repr=False)
class Clog(LinkFault):
    """NetworkChaos clog: messages on the links are held (not lost) and all arrive late when it heals,
    as TCP retransmits through a stalled switch. Compare ``Partition``, which drops them."""

    action: ClassVar[str] = "clog"


@dataclass(frozen=True, repr=False)
class Partition(LinkFault):
    """NetworkChaos partition: cut the links between ``target`` and ``peer`` (dropping every message).

    ``direction="both"`` cuts both ways; ``"to"`` only target -> peer (the target
    still hears the peer; its answers are lost), ``"from"`` only peer -> target.
    ``peer=None`` cuts the target off from everyone (see also ``Isolate``).

    Example: ``Partition("orders", "payments", start=1, duration=2)``.
    """

    action: ClassVar[str] = "partition"
    peer: Names | None = None  # positional here: Partition("orders", "payments")

    def _what(self) -> str:
        arrow = {"both": "|", "to": "-x->", "from": "<-x-"}[self.direction]
        return f"{', '.join(self.target)} {arrow} {', '.join(self.peer) if self.peer else 'all'}"


@dataclass(frozen=True, repr=False)
class Isolate(Fault):
    """NetworkChaos partition of one node from all others, both ways (mode defaults to ``"one"``)."""

    family: ClassVar[str] = "NetworkChaos"
    action: ClassVar[str] = "isolate"
    mode: str = field(default="one", kw_only=True)


@dataclass(frozen=True, repr=False)
class SplitHalves(Fault):
    """NetworkChaos partition into two random halves of the target's nodes (Jepsen's ``random-halves``).

    Nodes outside the target are untouched. Give several services as the target,
    e.g. ``SplitHalves(["orders", "inventory", "inventory-db"])``.
    """

    family: ClassVar[str] = "NetworkChaos"
    action: ClassVar[str] = "halves"


@dataclass(frozen=True, repr=False)
class Bridge(Fault):
    """NetworkChaos bridge (Jepsen): two halves that cannot talk, except through one node that sees both."""

    family: ClassVar[str] = "NetworkChaos"
    action: ClassVar[str] = "bridge"


@dataclass(frozen=True, repr=False)
class Kill(Fault):
    """PodChaos pod-kill: crash the chosen nodes at ``start``; they restart ``restart_after`` seconds later
    (default 0.5) from fresh memory (what they stored durably survives). Mode defaults to ``"one"``.

    ``duration=`` is a synonym of ``restart_after=`` (the window every other fault calls its duration):
    ``Kill("inventory", start=2, duration=1) == Kill("inventory", start=2, restart_after=1)``.

    Raises:
        InvalidParameterError: ``duration`` and ``restart_after`` both given, and different.
    """

    family: ClassVar[str] = "PodChaos"
    action: ClassVar[str] = "kill"
    mode: str = field(default="one", kw_only=True)
    duration: float | None = field(default=None, kw_only=True, repr=False)
    restart_after: float | None = field(default=None, kw_only=True, metadata={"default": 0.5})

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        if self.restart_after is None:
            set_(self, "restart_after", 0.5 if self.duration is None else self.duration)
        set_(self, "restart_after", seconds("restart_after", self.restart_after, positive=True))
        if self.duration is not None and self.duration != self.restart_after:
            raise InvalidParameterError(
                f"duration={self.duration!r} and restart_after={self.restart_after!r}: for Kill they are one "
                f"setting (duration= is a synonym of restart_after=); give only one, or change it with .replace()"
            )
        set_(self, "duration", self.restart_after)

    def replace(self, **changes: Any) -> Fault:
        """A copy with some fields changed; changing ``duration`` or ``restart_after`` changes both."""
        for name, synonym in (("duration", "restart_after"), ("restart_after", "duration")):
            if name in changes and synonym not in changes:
                changes[synonym] = changes[name]
        return super().replace(**changes)

    def _details(self) -> str:
        return f"(restart after {self.restart_after:g} s)"


@dataclass(frozen=True, repr=False)
class DiskLoss(Kill):
    """PodChaos pod-kill that takes the pod's volume with it: the chosen service replicas crash and
    their local disks (``sandbox.disk``) are lost, as when a machine is replaced; they restart
    ``restart_after`` seconds later (default 0.5) from fresh memory **and an empty disk**. What they
    kept elsewhere (a database, which is a node of its own; the other replicas) is untouched.
    Mode defaults to ``"one"``; a target that names no service replica is refused when injected.

    Example: ``DiskLoss("inventory-0", start=1.0, restart_after=0.5)``: does the cluster still hold
    every write it acknowledged, when the replica that took them comes back with nothing?
    """

    action: ClassVar[str] = "disk-loss"

    def _details(self) -> str:
        return f"(its disk lost; restart after {self.restart_after:g} s)"


@dataclass(frozen=True, repr=False)
class Failure(Fault):
    """PodChaos pod-failure: the chosen nodes are down for the whole window, then start again."""

    family: ClassVar[str] = "PodChaos"
    action: ClassVar[str] = "failure"
    mode: str = field(default="one", kw_only=True)


@dataclass(frozen=True, repr=False)
class Pause(Fault):
    """PodChaos pause (SIGSTOP): the chosen nodes freeze for the window, keeping memory; others see them as slow."""

    family: ClassVar[str] = "PodChaos"
    action: ClassVar[str] = "pause"
    mode: str = field(default="one", kw_only=True)


@dataclass(frozen=True, repr=False)
class ClockSkew(Fault):
    """TimeChaos: the chosen nodes' clocks jump by ``offset`` seconds and run ``drift`` faster
    than they did (1e-3 = 1 ms per second) for the window; true virtual time is untouched.

    Skews overlapping on one node add up: each adds its offset when it starts and takes it
    away when it ends, and the clock runs at its own drift plus the drifts of the skews in
    force. When the last one ends, the clock is stepped back to the error and rate it had
    when the first began, as NTP would; its monotonic time never goes backwards.
    """

    family: ClassVar[str] = "TimeChaos"
    action: ClassVar[str] = "clock-skew"
    offset: float = field(default=0.0, kw_only=True)
    drift: float = field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "offset", _number("offset", self.offset))
        drift = self.drift
        if isinstance(drift, bool) or not isinstance(drift, (int, float)) or not -1.0 < drift < 1.0:
            raise InvalidParameterError(f"drift={drift!r}: use a rate between -1 and 1 (1e-4 is 100 ppm)")
        object.__setattr__(self, "drift", float(drift))
        if self.offset == 0.0 and self.drift == 0.0:
            raise InvalidParameterError("ClockSkew needs offset= (seconds) or drift= (a rate), or both")

    def _details(self) -> str:
        parts = []
        if self.offset:
            parts.append(f"{self.offset:+g} s")
        if self.drift:
            parts.append(f"drift {self.drift:+g}")
        return " ".join(parts)


@dataclass(frozen=True, repr=False)
class SlowStorage(Fault):
    """IOChaos latency: every operation on the target databases takes ``latency`` seconds longer."""

    family: ClassVar[str] = "IOChaos"
    action: ClassVar[str] = "slow"
    targets: ClassVar[str] = "databases"
    latency: float = field(default=0.2, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "latency", seconds("latency", self.latency, positive=True))

    def _details(self) -> str:
        return f"+{self.latency * 1000:g} ms"


@dataclass(frozen=True, repr=False)
class StorageTimeout(Fault):
    """IOChaos fault: with ``probability`` an operation takes effect but its answer never comes back,
    so the caller times out without knowing whether it happened."""

    family: ClassVar[str] = "IOChaos"
    action: ClassVar[str] = "timeout"
    targets: ClassVar[str] = "databases"
    probability: float = field(default=0.2, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "probability", probability("probability", self.probability))

    def _details(self) -> str:
        return f"{self.probability:.0%}"


@dataclass(frozen=True, repr=False)
class LockTimeouts(Fault):
    """IOChaos: the target databases give up on row-lock waits after ``lock_timeout`` seconds
    (as a busy server with a short ``lock_timeout`` does), aborting the waiting transaction."""

    family: ClassVar[str] = "IOChaos"
    action: ClassVar[str] = "lock-timeout"
    targets: ClassVar[str] = "databases"
    lock_timeout: float = field(default=0.01, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "lock_timeout", seconds("lock_timeout", self.lock_timeout, positive=True))

    def _details(self) -> str:
        return f"after {self.lock_timeout * 1000:g} ms"


@dataclass(frozen=True, repr=False)
class Rebalance(Fault):
    """KafkaChaos: force the target consumer groups to rebalance (every ``every`` seconds in the window,
    or once at ``start``); consumers go back to the committed offsets, so uncommitted messages come again."""

    family: ClassVar[str] = "KafkaChaos"
    action: ClassVar[str] = "rebalance"
    targets: ClassVar[str] = "groups"
    every: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.every is not None:
            object.__setattr__(self, "every", seconds("every", self.every, positive=True))


@dataclass(frozen=True, repr=False)
class Redelivery(Fault):
    """KafkaChaos: with ``probability`` a consumer's commit is lost and its group rebalances,
    so the messages since the last commit are delivered again (at-least-once, made visible)."""

    family: ClassVar[str] = "KafkaChaos"
    action: ClassVar[str] = "redelivery"
    targets: ClassVar[str] = "groups"
    probability: float = field(default=0.3, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "probability", probability("probability", self.probability))

    def _details(self) -> str:
        return f"{self.probability:.0%} of commits"


#: Every fault class, by action name.
KINDS: dict[str, type[Fault]] = {
    cls.action: cls
    for cls in (
        Delay, Loss, Duplicate, Reorder, Bandwidth, Clog, Partition, Isolate, SplitHalves, Bridge,
        Kill, DiskLoss, Failure, Pause, ClockSkew, SlowStorage, StorageTimeout, LockTimeouts, Rebalance, Redelivery,
    )
}


@dataclass(frozen=True)
class Schedule:
    """A list of faults for one run, and when the fault phase ends (``heal_at``).

    At ``heal_at`` every fault still active is healed and the quiet phase begins, so
    that a run can be checked for recovery ("every saga finished") as well as safety.
    ``heal_at=None`` ends the fault phase when the last fault ends (every fault then
    needs a duration: nothing else would say when it ends).

    Example::

        Schedule([Loss("payments", probability=0.3, start=1, duration=4)])
        Schedule([Partition("orders", "payments", start=1)], heal_at=5.0)
        Schedule()   # no faults: a calm run

    Raises:
        InvalidParameterError: an item that is no fault (or a base class such as ``Fault``),
            a fault without a duration and no ``heal_at``, or a bad ``heal_at``.
    """

    faults: tuple[Fault, ...] = ()
    heal_at: float | None = None

    def __post_init__(self) -> None:
        items = self.faults
        if isinstance(items, Fault):
            items = (items,)
        if not isinstance(items, Iterable) or isinstance(items, (str, bytes, dict)):
            raise InvalidParameterError(f"faults={items!r}: give a list of faults, e.g. [Loss('payments')]")
        items = tuple(items)
        for i, item in enumerate(items):
            if not isinstance(item, Fault):
                raise InvalidParameterError(
                    f"faults[{i}]={item!r} is not a fault; use the classes of sandbox.faults, "
                    f"e.g. Partition('orders', 'payments', start=1, duration=2)"
                )
            if not item.action:
                name = type(item).__name__
                raise InvalidParameterError(
                    f"faults[{i}]={item!r}: {name} is {'the' if type(item) is Fault else 'a'} base class; "
                    f"use one of {', '.join(cls.__name__ for cls in KINDS.values())}"
                )
            if item.duration is None and self.heal_at is None:
                raise InvalidParameterError(
                    f"faults[{i}]={item!r} has no duration and the schedule no heal_at, so nothing says when "
                    f"it ends: give it duration=, or end the fault phase with Schedule(..., heal_at=...)"
                )
        object.__setattr__(self, "faults", items)
        if self.heal_at is not None:
            object.__setattr__(self, "heal_at", seconds("heal_at", self.heal_at))
            for i, fault in enumerate(items):
                if fault.start > self.heal_at:
                    raise InvalidParameterError(
                        f"faults[{i}]={fault!r} starts at t={fault.start:g}, after the fault phase ends "
                        f"(heal_at={self.heal_at:g}); start it earlier or move heal_at later"
                    )

    @property
    def fault_phase_end(self) -> float:
        """When the quiet phase begins: ``heal_at``, or the end of the last fault."""
        if self.heal_at is not None:
            return self.heal_at
        # without heal_at every fault has a duration (checked when the schedule was made)
        return max((f.start + f.duration for f in self.faults if f.duration is not None), default=0.0)

    def __len__(self) -> int:
        return len(self.faults)

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __getitem__(self, index: int) -> Fault:
        return self.faults[index]

    def __add__(self, other: Schedule) -> Schedule:
        if not isinstance(other, Schedule):
            return NotImplemented
        heal = None if self.heal_at is None and other.heal_at is None else max(
            h for h in (self.heal_at, other.heal_at) if h is not None
        )
        return Schedule(self.faults + other.faults, heal)

    def without(self, index: int) -> Schedule:
        """This schedule less fault number ``index``."""
        return Schedule(self.faults[:index] + self.faults[index + 1 :], self.heal_at)

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.faults))
        heal = f", heal_at={self.heal_at!r}" if self.heal_at is not None else ""
        return f"Schedule([{inner}]{heal})"

    def __str__(self) -> str:
        if not self.faults:
            return "no faults"
        lines = [f"{i}. {f.describe()}" for i, f in enumerate(self.faults)]
        lines.append(f"quiet from t={self.fault_phase_end:g}")
        return "\n".join(lines)
