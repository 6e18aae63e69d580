"""Reading a run back from its event log: messages on the wire, node lives, fault windows.

Every picture and the stepper start here. Nothing in this module looks inside the
world's live objects beyond its names: what happened is what the log says happened,
so a picture of a run and a replay of the same seed always agree.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..history import Op

if TYPE_CHECKING:
    from ..world import World

NodeName = str
#: The reply kind of each request kind; a request and its reply share their ``msg_id``.
REPLY_OF = {
    "http": "http.reply",
    "db": "db.reply",
    "broker.produce": "broker.ack",
    "broker.poll": "broker.records",
    "broker.commit": "broker.commit_ack",
}
REQUEST_OF = {reply: request for request, reply in REPLY_OF.items()}
_SHORT = {"db": "db", "broker.produce": "produce", "broker.ack": "ack", "broker.poll": "poll",
          "broker.commit": "commit", "broker.commit_ack": "committed"}
_ROLE_ORDER = {"client": 0, "service": 1, "database": 2, "broker": 4}
_EPOCH_SUFFIX = re.compile(r"#\d+$")

Fate = Literal["delivered", "dropped", "in flight"]


@dataclass(frozen=True)
class WireMessage:
    """One message on the simulated wire, from the moment it was sent to its delivery or drop.

    A request and its reply share ``msg_id`` (their ``kind`` differs: "http" and
    "http.reply"); a message the network duplicated appears twice, the copy with
    ``duplicate=True``. ``ended`` is when it was delivered or dropped (None: still on
    the wire when the run ended); ``left`` is False for a message dropped at its
    sender (a partition, a loss) that never went anywhere.

    Example::

        state = sandbox.viz.state_at(world, 0.52)
        for message in state.in_flight:
            print(message)      # customer-0 -> orders-0  POST /orders  (#57, sent 0.5203)
    """

    msg_id: int
    kind: str
    src: NodeName
    dst: NodeName
    sent: float
    ended: float | None
    fate: Fate
    reason: str | None = None
    duplicate: bool = False
    left: bool = True
    label: str = ""

    @property
    def is_reply(self) -> bool:
        return self.kind in REQUEST_OF

    def __str__(self) -> str:
        dup = "duplicate of " if self.duplicate else ""
        return f"{self.src} -> {self.dst}  {dup}{self.label or self.kind}  (#{self.msg_id}, sent {self.sent:.4f})"


@dataclass(frozen=True)
class FaultWindow:
    """A stretch of virtual time during which one fault was in force.

    Read from the log: ``fault.start`` / ``fault.end`` entries of a fault injector
    (``index`` is the fault's number in its schedule), and the partitions made
    directly with ``world.network.partition`` / ``isolate`` until ``heal`` (``index``
    None, family "network"). ``end`` None: it lasted to the end of the run.

    Example::

        for window in sandbox.viz.fault_windows(world):
            print(window)       # #2 NetworkChaos partition orders-0 | payments-0  1.000-3.000 s
    """

    label: str
    family: str
    action: str
    start: float
    end: float | None = None
    nodes: tuple[NodeName, ...] = ()
    peers: tuple[NodeName, ...] = ()
    index: int | None = None

    def active_at(self, t: float) -> bool:
        """True if the fault was in force at virtual time ``t`` (from its start, until its end)."""
        return self.start <= t and (self.end is None or t < self.end)

    def until(self, run_end: float) -> float:
        """When it ended, or ``run_end`` if it never did."""
        return run_end if self.end is None else self.end

    def __str__(self) -> str:
        number = "" if self.index is None else f"#{self.index} "
        end = "end" if self.end is None else f"{self.end:.3f}"
        return f"{number}{self.family} {self.label}  {self.start:.3f}-{end} s"


@dataclass
class _Draft:
    msg_id: int
    kind: str
    src: str
    dst: str
    sent: float
    expected: float
    duplicate: bool = False
    ended: float | None = None
    fate: Fate = "in flight"
    reason: str | None = None
    left: bool = True


@dataclass
class Run:
    """One world's log, read once into messages, lives and fault windows (see ``read_run``)."""

    world: World
    end: float
    messages: list[WireMessage]
    faults: list[FaultWindow]
    life: dict[NodeName, list[tuple[float, str]]]
    order: list[NodeName]
    times: list[float]
    idle_polls: frozenset[int]
    records: dict[int, int]
    http_requests: list[tuple[float, str, str, int, str, str]]
    http_responses: list[tuple[float, str, int]]
    #: Each time a caller gave up waiting (``rpc.timeout``): (t, the caller's node, its timeout in seconds).
    timeouts: list[tuple[float, str, float]] = field(default_factory=list)
    _by_src: dict[str, list[int]] = field(default_factory=dict)
    _by_id: dict[int, list[int]] = field(default_factory=dict)
    _children: dict[int, list[int]] = field(default_factory=dict)

    def status(self, node: NodeName, t: float) -> str:
        """'up', 'down' or 'paused': the node's state once everything logged up to ``t`` happened."""
        status = "up"
        for when, what in self.life.get(node, ()):
            if when > t:
                break
            status = _AFTER[what]
        return status

    def segments(self, node: NodeName, start: float, end: float) -> list[tuple[float, float, str]]:
        """The node's states over ``[start, end]``: ``(from, to, status)`` pieces in time order."""
        out: list[tuple[float, float, str]] = []
        at, status = start, self.status(node, start)
        for when, what in self.life.get(node, ()):
            if when <= start:
                continue
            if when >= end:
                break
            if _AFTER[what] != status:
                out.append((at, when, status))
                at, status = when, _AFTER[what]
        out.append((at, end, status))
        return out

    def messages_of(self, invoke: Op, completion: Op | None) -> set[int]:
        """Positions (in ``messages``) of the messages one client operation caused, hop by hop.

        The client's own messages between invoke and completion, then every message
        caused by one of those, and so on. A message a node sends is caused by what
        the node was doing at that instant: the message it received at that very
        moment of virtual time (a request it starts serving, or the reply it was
        waiting for), or a timeout of one of its calls; a reply is caused by its
        request. When nothing arrived at that instant (the node slept first) it is
        put down to every request the node was serving then, so a node serving two
        requests at once may lend one operation a few of the other's messages.
        """
        client = _EPOCH_SUFFIX.sub("", invoke.process)
        until = math.inf if completion is None else completion.time
        todo = list(self._sent_by(client, invoke.time, until))
        found: set[int] = set()
        while todo:
            i = todo.pop()
            if i not in found:
                found.add(i)
                todo += self._children.get(i, ())
        return found

    def _sent_by(self, node: str, start: float, end: float) -> list[int]:
        positions = self._by_src.get(node, [])
        sent = [self.messages[i].sent for i in positions]
        return positions[bisect_left(sent, start - 1e-12) : bisect_right(sent, end + 1e-12)]


_AFTER = {"node.crash": "down", "node.restart": "up", "node.pause": "paused", "node.resume": "up"}
def read_run(world: World) -> Run:
    """Read ``world``'s log into a ``Run`` (cached on the world until the log grows).

    The cache lives on the world itself, so it goes when the world goes (a weak-keyed
    table would keep every world alive: its ``Run`` refers back to the world).
    """
    log = world.recorder.log
    cached = world.__dict__.get("_viz_run")
    if cached is not None and cached[0] == len(log) and cached[1] == world.now:
        return cached[2]
    run = _read(world, log)
    world.__dict__["_viz_run"] = (len(log), world.now, run)
    return run


def _read(world: World, log: list[tuple]) -> Run:
    http_label: dict[int, str] = {}
    status: dict[int, Any] = {}
    http_requests: list[tuple[float, str, str, int, str, str]] = []
    http_responses: list[tuple[float, str, int]] = []
    for entry in log:
        kind = entry[1]
        if kind == "http.request":
            t, _, node, caller, msg_id, method, path = entry[:7]
            http_label.setdefault(msg_id, f"{method} {_short_path(path)}")
            http_requests.append((t, node, caller, msg_id, method, path))
        elif kind == "http.response" or kind == "http.response.incomplete":
            status.setdefault(entry[4], entry[5] if kind == "http.response" else f"{entry[5]} cut short")
            http_responses.append((entry[0], entry[2], entry[4]))

    drafts: list[_Draft] = []
    pending: dict[tuple, list[_Draft]] = {}
    life: dict[str, list[tuple[float, str]]] = {}
    delivered_records: dict[tuple[float, str], int] = {}
    records: dict[int, int] = {}
    faults: list[FaultWindow] = []
    open_faults: dict[Any, FaultWindow] = {}
    open_partitions: list[FaultWindow] = []
    fault_starts: list[float] = []
    timeouts: dict[tuple[str, float], list[int]] = {}
    gave_up: dict[tuple[str, float], tuple] = {}
    for entry in log:
        t, kind = entry[0], entry[1]
        if kind in ("net.send", "net.duplicate"):
            src, dst, what, msg_id, delay = entry[2:7]
            draft = _Draft(msg_id, what, src, dst, t, t + delay, duplicate=kind == "net.duplicate")
            drafts.append(draft)
            pending.setdefault((src, dst, what, msg_id), []).append(draft)
            if what == "broker.records" and not draft.duplicate:
                records[msg_id] = delivered_records.pop((t, dst), 0)
        elif kind in ("net.deliver", "net.drop"):
            src, dst, what, msg_id = entry[2:6]
            waiting = pending.get((src, dst, what, msg_id))
            if waiting:
                draft = min(waiting, key=lambda d: d.expected)
                waiting.remove(draft)
            else:  # dropped before it left its sender
                draft = _Draft(msg_id, what, src, dst, t, t, left=False)
                drafts.append(draft)
                if what == "broker.records":
                    records[msg_id] = delivered_records.pop((t, dst), 0)
            draft.ended = t
            draft.fate = "delivered" if kind == "net.deliver" else "dropped"
            if kind == "net.drop":
                draft.reason = str(entry[6]) if len(entry) > 6 else "dropped"
        elif kind == "broker.deliver":
            member = _EPOCH_SUFFIX.sub("", str(entry[3]))
            delivered_records[(t, member)] = delivered_records.get((t, member), 0) + 1
        elif kind == "rpc.timeout":
            timeouts.setdefault((entry[2], t), []).append(entry[3])
            gave_up[(entry[2], t)] = entry
        elif kind in _AFTER:
            life.setdefault(entry[2], []).append((t, kind))
        elif kind == "fault.start":
            index, family, action, label, nodes, peers = (list(entry[2:8]) + [None] * 6)[:6]
            window = FaultWindow(
                label=str(label or action or family), family=str(family or "fault"), action=str(action or ""),
                start=t, nodes=tuple(_names(nodes)), peers=tuple(_names(peers)), index=index,
            )
            open_faults[index] = window
            faults.append(window)
            if window.family == "NetworkChaos" or window.action in ("partition", "isolate"):
                fault_starts.append(t)
        elif kind == "fault.end":
            window = open_faults.pop(entry[2], None)
            if window is not None:
                faults[faults.index(window)] = _ended(window, t)
        elif kind in ("net.partition", "net.isolate"):
            if kind == "net.partition":
                a, b, one_way = entry[2], entry[3], entry[4] if len(entry) > 4 else False
                cut = " -/-> " if one_way else " | "
                label = f"partition {_compact(world, a)}{cut}{_compact(world, b)}"
                window = FaultWindow(label, "network", "partition", t, nodes=tuple(a), peers=tuple(b))
            else:
                window = FaultWindow(f"isolate {_compact(world, entry[2])}", "network", "isolate", t,
                                     nodes=tuple(entry[2]))
            open_partitions.append(window)
            faults.append(window)
        elif kind == "net.heal":
            for window in open_partitions:
                faults[faults.index(window)] = _ended(window, t)
            open_partitions = []

    messages = [
        WireMessage(
            d.msg_id, d.kind, d.src, d.dst, d.sent, d.ended, d.fate, d.reason, d.duplicate, d.left,
            _label(d.kind, d.msg_id, http_label, status, records),
        )
        for d in drafts
    ]
    messages.sort(key=lambda m: m.sent)  # stable: log order within a time
    idle = _idle_polls(messages, records)
    by_src: dict[str, list[int]] = {}
    by_id: dict[int, list[int]] = {}
    for i, m in enumerate(messages):
        by_src.setdefault(m.src, []).append(i)
        by_id.setdefault(m.msg_id, []).append(i)
    # A fault injector's partition also shows as net.partition entries at its start: keep its own window.
    faults = [w for w in faults if w.index is not None or not any(abs(s - w.start) < 1e-9 for s in fault_starts)]
    faults.sort(key=lambda w: (w.start, -1 if w.index is None else w.index))
    children = _causes(messages, by_id, timeouts)
    return Run(
        world=world, end=world.now, messages=messages, faults=faults, life=life, order=node_order(world),
        times=[entry[0] for entry in log], idle_polls=idle, records=records,
        http_requests=http_requests, http_responses=http_responses,
        timeouts=sorted((t, node, float(entry[4]) if len(entry) > 4 else 0.0) for (node, t), entry in gave_up.items()),
        _by_src=by_src, _by_id=by_id,
        _children=children,
    )


def _causes(
    messages: list[WireMessage], by_id: Mapping[int, list[int]], timeouts: Mapping[tuple[str, float], list[int]]
) -> dict[int, list[int]]:
    """For each message, the messages it caused (see ``Run.messages_of``), by position."""
    arrivals: dict[tuple[str, float], list[int]] = {}
    serving: dict[str, list[tuple[float, float, int]]] = {}  # node -> (from, replied at, request)
    for i, m in enumerate(messages):
        if m.fate == "delivered" and m.ended is not None:
            arrivals.setdefault((m.dst, m.ended), []).append(i)
            if m.kind in REPLY_OF:
                replied = [messages[j].sent for j in by_id.get(m.msg_id, ())
                           if messages[j].kind == REPLY_OF[m.kind] and messages[j].src == m.dst
                           and messages[j].sent >= m.ended]
                serving.setdefault(m.dst, []).append((m.ended, min(replied, default=math.inf), i))

    def request_of(reply: WireMessage) -> list[int]:
        return [j for j in by_id.get(reply.msg_id, ()) if messages[j].kind == REQUEST_OF.get(reply.kind)
                and messages[j].src == reply.dst and messages[j].dst == reply.src]

    parents: dict[int, list[int]] = {}
    for i, m in enumerate(messages):
        if m.is_reply:
            causes = request_of(m)
        else:
            causes = []
            for j in arrivals.get((m.src, m.sent), ()):
                arrived = messages[j]
                # a request starts its handler; a reply resumes whoever made the call
                causes += parents.get(request_of(arrived)[0], []) if arrived.is_reply and request_of(arrived) else [j]
            for msg_id in timeouts.get((m.src, m.sent), ()):
                calls = [j for j in by_id.get(msg_id, ()) if messages[j].src == m.src and not messages[j].is_reply]
                causes += [p for j in calls[:1] for p in parents.get(j, [])]
            if not causes and not arrivals.get((m.src, m.sent)):
                causes = [j for start, replied, j in serving.get(m.src, ()) if start <= m.sent <= replied]
        parents[i] = causes
    children: dict[int, list[int]] = {}
    for i, causes in parents.items():
        for j in dict.fromkeys(causes):
            children.setdefault(j, []).append(i)
    return children


def _ended(window: FaultWindow, t: float) -> FaultWindow:
    return FaultWindow(window.label, window.family, window.action, window.start, t, window.nodes, window.peers,
                       window.index)


def _names(value: Any) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return (str(v) for v in value)


def _short_path(path: str, limit: int = 22) -> str:
    return path if len(path) <= limit else path[: limit - 1] + "…"


def _label(kind: str, msg_id: int, http_label: Mapping[int, str], status: Mapping[int, Any],
           records: Mapping[int, int]) -> str:
    if kind == "http":
        return http_label.get(msg_id, "request")
    if kind == "http.reply":
        return str(status.get(msg_id, "reply"))
    if kind == "broker.records":
        n = records.get(msg_id, 0)
        return "no records" if n == 0 else f"{n} record{'s' if n > 1 else ''}"
    if kind == "db.reply":
        return ""
    return _SHORT.get(kind, kind)


def _idle_polls(messages: list[WireMessage], records: Mapping[int, int]) -> frozenset[int]:
    """Msg ids of polls that went and came back with nothing, as planned: a consumer's idle heartbeat."""
    polls: dict[int, list[WireMessage]] = {}
    for m in messages:
        if m.kind in ("broker.poll", "broker.records"):
            polls.setdefault(m.msg_id, []).append(m)
    return frozenset(
        msg_id for msg_id, pair in polls.items()
        if records.get(msg_id, 0) == 0 and all(m.fate == "delivered" and not m.duplicate for m in pair)
        and len(pair) == 2
    )


def _compact(world: World, names: Iterable[str]) -> str:
    """Node names, with a whole service's replicas said as the service's name."""
    names = list(names)
    out: list[str] = []
    for service_name, service in world.services.items():
        replicas = [i.name for i in service.instances]
        if len(replicas) > 1 and set(replicas) <= set(names):
            out.append(service_name)
            names = [n for n in names if n not in replicas]
    return ",".join(out + names) or "-"


def node_order(world: World, names: Iterable[str] | None = None) -> list[NodeName]:
    """Node names in reading order: clients, service replicas, databases, the broker (or as ``names`` says).

    ``names`` may name services, meaning all their replicas.

    Raises:
        UnknownNameError: a name that is no node or service of the world.
    """
    if names is not None:
        out: list[NodeName] = []
        for name in names:
            service = world.services.get(name)
            for node in service.instances if service is not None else [world.node(name)]:
                if node.name not in out:
                    out.append(node.name)
        return out
    replicas = [i.name for s in world.services.values() for i in s.instances]
    rank = {name: n for n, name in enumerate(replicas)}

    def key(item: tuple[int, str]) -> tuple[int, int, int]:
        position, name = item
        role = _ROLE_ORDER.get(getattr(world.nodes[name], "kind", ""), 3)
        return (role, rank.get(name, 0), position)

    return [name for _, name in sorted(enumerate(world.nodes), key=key)]
