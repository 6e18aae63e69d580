"""The simulated network: links between nodes, with latency, jitter, loss,
duplication, reordering and partitions as settable state.

Every directed pair of nodes ``(src, dst)`` has a link whose state starts as a copy
of ``network.defaults``. A message crossing a link is dropped if the link is cut
(a partition) or lost (with probability ``loss``); otherwise it arrives after a
latency drawn from the link's distribution, possibly held back further
(``reorder``) and possibly delivered twice (``duplicate``). Each link draws from
its own seeded stream, so traffic on one link never shifts the draws of another.

Example::

    world.network.set_defaults(latency=0.002)     # 2 ms one way, every link
    world.network.link("orders-0", "payments-0").loss = 0.1
    world.network.partition(["orders"], ["payments"])   # both ways
    world.run(until=5)
    world.network.heal()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from simpy.events import NORMAL, Event

from ._checks import probability, seconds
from .errors import InvalidParameterError

if TYPE_CHECKING:
    from .nodes import Node
    from .world import World

NodeName = str
#: What receives a message on arrival: ``deliver(src, epoch, msg_id, payload)`` (see ``Network.send``).
Deliver = Callable[["Node", int, int, Any], None]

DISTRIBUTIONS = ("constant", "uniform", "normal", "exponential", "pareto")


@dataclass
class LinkState:
    """What one direction of one link does to the messages crossing it.

    ``latency`` is the base one-way delay in seconds; ``jitter`` spreads it according
    to ``distribution`` (``normal``: standard deviation; ``uniform``: +/- half-width;
    ``exponential`` / ``pareto``: mean of an added tail; ``constant``: ignored).
    ``loss``, ``duplicate`` and ``reorder`` are probabilities per message; a
    reordered message is held back a further ``reorder_delay`` seconds. ``cut`` is
    True while a partition blocks this direction.
    """

    latency: float = 0.001
    jitter: float = 0.0002
    distribution: str = "normal"
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.005
    cut: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("latency", "jitter", "reorder_delay"):
            value = seconds(name, value)
        elif name in ("loss", "duplicate", "reorder"):
            value = probability(name, value)
        elif name == "distribution" and value not in DISTRIBUTIONS:
            raise InvalidParameterError(
                f"distribution={value!r} is not one of {', '.join(map(repr, DISTRIBUTIONS))}"
            )
        elif name == "cut":
            value = bool(value)
        object.__setattr__(self, name, value)

    def copy(self) -> LinkState:
        return LinkState(**{f.name: getattr(self, f.name) for f in fields(self)})

    def sample_delay(self, rng: Any) -> float:
        """One draw of this link's one-way delay (seconds, never negative)."""
        base, jitter, kind = self.latency, self.jitter, self.distribution
        if jitter == 0.0 or kind == "constant":
            return base
        if kind == "normal":
            delay = rng.gauss(base, jitter)
        elif kind == "uniform":
            delay = base + rng.uniform(-jitter, jitter)
        elif kind == "exponential":
            delay = base + rng.expovariate(1.0 / jitter)
        else:  # pareto with shape 3 has mean 1.5 * scale: scale it to the asked mean
            delay = base + (rng.paretovariate(3.0) - 1.0) * jitter * 2.0
        return delay if delay > 0.0 else 0.0


class Network:
    """All links of one world, and the partitions cut through them."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.defaults = LinkState()
        self._links: dict[tuple[NodeName, NodeName], _Link] = {}
        self._partitions: list[_Partition] = []
        self._rules: list[LinkRule] = []

    # --- link state ------------------------------------------------------------------

    def link(self, src: str, dst: str) -> LinkState:
        """The state of the link from node ``src`` to node ``dst`` (settable in place).

        Service names stand for their only replica; use node names ("orders-1") when
        a service has several.
        """
        a = self.world._node_named(src, role="link source")
        b = self.world._node_named(dst, role="link destination")
        return self._link(a.name, b.name).state

    def _link(self, src: NodeName, dst: NodeName) -> _Link:
        key = (src, dst)
        link = self._links.get(key)
        if link is None:
            state = self.defaults.copy()
            state.cut = self._is_cut(src, dst)
            link = self._links[key] = _Link(state, self.world.streams[f"network/{src}->{dst}"])
            if self._rules:
                link.rules = tuple(r for r in self._rules if r.matches(src, dst))
                link.clogged = sum(1 for r in link.rules if r.clog)
        return link

    def _is_cut(self, src: NodeName, dst: NodeName) -> bool:
        return any(p.cuts(src, dst) for p in self._partitions)

    def set_defaults(self, **changes: Any) -> None:
        """Change the default link state, for links made later and every existing link.

        Example: ``world.network.set_defaults(latency=0.005, jitter=0.001)``.

        Raises:
            InvalidParameterError: an unknown field, or a value out of its range.
        """
        known = {f.name for f in fields(LinkState)} - {"cut"}
        for name, value in changes.items():
            if name not in known:
                raise InvalidParameterError(f"{name}={value!r}: link fields are {', '.join(sorted(known))}")
            setattr(self.defaults, name, value)
            for link in self._links.values():
                setattr(link.state, name, value)

    def set_links(self, src: str | Iterable[str], dst: str | Iterable[str], *, both_ways: bool = False, **changes: Any) -> None:
        """Change every link from the nodes of ``src`` to the nodes of ``dst`` (and back if ``both_ways``).

        Names may be services (all their replicas), databases, clients or node names.

        Example: ``world.network.set_links("orders", "payments", both_ways=True, latency=0.02, loss=0.01)``.

        Raises:
            UnknownNameError: a name that is no node or service of this world.
            InvalidParameterError: an unknown field, or a value out of its range.
        """
        known = {f.name for f in fields(LinkState)} - {"cut"}
        for name, value in changes.items():
            if name not in known:
                raise InvalidParameterError(f"{name}={value!r}: link fields are {', '.join(sorted(known))}")
        a = self.world._expand(src)
        b = self.world._expand(dst)
        pairs = [(x, y) for x in a for y in b if x != y]
        if both_ways:
            pairs += [(y, x) for x in a for y in b if x != y]
        for pair in pairs:
            state = self._link(*pair).state
            for name, value in changes.items():
                setattr(state, name, value)

    # --- partitions ------------------------------------------------------------------

    def partition(self, side_a: Iterable[str], side_b: Iterable[str], *, one_way: bool = False) -> None:
        """Cut every link from ``side_a`` to ``side_b`` (and back, unless ``one_way``).

        Names may be services (all their replicas), databases, clients or node names.

        Raises:
            UnknownNameError: a name that is no node or service of this world.
            InvalidParameterError: the two sides share a node.
        """
        a = self.world._expand(side_a)
        b = self.world._expand(side_b)
        overlap = sorted(set(a) & set(b))
        if overlap:
            raise InvalidParameterError(
                f"partition sides overlap on {overlap!r}: a node cannot be on both sides of a cut"
            )
        self._add(_Partition(frozenset(a), frozenset(b), one_way))
        self.world.record("net.partition", tuple(a), tuple(b), one_way)

    def cut(
        self,
        side_a: Iterable[str],
        side_b: Iterable[str] | None,
        *,
        one_way: bool = False,
        inbound: bool = False,
        on_drop: Callable[[], None] | None = None,
    ) -> object:
        """Add one partition (``side_b`` None: everyone else) and return a handle for ``uncut``.

        With ``one_way`` only ``side_a -> side_b`` is cut, or only ``side_b -> side_a``
        if also ``inbound``. The fault injector uses this so that healing one fault
        leaves the others in place (``heal()`` leaves these to their faults);
        ``on_drop()`` is called for each message the cut drops.
        """
        a = frozenset(self.world._expand(side_a))
        b = None if side_b is None else frozenset(self.world._expand(side_b))
        partition = _Partition(a, b, one_way, on_drop, inbound, fault=True)
        self._add(partition)
        return partition

    def uncut(self, handle: object) -> None:
        """Remove the partition ``handle`` (from ``cut``); other partitions stay."""
        if handle not in self._partitions:
            return
        self._partitions = [p for p in self._partitions if p is not handle]
        for (src, dst), link in self._links.items():
            link.state.cut = self._is_cut(src, dst)

    # --- fault rules ------------------------------------------------------------------

    def add_rule(self, rule: LinkRule) -> None:
        """Start applying a fault rule (delay, loss, duplicate, reorder, clog, bandwidth) to the links it matches."""
        self._rules.append(rule)
        for (src, dst), link in self._links.items():
            if rule.matches(src, dst):
                link.rules = link.rules + (rule,)
                if rule.clog:
                    link.clogged += 1

    def remove_rule(self, rule: LinkRule) -> None:
        """Stop applying ``rule``; messages a clog held are delivered now, in the order they came."""
        if rule not in self._rules:
            return
        self._rules = [r for r in self._rules if r is not rule]
        for link in self._links.values():
            if rule in link.rules:
                link.rules = tuple(r for r in link.rules if r is not rule)
                if rule.clog:
                    link.clogged -= 1
                    if not link.clogged and link.held:
                        held, link.held = link.held, []
                        for arrival in held:
                            _arrive(arrival)

    def isolate(self, name: str) -> None:
        """Cut one node (or every replica of a service) off from every other node, both ways.

        Nodes added later are cut off from it too.
        """
        inside = self.world._expand([name])
        self._add(_Partition(frozenset(inside), None, False))
        self.world.record("net.isolate", tuple(inside))

    def _add(self, partition: _Partition) -> None:
        self._partitions.append(partition)
        for (src, dst), link in self._links.items():
            if partition.cuts(src, dst):
                link.state.cut = True

    def heal(self) -> None:
        """Remove every partition made with ``partition`` / ``isolate``; links keep their other
        settings. A fault schedule's partitions and rules heal with their faults."""
        self._partitions = [p for p in self._partitions if p.fault]
        for (src, dst), link in self._links.items():
            link.state.cut = self._is_cut(src, dst)
        self.world.record("net.heal")

    @property
    def partitions(self) -> list[tuple[tuple[str, ...], tuple[str, ...] | None, bool]]:
        """The partitions in force: ``(side_a, side_b, one_way)`` each (side_b None: everyone else)."""
        return [
            (tuple(sorted(p.a)), None if p.b is None else tuple(sorted(p.b)), p.one_way) for p in self._partitions
        ]

    # --- sending ---------------------------------------------------------------------

    def send(self, src: Node, dst: Node, deliver: Deliver, epoch: int, payload: Any, kind: str, msg_id: int) -> None:
        """Put one message on the wire from ``src`` to ``dst``; ``deliver(src, epoch, msg_id, payload)`` on arrival.

        ``epoch`` is the incarnation the message belongs to (the sender's for a request, the
        caller's for a reply): the receiver uses it to tell a message meant for a process that
        has since restarted.
        """
        world = self.world
        link = self._links.get((src.name, dst.name)) or self._link(src.name, dst.name)
        state = link.state
        log = world._log
        now = world.env.now
        if state.cut:
            log.append((now, "net.drop", src.name, dst.name, kind, msg_id, "partition"))
            for p in self._partitions:
                if p.on_drop is not None and p.cuts(src.name, dst.name):
                    p.on_drop()
            return
        if link.rules:
            self._send_faulty(link, src, dst, deliver, epoch, payload, kind, msg_id)
            return
        rng = link.rng
        if state.loss and rng.random() < state.loss:
            log.append((now, "net.drop", src.name, dst.name, kind, msg_id, "loss"))
            return
        if state.distribution == "normal" and state.jitter != 0.0:  # sample_delay's common case, inlined
            delay = rng.gauss(state.latency, state.jitter)
            if not delay > 0.0:
                delay = 0.0
        else:
            delay = state.sample_delay(rng)
        if state.reorder and rng.random() < state.reorder:
            delay += state.reorder_delay
        log.append((now, "net.send", src.name, dst.name, kind, msg_id, delay))
        _Arrival(world.env, link, src, dst, deliver, epoch, payload, kind, msg_id, delay)
        if state.duplicate and rng.random() < state.duplicate:
            again = state.sample_delay(rng)
            log.append((now, "net.duplicate", src.name, dst.name, kind, msg_id, again))
            _Arrival(world.env, link, src, dst, deliver, epoch, payload, kind, msg_id, again)

    def _send_faulty(self, link: _Link, src: Node, dst: Node, deliver: Deliver, epoch: int, payload: Any, kind: str, msg_id: int) -> None:
        """``send`` on a link with fault rules: the link's own behaviour, then each rule's, in order."""
        world = self.world
        state, rng, rules = link.state, link.rng, link.rules
        log = world._log
        now = world.env.now
        if state.loss and rng.random() < state.loss:
            log.append((now, "net.drop", src.name, dst.name, kind, msg_id, "loss"))
            return
        for rule in rules:
            if rule.loss and rng.random() < rule.loss:
                rule.fired += 1
                log.append((now, "net.drop", src.name, dst.name, kind, msg_id, f"loss ({rule.label})"))
                return
        delay = state.sample_delay(rng)
        if state.reorder and rng.random() < state.reorder:
            delay += state.reorder_delay
        for rule in rules:
            if rule.delay is not None:
                rule.fired += 1
                delay += rule.delay.sample_delay(rng)
            if rule.reorder and rng.random() < rule.reorder:
                rule.fired += 1
                delay += rule.reorder_gap
            if rule.rate:
                key = (src.name, dst.name)
                begin = max(now, rule.busy.get(key, 0.0))
                done = begin + message_size(payload) / rule.rate
                rule.busy[key] = done
                if done > now:
                    rule.fired += 1
                delay += done - now
            if rule.clog:
                rule.fired += 1
        log.append((now, "net.send", src.name, dst.name, kind, msg_id, delay))
        _Arrival(world.env, link, src, dst, deliver, epoch, payload, kind, msg_id, delay)
        copies = 1 if state.duplicate and rng.random() < state.duplicate else 0
        for rule in rules:
            if rule.duplicate and rng.random() < rule.duplicate:
                rule.fired += 1
                copies += 1
        for _ in range(copies):
            again = state.sample_delay(rng)
            for rule in rules:
                if rule.delay is not None:
                    again += rule.delay.sample_delay(rng)
            log.append((now, "net.duplicate", src.name, dst.name, kind, msg_id, again))
            _Arrival(world.env, link, src, dst, deliver, epoch, payload, kind, msg_id, again)


def message_size(payload: Any) -> int:
    """A message's size in bytes on the wire, roughly: bodies count, headers and framing a little."""
    if isinstance(payload, (bytes, bytearray, str)):
        return len(payload) + 40
    body = getattr(payload, "body", None)
    if isinstance(body, (bytes, bytearray)):
        return len(body) + 200
    if isinstance(payload, tuple):
        return 40 + sum(len(p) if isinstance(p, (bytes, bytearray, str)) else 16 for p in payload)
    return 100


class LinkRule:
    """What one network fault does to the links it matches (between ``a`` and ``b``, in ``direction``).

    ``b`` None means every node not in ``a``. ``fired`` counts the messages it acted on.
    """

    __slots__ = ("a", "b", "direction", "label", "delay", "loss", "duplicate", "reorder", "reorder_gap", "rate", "clog", "busy", "fired")

    def __init__(
        self,
        a: frozenset[str],
        b: frozenset[str] | None,
        direction: str,
        label: str,
        *,
        delay: LinkState | None = None,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_gap: float = 0.0,
        rate: float = 0.0,
        clog: bool = False,
    ) -> None:
        self.a = a
        self.b = b
        self.direction = direction
        self.label = label
        self.delay = delay
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorder_gap = reorder_gap
        self.rate = rate
        self.clog = clog
        self.busy: dict[tuple[str, str], float] = {}
        self.fired = 0

    def _in_b(self, name: str) -> bool:
        return name not in self.a if self.b is None else name in self.b

    def matches(self, src: str, dst: str) -> bool:
        if self.direction != "from" and src in self.a and self._in_b(dst):
            return True
        return self.direction != "to" and dst in self.a and self._in_b(src)


class _Partition:
    """A cut between side ``a`` and side ``b`` (None: every node not in ``a``)."""

    __slots__ = ("a", "b", "one_way", "on_drop", "inbound", "fault")

    def __init__(
        self,
        a: frozenset[str],
        b: frozenset[str] | None,
        one_way: bool,
        on_drop: Callable[[], None] | None = None,
        inbound: bool = False,
        fault: bool = False,
    ) -> None:
        self.a = a
        self.b = b
        self.one_way = one_way
        self.on_drop = on_drop
        self.inbound = inbound  # one way only: side b -> side a is cut (not a -> b)
        self.fault = fault  # made by a fault schedule: healed by its fault, not by heal()

    def _side_b(self, name: str) -> bool:
        return name not in self.a if self.b is None else name in self.b

    def cuts(self, src: str, dst: str) -> bool:
        if self.inbound:
            src, dst = dst, src
        if src in self.a and self._side_b(dst):
            return True
        return not self.one_way and dst in self.a and self._side_b(src)


class _Link:
    __slots__ = ("state", "rng", "rules", "clogged", "held")

    def __init__(self, state: LinkState, rng: Any) -> None:
        self.state = state
        self.rng = rng
        self.rules: tuple[LinkRule, ...] = ()  # fault rules in force on this link
        self.clogged = 0  # how many clog rules hold it
        self.held: list[_Arrival] = []  # messages a clog holds, in arrival order


class _Arrival(Event):
    """A message in flight: a SimPy event that hands it to its destination when its delay is over."""

    __slots__ = ("link", "src", "dst", "deliver", "epoch", "payload", "kind", "msg_id")

    def __init__(self, env, link, src, dst, deliver, epoch, payload, kind, msg_id, delay: float) -> None:
        self.env = env
        self.callbacks = _ARRIVE
        self._value = None
        self._ok = True
        self.link = link
        self.src = src
        self.dst = dst
        self.deliver = deliver
        self.epoch = epoch
        self.payload = payload
        self.kind = kind
        self.msg_id = msg_id
        env.schedule(self, NORMAL, delay)


def _arrive(arrival: _Arrival) -> None:
    dst = arrival.dst
    link = arrival.link
    if link.state.cut or link.clogged or dst.paused or not dst.alive:
        _arrive_late(arrival)
        return
    src = arrival.src
    msg_id = arrival.msg_id
    dst.world._log.append((arrival.env.now, "net.deliver", src.name, dst.name, arrival.kind, msg_id))
    arrival.deliver(src, arrival.epoch, msg_id, arrival.payload)


#: Every arrival's callbacks: SimPy replaces an event's list with None when it fires and never changes it
#: before, so one shared list serves them all (nothing else waits on an arrival).
_ARRIVE = (_arrive,)


def _arrive_late(arrival: _Arrival) -> None:
    """``_arrive`` when the link is cut or clogged, or the destination down or paused."""
    dst = arrival.dst
    world = dst.world
    log = world._log
    link = arrival.link
    if link.state.cut:
        log.append((arrival.env.now, "net.drop", arrival.src.name, dst.name, arrival.kind, arrival.msg_id, "partition"))
        for p in world.network._partitions:
            if p.on_drop is not None and p.cuts(arrival.src.name, dst.name):
                p.on_drop()
        return
    if link.clogged:  # held in the network until the clog heals
        link.held.append(arrival)
        return
    if not dst.alive:
        log.append((arrival.env.now, "net.drop", arrival.src.name, dst.name, arrival.kind, arrival.msg_id, "down"))
        return
    if dst.paused:  # held in the frozen node's buffers until it resumes
        dst._held.append(lambda: _arrive(arrival))
        return
    _arrive(arrival)
