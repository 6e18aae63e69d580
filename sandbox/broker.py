"""A Kafka-like broker: topics, partitions, keyed messages, consumer groups, committed offsets.

The broker is a node of its own (``kafka``). A service publishes with the producer
dependency; a message goes to the partition of its key (Kafka's own murmur2
partitioner), and is durable once acknowledged::

    @app.post("/orders")
    async def place(order: Order, producer: sandbox.Producer = Depends(sandbox.producer)):
        await producer.send("orders", order.model_dump(mode="json"), key=order.id)

A service consumes by declaring a consumer on its app; every replica joins the
group, the group's partitions are shared among the live replicas, and each message
is handed to the handler, which FastAPI calls like an endpoint (so it can use
``Depends``)::

    @sandbox.consumer(app, "orders", group="payments")
    async def on_order(message: sandbox.Message, db: sandbox.Database = Depends(sandbox.database("payments-db"))):
        ...

Delivery is at least once: the consumer commits a message's offset only after
its handler returned; a handler that raises, a replica that crashes before the
commit, or a rebalance hands the same message out again. Handlers must therefore
be idempotent, which is the point. A consumer declared with ``commit="before"``
commits each offset before its handler runs instead: at most once, so a handler
that raises, or a crash while it runs, loses that message.

As Kafka's auto-commit does every ``auto.commit.interval.ms``, a consumer whose
read position is ahead of the group's committed offset (its commit was lost on
the way) commits the position again every ``auto_commit_interval`` seconds, when
it next polls; a consumer that has nothing new to commit sends nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel
from simpy.events import Timeout

from ._runtime import Task, sleep
from ._vtime import due
from .errors import (
    DuplicateNameError,
    InvalidParameterError,
    SimulatedFailure,
    UnknownNameError,
)
from .http import check_timeout
from .nodes import Node
from .services import Instance, check_name
from .storage import plain

if TYPE_CHECKING:
    from .world import World

BROKER_NODE = "kafka"
DEFAULT_PARTITIONS = 3


#: How long a consumer waits for the answer to one poll before it polls again.
POLL_TIMEOUT = 2.0
#: How long a consumer waits for the answer to one commit.
COMMIT_TIMEOUT = 2.0
#: When a consumer commits a message's offset: after its handler returned (at least once), or before it runs
#: (at most once).
CommitMode = Literal["after", "before"]
COMMIT_MODES: tuple[str, ...] = get_args(CommitMode)

#: How a commit ended, as the committing consumer learns it: the broker took it; refused it (the
#: partition is no longer the member's); lost it, and the member's session with it (a Redelivery
#: fault: the group rebalances; Kafka's commitSync raises CommitFailedException); or no answer came.
CommitOutcome = Literal["committed", "refused", "lost", "unknown"]


class Message(BaseModel):
    """One message as a consumer handler receives it.

    ``value`` is what the producer sent (JSON-like: usually a dict), ``key`` its key,
    ``headers`` its headers (``message.headers.get("traceparent")``, an id the producer set
    for deduplication...), and ``topic`` / ``partition`` / ``offset`` where it sits in the
    log: a message delivered again has the same three.

    Example::

        @sandbox.consumer(app, "payment-requested", group="payments")
        async def on_payment_requested(message: sandbox.Message) -> dict:
            payment_id = message.headers.get("payment-id") or message.value["payment_id"]
            ...
    """

    topic: str
    partition: int
    offset: int
    key: str | None = None
    value: Any = None
    headers: dict[str, str] = {}
    #: When the producer sent it, by the producer's clock (Unix seconds; Kafka's CreateTime).
    timestamp: float = 0.0


@dataclass(frozen=True)
class RecordMetadata:
    """Where an acknowledged message was written."""

    topic: str
    partition: int
    offset: int


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the default partitioner's), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] & 0xFF) + ((data[i4 + 1] & 0xFF) << 8) + ((data[i4 + 2] & 0xFF) << 16) + ((data[i4 + 3] & 0xFF) << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    index = length & ~3
    if extra == 3:
        h ^= (data[index + 2] & 0xFF) << 16
    if extra >= 2:
        h ^= (data[index + 1] & 0xFF) << 8
    if extra >= 1:
        h ^= data[index] & 0xFF
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class _Record:
    offset: int
    key: str | None
    value: Any
    headers: dict[str, str]
    timestamp: float


@dataclass
class _Group:
    name: str
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    members: dict[str, dict[str, float]] = field(default_factory=dict)  # topic -> member id -> last poll time
    owners: dict[tuple[str, int], str] = field(default_factory=dict)
    generation: int = 0


class _Waiter:
    """A held poll: answered once, by a new record for its member or by its max_wait, whichever comes first."""

    __slots__ = ("answer", "done")

    def __init__(self, answer: Callable[[], None]) -> None:
        self.answer = answer
        self.done = False

    def fire(self) -> None:
        if not self.done:
            self.done = True
            self.answer()


#: Held polls, by topic, then group, then member (insertion-ordered dicts: woken in the order they came).
_Held = dict[str, dict[str, dict[str, list[_Waiter]]]]


@dataclass(frozen=True)
class Subscription:
    """A consumer declared on an app: topic, group, the hidden route of its handler, and its options
    (see ``consumer``)."""

    topic: str
    group: str
    path: str
    poll_interval: float
    max_records: int
    retry_backoff: float
    max_wait: float = 0.5
    commit: CommitMode = "after"
    auto_commit_interval: float = 5.0


class Broker(Node):
    """The broker node: the log of every topic, and every consumer group's offsets."""

    kind = "broker"

    def __init__(self, world: World, *, latency: float = 0.0005, session_timeout: float = 3.0) -> None:
        if BROKER_NODE in world.nodes or BROKER_NODE in world.services:
            raise InvalidParameterError(f"the broker's node name {BROKER_NODE!r} is taken by another node")
        super().__init__(world, BROKER_NODE)
        world.nodes[BROKER_NODE] = self
        self.latency = latency
        self.session_timeout = session_timeout
        self._topics: dict[str, list[list[_Record]]] = {}
        self._groups: dict[str, _Group] = {}
        self._rr: dict[str, int] = {}
        self._seen: set[tuple[str, int, int]] = set()
        self._waiting: _Held = {}  # polls held until a partition of their member gets a record
        self._rng = world.streams["broker"]
        #: Redelivery faults in force: (groups, probability, counter) each (see sandbox.faults).
        self.commit_faults: list[Any] = []
        world.record("broker.start", BROKER_NODE)

    # --- administration and inspection ----------------------------------------------

    def create_topic(self, name: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        """Create topic ``name`` with ``partitions`` partitions (send() also creates topics)."""
        check_topic(name)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise InvalidParameterError(f"partitions={partitions!r} for topic {name!r}: use a whole number >= 1")
        if name in self._topics:
            raise DuplicateNameError(
                f"topic {name!r} already exists with {len(self._topics[name])} partitions; pick another name"
            )
        self._topics[name] = [[] for _ in range(partitions)]
        self.world.record("broker.topic", name, partitions)

    def topics(self) -> list[str]:
        """The names of every topic, sorted."""
        return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has."""
        return len(self._topic(topic))

    def groups(self) -> list[str]:
        """The names of every consumer group that has polled, sorted."""
        return sorted(self._groups)

    def messages(self, topic: str) -> list[Message]:
        """Every message of ``topic``, partition by partition, in offset order."""
        parts = self._topic(topic)
        return [
            Message(topic=topic, partition=p, offset=r.offset, key=r.key, value=plain(r.value), headers=dict(r.headers), timestamp=r.timestamp)
            for p, records in enumerate(parts)
            for r in records
        ]

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        """The committed offsets of ``group``: ``{(topic, partition): next offset to read}``."""
        g = self._groups.get(group)
        return dict(sorted(g.committed.items())) if g else {}

    def lag(self, group: str, topic: str) -> int:
        """How many messages of ``topic`` the group has not committed yet."""
        g = self._groups.get(group)
        parts = self._topic(topic)
        return sum(len(records) - (g.committed.get((topic, p), 0) if g else 0) for p, records in enumerate(parts))

    def lags(self) -> dict[tuple[str, str, int], int]:
        """Every consumer group's lag on each partition of the topics it reads, by (group, topic, partition)."""
        out = {}
        for group, g in sorted(self._groups.items()):
            for topic in sorted({*g.members, *(t for t, _p in g.committed)}):
                for p, records in enumerate(self._topics.get(topic, ())):
                    out[(group, topic, p)] = len(records) - g.committed.get((topic, p), 0)
        return out

    def rebalance(self, group: str) -> None:
        """Force a rebalance: every partition is handed out again from its committed offset."""
        g = self._groups.get(group)
        if g is None:
            raise UnknownNameError(f"no consumer group {group!r}; groups: {sorted(self._groups)}")
        g.owners.clear()
        g.generation += 1
        self.world.record("broker.rebalance", group, g.generation)

    def _topic(self, topic: str) -> list[list[_Record]]:
        parts = self._topics.get(topic)
        if parts is None:
            raise UnknownNameError(f"no topic {topic!r}; topics: {sorted(self._topics)}")
        return parts

    # --- node life ----------------------------------------------------------------

    def on_crash(self) -> None:
        self._waiting.clear()  # held polls die with the broker; their consumers time out and poll again
        for g in self._groups.values():  # the log and the committed offsets are durable
            g.members.clear()
            g.owners.clear()
            g.generation += 1

    def instance_ready(self, instance: Instance) -> None:
        subscriptions = getattr(getattr(instance.app, "state", None), "chaos_dojo_consumers", None)
        for sub in subscriptions or ():
            instance.spawn(_consume(instance, sub), f"consumer {sub.group}/{sub.topic}", _consumer_stopped(instance, sub))

    def node_crashed(self, node: Node) -> None:
        """A member that crashed stops polling; the session timeout removes it."""

    # --- requests ------------------------------------------------------------------

    def _later(self, fn: Callable[[], None]) -> None:
        epoch = self.epoch

        def run(_event: Any) -> None:
            if self.alive and self.epoch == epoch:
                self.when_running(fn)

        Timeout(self.env, self.latency).callbacks.append(run)

    def _first_time(self, caller: Node, caller_epoch: int, msg_id: int) -> bool:
        """False for a duplicate of a request already received: clients talk to the broker over
        TCP, which delivers each request once (the network's duplication is for HTTP)."""
        key = (caller.name, caller_epoch, msg_id)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def handle_produce(self, caller: Node, caller_epoch: int, msg_id: int, request: tuple) -> None:
        if not self._first_time(caller, caller_epoch, msg_id):
            return
        def append() -> None:
            topic, key, value, headers, timestamp = request
            parts = self._topics.get(topic)
            if parts is None:
                self.create_topic(topic)
                parts = self._topics[topic]
            if key is not None:
                p = partition_for(key, len(parts))
            else:
                p = self._rr.get(topic, 0) % len(parts)
                self._rr[topic] = p + 1
            offset = len(parts[p])
            parts[p].append(_Record(offset, key, value, headers, timestamp))
            self.world.record("broker.append", topic, p, offset, key)
            self.reply(caller, caller_epoch, msg_id, RecordMetadata(topic, p, offset), "broker.ack")
            self._wake(topic, p)

        self._later(append)

    def handle_poll(self, caller: Node, caller_epoch: int, msg_id: int, request: tuple) -> None:
        if not self._first_time(caller, caller_epoch, msg_id):
            return
        self._later(lambda: self._poll(caller, caller_epoch, msg_id, request, held=False))

    def _poll(self, caller: Node, caller_epoch: int, msg_id: int, request: tuple, *, held: bool) -> None:
        group_name, member, topic, max_records, positions, max_wait = request
        g = self._groups.get(group_name)
        if g is None:
            g = self._groups[group_name] = _Group(group_name)
        g.members.setdefault(topic, {})[member] = self.env.now
        self._assign(g, topic)
        wanted = dict(positions)
        assigned: list[tuple[int, int]] = []
        batch: list[tuple[int, _Record]] = []
        for p, records in enumerate(self._topics.get(topic, [])):
            if g.owners.get((topic, p)) != member:
                continue
            committed = g.committed.get((topic, p), 0)
            assigned.append((p, committed))
            # As in Kafka, the consumer says where to read from: a lost reply loses nothing.
            start = wanted.get(p, committed)
            batch.extend((p, r) for r in records[start : start + max_records])
        if not batch and max_wait and not held:
            # Long polling (Kafka's fetch.max.wait.ms): hold an empty poll until the topic gets
            # a record or max_wait passes, instead of answering "nothing" at once.
            self._hold(topic, group_name, member, max_wait,
                       lambda: self._poll(caller, caller_epoch, msg_id, request, held=True))
            return
        for p, r in batch:
            self.world.record("broker.deliver", group_name, member, topic, p, r.offset)
        self.reply(caller, caller_epoch, msg_id, (g.generation, tuple(assigned), batch), "broker.records")

    def _hold(self, topic: str, group: str, member: str, max_wait: float, answer: Callable[[], None]) -> None:
        epoch = self.epoch
        waiter = _Waiter(answer)
        self._waiting.setdefault(topic, {}).setdefault(group, {}).setdefault(member, []).append(waiter)

        def expire(_event: Any) -> None:
            if self.alive and self.epoch == epoch:
                self.when_running(lambda: self._expire(topic, group, member, waiter))

        Timeout(self.env, max_wait).callbacks.append(expire)

    def _expire(self, topic: str, group: str, member: str, waiter: _Waiter) -> None:
        """A held poll's max_wait passed: forget it (an idle member's polls must not pile up), then answer it."""
        groups = self._waiting.get(topic, {})
        members = groups.get(group, {})
        held = members.get(member, [])
        if waiter in held:
            held.remove(waiter)
            if not held:
                del members[member]
                if not members:
                    del groups[group]
                    if not groups:
                        del self._waiting[topic]
        waiter.fire()

    def _wake(self, topic: str, partition: int) -> None:
        """Answer the held polls that can take a record just appended to ``partition``.

        In each group that holds polls on ``topic``, that is the polls of the partition's owner,
        and of no other member (their answer would be empty). If the partition has no live owner
        (a member left or the group was told to rebalance), every held poll of that group is
        answered, so that the group reassigns the partition at once rather than after max_wait.
        """
        groups = self._waiting.get(topic)
        if not groups:
            return
        woken: list[_Waiter] = []
        for group_name in list(groups):
            members = groups[group_name]
            g = self._groups.get(group_name)
            owner = g.owners.get((topic, partition)) if g is not None else None
            seen = g.members.get(topic, {}).get(owner) if g is not None and owner is not None else None
            if seen is not None and not due(self.env.now, seen + self.session_timeout):
                woken.extend(members.pop(owner, ()))  # busy (no held poll): it reads the record when it polls next
            else:
                for held in members.values():
                    woken.extend(held)
                members.clear()
            if not members:
                del groups[group_name]
        if not groups:
            del self._waiting[topic]
        for waiter in woken:
            waiter.fire()

    def _assign(self, g: _Group, topic: str) -> None:
        now = self.env.now
        members = g.members.get(topic, {})
        live = sorted(m for m, seen in members.items() if not due(now, seen + self.session_timeout))
        for m in [m for m in members if m not in live]:
            del members[m]
        if not live:
            return
        for p in range(len(self._topics.get(topic, []))):
            owner = live[p % len(live)]
            key = (topic, p)
            if g.owners.get(key) != owner:
                if key in g.owners:
                    g.generation += 1
                    self.world.record("broker.rebalance", g.name, g.generation)
                g.owners[key] = owner

    def handle_commit(self, caller: Node, caller_epoch: int, msg_id: int, request: tuple) -> None:
        if not self._first_time(caller, caller_epoch, msg_id):
            return
        def commit() -> None:
            group_name, member, topic, p, offset = request
            g = self._groups.get(group_name)
            ok = g is not None and g.owners.get((topic, p)) == member
            for fault in self.commit_faults:
                if ok and group_name in fault.groups and self._rng.random() < fault.probability:
                    # The commit is lost and the member's session with it: the group rebalances and
                    # reads again from the last commit that did land.
                    fault.fired += 1
                    self.world.record("broker.commit_lost", group_name, member, topic, p, offset)
                    self.rebalance(group_name)
                    self.reply(caller, caller_epoch, msg_id, "lost", "broker.commit_ack")
                    return
            if ok:
                key = (topic, p)
                if offset > g.committed.get(key, 0):
                    g.committed[key] = offset
                self.world.record("broker.commit", group_name, topic, p, offset)
            else:
                self.world.record("broker.commit_rejected", group_name, member, topic, p, offset)
            self.reply(caller, caller_epoch, msg_id, "committed" if ok else "refused", "broker.commit_ack")

        self._later(commit)


# --- producing ---------------------------------------------------------------------


_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def check_topic(topic: Any) -> str:
    """Return ``topic`` if Kafka would accept it as a topic name, else raise InvalidParameterError."""
    if not isinstance(topic, str) or not _TOPIC.match(topic) or topic in (".", ".."):
        raise InvalidParameterError(
            f"topic={topic!r}: a topic name is 1 to 249 of the characters a-z A-Z 0-9 . _ - (as in Kafka), "
            f"e.g. 'order-placed' or 'orders.v1'"
        )
    return topic


def _check_send(topic: Any, key: Any, headers: Any) -> dict[str, str]:
    check_topic(topic)
    if key is not None and not isinstance(key, str):
        raise InvalidParameterError(f"key={key!r}: message keys are str (or None for round-robin)")
    if headers is not None and not isinstance(headers, dict):
        raise InvalidParameterError(f"headers={headers!r}: message headers are a dict of str -> str")
    out: dict[str, str] = {}
    for k, v in (headers or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidParameterError(f"header {k!r}: {v!r}: message headers are str -> str")
        try:
            k.encode("latin-1"), v.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidParameterError(
                f"header {k!r}: {v!r}: header names and values must be latin-1 text (as HTTP headers are); "
                f"percent-encode or base64 anything else"
            ) from None
        out[k] = v
    return out


class Producer:
    """Publishes messages to the broker from one node; ``send`` waits for the acknowledgement."""

    def __init__(self, node: Node) -> None:
        self._node = node

    async def send(
        self,
        topic: str,
        value: Any,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = 5.0,
    ) -> RecordMetadata:
        """Append ``value`` (plain JSON data) to ``topic``; return where it was written.

        Raises:
            RequestTimeout: no acknowledgement within ``timeout`` (it may have been written).
        """
        hdrs = _check_send(topic, key, headers)
        timeout = check_timeout(timeout)
        node = self._node
        broker = node.world.broker
        request = (topic, key, plain(value), hdrs, node.clock.time())
        sent = node.call(broker, broker.handle_produce, request, "broker.produce", timeout, f"produce to {topic}")
        tracing = node.world.tracing
        if tracing is None:
            return await sent
        return await tracing.within(tracing.producer_span(node, topic), sent)


class LocalProducer:
    """The producer outside a World (FastAPI's TestClient): keeps what was sent in a list."""

    def __init__(self, sent: list[dict[str, Any]]) -> None:
        self.sent = sent

    async def send(self, topic: str, value: Any, *, key: str | None = None, headers: dict[str, str] | None = None, timeout: float | None = 5.0) -> RecordMetadata:
        hdrs = _check_send(topic, key, headers)
        check_timeout(timeout)
        offset = sum(1 for m in self.sent if m["topic"] == topic)
        self.sent.append({"topic": topic, "key": key, "value": plain(value), "headers": hdrs})
        return RecordMetadata(topic, 0, offset)


# --- consuming ---------------------------------------------------------------------


def consumer(
    app: Any,
    topic: str,
    *,
    group: str,
    poll_interval: float = 0.05,
    max_records: int = 10,
    retry_backoff: float = 0.1,
    max_wait: float = 0.5,
    commit: CommitMode = "after",
    auto_commit_interval: float = 5.0,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a consumer of ``topic`` in consumer group ``group`` on a FastAPI app.

    The decorated ``async def handler(message: sandbox.Message, ...)`` runs once per
    delivered message. It may use ``Depends`` like an endpoint.

    ``commit`` says when a message's offset is committed, and so which delivery you get:

    * ``"after"`` (the default): once the handler returned. At least once: a handler that
      raises leaves the message uncommitted, and it is delivered again after
      ``retry_backoff`` seconds; a crash or a rebalance before the commit redelivers it too.
    * ``"before"``: before the handler runs (it runs only once the broker acknowledged the
      commit). At most once: a handler that raises, or a replica that crashes while it
      runs, loses that message; nothing is delivered twice.

    A commit can be lost on the way (the broker unreachable, the answer late). As Kafka's
    auto-commit (``auto.commit.interval.ms``), the consumer then commits its read position
    again at its next poll once ``auto_commit_interval`` seconds have passed since its last
    commit, so the group's lag returns to 0 without a restart. It sends such a commit only
    while its position is ahead of the group's committed offset.

    Polls are long polls, as Kafka's (``fetch.max.wait.ms``): the broker holds a poll
    that finds nothing for up to ``max_wait`` seconds and answers as soon as a record
    arrives in one of its partitions (0: answer at once, and poll again every
    ``poll_interval`` seconds). After a failed poll (the broker is down or unreachable)
    the consumer waits ``poll_interval``.

    Example::

        @sandbox.consumer(app, "payment-requested", group="payments", commit="before")
        async def on_payment_requested(message: sandbox.Message) -> None:
            ...   # a crash here loses the message: it is never charged twice, and maybe never

    Raises:
        InvalidParameterError: a bad group or topic name, or an option out of range (shown with its value).
    """
    check_name(group, "consumer group")
    check_topic(topic)
    if commit not in COMMIT_MODES:
        raise InvalidParameterError(
            f"commit={commit!r}: use 'after' (commit once the handler returned: at least once, the default) or "
            f"'before' (commit, then run the handler: at most once)"
        )
    for name, value in (
        ("poll_interval", poll_interval), ("retry_backoff", retry_backoff), ("auto_commit_interval", auto_commit_interval)
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InvalidParameterError(f"{name}={value!r}: use a number of seconds > 0, e.g. 5.0")
    if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
        raise InvalidParameterError(f"max_records={max_records!r}: use a whole number >= 1")
    if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or not 0 <= max_wait <= POLL_TIMEOUT / 2:
        raise InvalidParameterError(
            f"max_wait={max_wait!r}: use a number of seconds from 0 to {POLL_TIMEOUT / 2:g} (the broker holds an empty "
            f"poll that long; the consumer gives up on a poll after {POLL_TIMEOUT:g} s)"
        )

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        path = f"/_chaos_dojo/consumers/{group}/{topic}"
        app.post(path, include_in_schema=False)(handler)
        subs = getattr(app.state, "chaos_dojo_consumers", None)
        if subs is None:
            subs = app.state.chaos_dojo_consumers = []
        subs.append(Subscription(topic, group, path, float(poll_interval), max_records, float(retry_backoff),
                                 float(max_wait), commit, float(auto_commit_interval)))
        return handler

    return register


class HandlerFailed(Exception):
    """A consumer handler answered with an error status (recorded in ``world.errors``)."""


def _consumer_stopped(instance: Instance, sub: Subscription) -> Callable[[Task], None]:
    def stopped(task: Task) -> None:
        if task.error is not None:
            instance.world.record_error(instance, f"consumer {sub.group}/{sub.topic}", task.error)

    return stopped


async def _consume(instance: Instance, sub: Subscription) -> None:
    """One replica's consumer loop: poll, hand each message to the handler, commit.

    The loop keeps its own read position per assigned partition (as a Kafka consumer
    does) and sends it with every poll, so a lost or late reply loses no message. A
    newly assigned partition starts at the group's committed offset; a message whose
    handler fails is read again after ``retry_backoff`` (with ``commit="after"``).
    Every poll's answer also says the group's committed offsets, so the loop knows
    when a commit of its was lost, and commits its position again (see ``consumer``).
    """
    world = instance.world
    broker = world.broker
    env = world.env
    member = f"{instance.name}#{instance.epoch}"
    positions: dict[int, int] = {}
    generation = -1
    last_commit = env.now
    while True:
        request = (sub.group, member, sub.topic, sub.max_records, tuple(sorted(positions.items())), sub.max_wait)
        try:
            polled_generation, assigned, batch = await instance.call(
                broker, broker.handle_poll, request, "broker.poll", POLL_TIMEOUT, "poll"
            )
        except SimulatedFailure:
            await sleep(sub.poll_interval)
            continue
        if polled_generation != generation:
            # A rebalance (as Kafka's eager protocol does): every assigned partition starts
            # again from the group's committed offset, so what was handled but not yet
            # committed is delivered again.
            generation = polled_generation
            positions = {p: committed for p, committed in assigned}
        else:
            positions = {p: positions.get(p, committed) for p, committed in assigned}
        behind = [(p, positions[p]) for p, committed in assigned if positions[p] > committed]
        if behind and due(env.now, last_commit + sub.auto_commit_interval):
            # A commit of ours was lost: the group would hand these messages out again. Commit again.
            last_commit = env.now
            for p, position in behind:
                if await _commit(instance, sub, member, p, position) == "refused":
                    positions.pop(p, None)
        if not batch:
            if not sub.max_wait:  # a long poll already waited at the broker
                await sleep(sub.poll_interval)
            continue
        failed = False
        for p, record in batch:
            if positions.get(p) != record.offset:
                continue  # revoked meanwhile, or an earlier message of this partition failed
            message = Message(
                topic=sub.topic, partition=p, offset=record.offset, key=record.key,
                value=plain(record.value), headers=dict(record.headers), timestamp=record.timestamp,
            )
            if sub.commit == "before":
                # As commitSync before processing: the handler runs only once the broker confirmed the commit.
                last_commit = env.now
                outcome = await _commit(instance, sub, member, p, record.offset + 1)
                if outcome == "refused":
                    positions.pop(p, None)  # no longer ours: its new owner reads from the committed offset
                if outcome != "committed":
                    continue  # not handled; whoever reads it next commits it first again
                positions[p] = record.offset + 1
                await _handle_safely(instance, sub, message)  # failed or not, the message is done with
                continue
            if not await _handle_safely(instance, sub, message):
                # The position stays at this message: the rest of the partition's batch is
                # skipped, and the next poll reads from here again.
                failed = True
                continue
            positions[p] = record.offset + 1
            last_commit = env.now
            # As with Kafka's auto-commit, a commit that was lost or got no answer is not retried at
            # once: the next poll shows whether it landed, and the position is committed again if not.
            if await _commit(instance, sub, member, p, record.offset + 1) == "refused":
                positions.pop(p, None)  # no longer ours: its new owner reads from the committed offset
        if failed:
            await sleep(sub.retry_backoff)


async def _commit(instance: Instance, sub: Subscription, member: str, partition: int, offset: int) -> CommitOutcome:
    """Commit ``offset`` (the next one to read) of ``partition`` for ``member``; say how it ended."""
    broker = instance.world.broker
    try:
        return await instance.call(
            broker, broker.handle_commit, (sub.group, member, sub.topic, partition, offset), "broker.commit",
            COMMIT_TIMEOUT, "commit",
        )
    except SimulatedFailure:
        return "unknown"


async def _handle_safely(instance: Instance, sub: Subscription, message: Message) -> bool:
    """``_handle``, with whatever escapes it recorded in ``world.errors``: one message never ends the loop."""
    try:
        return await _handle(instance, sub, message)
    except Exception as exc:  # noqa: BLE001 - one message never ends the loop
        instance.world.record_error(instance, f"consumer {sub.group}/{sub.topic} offset {message.offset}", exc)
        return False


async def _handle(instance: Instance, sub: Subscription, message: Message) -> bool:
    """Call the handler through the app (in-process, like a framework would); True if it succeeded."""
    body = json.dumps(message.model_dump(mode="json")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in message.headers.items()]
    status = 0
    answer = b""
    world = instance.world

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(event: dict[str, Any]) -> None:
        nonlocal status, answer
        if event["type"] == "http.response.start":
            status = event["status"]
        elif event["type"] == "http.response.body":
            answer += event.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": sub.path, "raw_path": sub.path.encode(), "root_path": "",
        "query_string": b"", "headers": headers, "server": (instance.name, 80), "client": (BROKER_NODE, 9092),
        "state": dict(instance._state),
    }
    tracing = world.tracing
    span = tracing.consumer_span(instance, message) if tracing is not None else None
    world.record("consumer.handle", instance.name, sub.group, message.topic, message.partition, message.offset)
    error: BaseException | None = None
    try:
        await instance.app(scope, receive, send)
    except Exception as exc:  # the handler raised: the message stays uncommitted
        error = exc
        world.record_error(instance, f"consumer {sub.group}/{sub.topic} offset {message.offset}", exc)
    ok = error is None and 200 <= status < 300
    if span is not None:
        tracing.end_consumer_span(span, ok, error)
    if not ok:
        world.record("consumer.failed", instance.name, sub.group, message.topic, message.partition, message.offset, status)
        if error is None:  # the handler answered with an error status: say so, or redelivery looks silent
            world.record_error(
                instance,
                f"consumer {sub.group}/{sub.topic} offset {message.offset}",
                HandlerFailed(f"the handler answered {status}: {answer[:300].decode('utf-8', 'replace')}; the message "
                               f"stays uncommitted and is delivered again"),
            )
    return ok

