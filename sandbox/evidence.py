"""Evidence: a finished run as plain data, and that data read back as a world.

A grader that runs learner code in a locked-down process cannot let that process judge
itself: the checkers run in the grader, on what the run left behind. ``snapshot(world)``
writes down everything that the checkers, the labs' invariants, counterexamples and
pictures read from a finished ``World``, as plain JSON data; ``Evidence.from_snapshot``
(or ``Evidence.from_json``) checks that data, which it does not trust, and gives back an
object that answers those readers as the world did: the same verdicts, the same
counterexample text, the same pictures, the same fingerprint. It is like the black box of
an aircraft: the flight is over, and everything the inquiry needs is in it::

    data = snapshot(world)                      # in the process that ran the world
    text = json.dumps(data)                     # ... handed over as text ...
    evidence = Evidence.from_json(text)         # in the grader
    check(evidence, lab.invariants())           # the verdicts check(world, ...) gives

What a snapshot holds: the seed and the virtual time; every node (kind, alive, paused,
epoch; a replica's service and readiness, a client's ``done``, a database's tables, a
replica's disk); the event log; the history; the domain events, assertions and service
errors; the broker's topics, messages and committed offsets; the fault schedule and its
windows; and the OpenTelemetry spans, rebuilt as the SDK's own ``ReadableSpan`` (context,
parent, kind, attributes, events, links, status, times, resource, scope), with the spans
still open in any tracker of open spans that lab code hung on ``world.tracing`` (an object
with an ``open`` dict of spans, as lab 04's). A database's versions are not kept as such:
each is in the log's ``db.write`` entries. A span's counts of dropped attributes are not kept.

What it does not hold is code: no factory, app or task. ``evidence.services[name].factory``
raises ``ConfigError``; a reader that needs something of the code (lab 01's declared
``PRIMARY``) takes it from the grader's side (``lab.invariants(choice, primary=...)``).

The format (``FORMAT``) is JSON through and through, and its meaning does not depend on
the order of keys in an object (``json.dumps(data, sort_keys=True)`` keeps it whole):
whatever has an order is a list. A value of the run (a row, a message, a history value, a
log field, an attribute) is JSON as it is, except three tagged forms: a tuple is
``{"tuple": [...]}``, a dict is ``{"dict": [[key, value], ...]}`` (in its order, keys of
any kind), and a float JSON cannot write is ``{"float": "inf"}`` (or ``"-inf"``, ``"nan"``).
The same run gives the same snapshot, byte for byte.

Untrusted input: ``from_snapshot`` checks every type and shape and refuses the first bad
one with ``InvalidParameterError``, naming where it is and showing it
(``snapshot['log'][3][0]='soon': ...``). Limits: ``MAX_JSON_BYTES`` of JSON text,
``MAX_ITEMS`` items in any one list (log entries, spans, rows...), values nested at most
``MAX_DEPTH`` deep. Nothing is unpickled or evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceState

from ._lookups import Lookups
from .broker import BROKER_NODE, Message
from .errors import (
    ConfigError,
    InvalidParameterError,
    SandboxError,
    UnknownNameError,
)
from .events import Assertion, Event
from .history import OP_TYPES, History
from .recorder import Recorder
from .services import ServiceError
from .storage import Key, plain
from .tracing import Tracing

if TYPE_CHECKING:
    from .faults import Schedule
    from .faults.injector import FaultWindow
    from .world import World

__all__ = [
    "snapshot",
    "schedule_data",
    "schedule_from_data",
    "Evidence",
    "RecordedNode",
    "RecordedService",
    "RecordedStore",
    "RecordedBroker",
    "RecordedChaos",
    "RecordedTracing",
    "OpenSpans",
    "FORMAT",
    "MAX_JSON_BYTES",
    "MAX_ITEMS",
    "MAX_DEPTH",
]

#: The format name and version every snapshot starts with.
FORMAT = "chaos-dojo/evidence/1"
#: The most JSON text ``Evidence.from_json`` reads (200 MB; a lab's run takes well under 1 MB).
MAX_JSON_BYTES = 200 * 1024 * 1024
#: The most items one list of a snapshot may hold (log entries, history operations, spans, rows...).
MAX_ITEMS = 5_000_000
#: How deeply values (rows, messages, log fields) may nest.
MAX_DEPTH = 64

_NODE_KINDS = ("service", "client", "database", "broker")
_HEX = {32: re.compile(r"[0-9a-f]{32}"), 16: re.compile(r"[0-9a-f]{16}")}
_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# --- values: the run's data as JSON, and back -------------------------------------------------


def _encode(value: Any, where: str, depth: int = 0) -> Any:
    """A value of the run as JSON data (tuples, dicts and non-finite floats tagged, see the module docstring)."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if depth >= MAX_DEPTH:
        raise InvalidParameterError(f"{where} nests deeper than {MAX_DEPTH} levels, more than evidence carries")
    if kind is list:
        return [_encode(v, where, depth + 1) for v in value]
    if kind is tuple:
        return {"tuple": [_encode(v, where, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[_encode(k, where, depth + 1), _encode(v, where, depth + 1)] for k, v in value.items()]}
    for base in (bool, int, str, float):  # an IntEnum, a str subclass: kept as the plain value
        if isinstance(value, base):
            return _encode(base(value), where, depth)
    raise InvalidParameterError(
        f"{where} holds a {kind.__name__} ({_shown(value)}), which evidence cannot carry: only str, int, float, "
        f"bool, None, and lists, tuples and dicts of them"
    )


def _decode(data: Any, where: str, depth: int = 0) -> Any:
    """The value ``_encode`` wrote, checked: InvalidParameterError for anything else."""
    kind = type(data)
    if data is None or kind is str or kind is bool or kind is int:
        return data
    if kind is float:
        if not math.isfinite(data):
            raise _bad(where, data, 'JSON has no such number: write it as {"float": "inf"} ("-inf", "nan")')
        return data
    if depth >= MAX_DEPTH:
        raise _bad(where, data, f"values nest at most {MAX_DEPTH} levels deep")
    if kind is list:
        _check_size(data, where)
        return [_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(data)]
    if kind is dict and len(data) == 1:
        (tag, inner), = data.items()
        inner_where = f"{where}[{tag!r}]"
        if tag == "tuple":
            _check_list(inner, inner_where)
            return tuple(_decode(v, f"{inner_where}[{i}]", depth + 1) for i, v in enumerate(inner))
        if tag == "dict":
            _check_list(inner, inner_where)
            out: dict[Any, Any] = {}
            for i, pair in enumerate(inner):
                k, v = _pair(pair, f"{inner_where}[{i}]")
                key = _decode(k, f"{inner_where}[{i}][0]", depth + 1)
                try:
                    hash(key)
                except TypeError:
                    raise _bad(f"{inner_where}[{i}][0]", k, "a dict key must be a str, number, bool, None or "
                                                            "tuple of them") from None
                out[key] = _decode(v, f"{inner_where}[{i}][1]", depth + 1)
            return out
        if tag == "float" and inner in _FLOATS:
            return _FLOATS[inner]
    raise _bad(where, data, 'a value is JSON data or one of {"tuple": [...]}, {"dict": [[key, value], ...]}, '
                            '{"float": "inf" | "-inf" | "nan"}')


def _pairs(mapping: Mapping[str, Any], where: str) -> list[list[Any]]:
    return [[k, _encode(v, f"{where}[{k!r}]")] for k, v in mapping.items()]


# --- checking untrusted data -------------------------------------------------------------------


def _shown(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _bad(where: str, value: Any, rule: str) -> InvalidParameterError:
    return InvalidParameterError(f"snapshot{where}={_shown(value)}: {rule}")


def _check_size(items: list[Any], where: str) -> None:
    if len(items) > MAX_ITEMS:
        raise InvalidParameterError(
            f"snapshot{where} has {len(items):,} items, over the limit of {MAX_ITEMS:,} (MAX_ITEMS): a run this "
            f"large is refused; run a smaller workload"
        )


def _check_list(value: Any, where: str) -> list[Any]:
    if type(value) is not list:
        raise _bad(where, value, "expected a list")
    _check_size(value, where)
    return value


def _pair(value: Any, where: str) -> tuple[Any, Any]:
    if type(value) is not list or len(value) != 2:
        raise _bad(where, value, "expected a [key, value] pair")
    return value[0], value[1]


class _Obj:
    """One JSON object of a snapshot, read field by field; each read checks its type and says where."""

    def __init__(self, data: Any, where: str, fields: Iterable[str]) -> None:
        if type(data) is not dict:
            raise _bad(where, data, "expected an object")
        unknown = [k for k in data if k not in fields]
        if unknown:
            raise _bad(f"{where}[{unknown[0]!r}]", data[unknown[0]], f"unknown field; the fields here: {list(fields)}")
        self.data, self.where, self.fields = data, where, tuple(fields)

    def at(self, key: str) -> str:
        return f"{self.where}[{key!r}]"

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise _bad(self.where, self.data, f"the field {key!r} is missing (the fields here: {list(self.fields)})")
        return self.data[key]

    def str(self, key: str, *, optional: bool = False, choices: Iterable[str] | None = None) -> Any:
        value = self.raw(key)
        if value is None and optional:
            return None
        if type(value) is not str:
            raise _bad(self.at(key), value, "expected a str" + (" or null" if optional else ""))
        if choices is not None and value not in choices:
            raise _bad(self.at(key), value, f"expected one of {list(choices)}")
        return value

    def int(self, key: str, *, minimum: int = 0, optional: bool = False) -> Any:
        value = self.raw(key)
        if value is None and optional:
            return None
        if type(value) is not int or value < minimum:
            raise _bad(self.at(key), value, f"expected a whole number >= {minimum}")
        return value

    def num(self, key: str, *, optional: bool = False) -> Any:
        return _number(self.raw(key), self.at(key), optional=optional)

    def bool(self, key: str) -> bool:
        value = self.raw(key)
        if type(value) is not bool:
            raise _bad(self.at(key), value, "expected true or false")
        return value

    def list(self, key: str, *, optional: bool = False) -> Any:
        value = self.raw(key)
        if value is None and optional:
            return None
        return _check_list(value, self.at(key))

    def names(self, key: str) -> tuple[str, ...]:
        items = self.list(key)
        for i, name in enumerate(items):
            if type(name) is not str:
                raise _bad(f"{self.at(key)}[{i}]", name, "expected a str")
        return tuple(items)


def _number(value: Any, where: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _bad(where, value, "expected a finite number" + (" or null" if optional else ""))
    return value


def _items(obj: _Obj, key: str, fields: Iterable[str]) -> list[_Obj]:
    fields = tuple(fields)
    return [_Obj(item, f"{obj.at(key)}[{i}]", fields) for i, item in enumerate(obj.list(key))]


# --- the snapshot -------------------------------------------------------------------------------


def snapshot(world: World) -> dict[str, Any]:
    """Everything the checkers, counterexamples and pictures read from a finished ``world``, as JSON data.

    The same run gives the same snapshot (``json.dumps(..., sort_keys=True)`` byte for byte);
    ``Evidence.from_snapshot`` reads it back.

    Example::

        text = json.dumps(snapshot(world))
        Evidence.from_json(text).fingerprint() == world.fingerprint()   # True

    Raises:
        InvalidParameterError: a value of the run that JSON cannot carry (a set or an object
            in a history value), with where it is.
    """
    spans = world.spans()  # first: reading them builds the automatic spans (lab trackers see them start and end)
    return {
        "format": FORMAT,
        "seed": world.seed,
        "now": world.now,
        "stalled": world.stalled,
        "overran": world.overran,
        "nodes": [_node_data(node) for node in world.nodes.values()],
        "log": [[e[0], e[1], *(_encode(f, f"log[{i}]") for f in e[2:])] for i, e in enumerate(world.recorder.log)],
        "history": [
            {"time": op.time, "process": op.process, "type": op.type, "f": op.f,
             "value": _encode(op.value, f"history[{op.index}].value"), "error": op.error}
            for op in world.history
        ],
        "events": [{"time": e.time, "node": e.node, "kind": e.kind, "fields": _pairs(e.fields, "event")}
                   for e in world.events],
        "assertions": [
            {"message": a.message, "kind": a.kind, "evaluated": a.evaluated, "satisfied": a.satisfied,
             "first": list(a.first) if a.first is not None else None}
            for a in world.assertions.values()
        ],
        "errors": [{"time": e.time, "node": e.node, "where": e.where, "type": e.type, "message": e.message,
                    "traceback": e.traceback} for e in world.errors],
        "broker": _broker_data(world.broker) if BROKER_NODE in world.nodes else None,
        "chaos": _chaos_data(world.chaos) if world.chaos is not None else None,
        "tracing": _tracing_data(world.tracing, spans) if world.tracing is not None else None,
    }


def _node_data(node: Any) -> dict[str, Any]:
    out = {"name": node.name, "kind": node.kind, "alive": node.alive, "paused": node.paused, "epoch": node.epoch}
    if node.kind == "service":
        disk = node.disk_store
        out.update(service=node.service.name, ready=node.ready, disk=_tables_data(disk) if disk is not None else None)
    elif node.kind == "client":
        out["done"] = bool(node.done.triggered)
    elif node.kind == "database":
        out["tables"] = _tables_data(node.store)
    return out


def _tables_data(store: Any) -> list[dict[str, Any]]:
    return [
        {"name": table, "rows": [[_encode(k, "key"), _encode(v, f"{store.name}/{table} {k!r}")]
                                 for k, v in store.rows(table).items()]}
        for table in store.table_names()
    ]


def _broker_data(broker: Any) -> dict[str, Any]:
    return {
        "topics": [
            {"name": topic, "partitions": broker.partitions(topic), "messages": [
                {"partition": m.partition, "offset": m.offset, "key": m.key, "timestamp": m.timestamp,
                 "value": _encode(m.value, f"message {topic}/{m.partition}@{m.offset}"),
                 "headers": [[k, v] for k, v in m.headers.items()]}
                for m in broker.messages(topic)
            ]}
            for topic in broker.topics()
        ],
        "groups": [{"name": g, "committed": [[t, p, o] for (t, p), o in broker.committed(g).items()]}
                   for g in broker.groups()],
    }


def schedule_data(schedule: Schedule) -> dict[str, Any]:
    """A fault schedule as plain JSON data (``schedule_from_data`` reads it back): each fault by its kind and the
    fields of its constructor, and the schedule's ``heal_at``."""
    return {
        "faults": [
            {"kind": fault.action, "fields": [[f.name, _encode(getattr(fault, f.name), f"fault {fault!r}")]
                                              for f in dataclasses.fields(fault) if f.init]}
            for fault in schedule
        ],
        "heal_at": schedule.heal_at,
    }


def schedule_from_data(data: Any, where: str = "schedule") -> Schedule:
    """The schedule ``schedule_data`` wrote, each fault built again through its own constructor (which checks it).

    Raises:
        InvalidParameterError: data that is not such a schedule, naming where and showing it.
    """
    from .faults import KINDS, Schedule

    obj = _Obj(data, where, ("faults", "heal_at"))
    faults = []
    for f in _items(obj, "faults", ("kind", "fields")):
        kind = f.str("kind", choices=sorted(KINDS))
        try:
            faults.append(KINDS[kind](**_read_pairs(f, "fields")))
        except (SandboxError, TypeError, ValueError, ArithmeticError) as exc:
            raise _bad(f.where, f.data, f"not a fault: {exc}") from None
    try:
        return Schedule(faults, obj.num("heal_at", optional=True))
    except SandboxError as exc:
        raise _bad(where, data, f"not a schedule: {exc}") from None


def _chaos_data(chaos: Any) -> dict[str, Any]:
    return {
        **schedule_data(chaos.schedule),
        "healed": chaos.healed,
        "windows": [
            {"index": w.index, "label": w.label, "family": w.family, "start": w.start, "end": w.end,
             "nodes": list(w.nodes), "peers": list(w.peers), "fired": w.fired}
            for w in chaos.windows
        ],
    }


class _Table:
    """Resources or scopes, each written once and named by its position."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}

    def add(self, item: dict[str, Any]) -> int:
        key = json.dumps(item, sort_keys=True)
        if key not in self._index:
            self._index[key] = len(self.items)
            self.items.append(item)
        return self._index[key]


def _tracing_data(tracing: Any, spans: list[ReadableSpan]) -> dict[str, Any]:
    resources, scopes = _Table(), _Table()
    trackers = [(name, value) for name, value in vars(tracing).items()
                if isinstance(value, SpanProcessor) and isinstance(getattr(value, "open", None), dict)]
    return {
        "spans": [_span_data(s, resources, scopes) for s in spans],
        "open": [{"attribute": name, "spans": [_span_data(s, resources, scopes) for s in tracker.open.values()]}
                 for name, tracker in trackers],
        "resources": resources.items,
        "scopes": scopes.items,
    }


def _context_data(context: trace.SpanContext) -> dict[str, Any]:
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
            "flags": int(context.trace_flags), "state": [list(kv) for kv in context.trace_state.items()],
            "remote": context.is_remote}


def _attributes_data(attributes: Mapping[str, Any] | None, where: str) -> list[list[Any]] | None:
    return None if attributes is None else _pairs(attributes, where)


def _span_data(span: ReadableSpan, resources: _Table, scopes: _Table) -> dict[str, Any]:
    where = f"span {span.name!r}"
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "kind": span.kind.name,
        "context": _context_data(span.context),
        "parent": _context_data(span.parent) if span.parent is not None else None,
        "resource": resources.add({"attributes": _pairs(span.resource.attributes, "resource"),
                                   "schema_url": span.resource.schema_url}),
        "scope": None if scope is None else scopes.add({
            "name": scope.name, "version": scope.version, "schema_url": scope.schema_url,
            "attributes": _attributes_data(scope.attributes, "scope")}),
        "start": span.start_time,
        "end": span.end_time,
        "attributes": _pairs(span.attributes, where),
        "events": [{"name": e.name, "time": e.timestamp, "attributes": _attributes_data(e.attributes, where)}
                   for e in span.events],
        "links": [{"context": _context_data(link.context), "attributes": _attributes_data(link.attributes, where)}
                  for link in span.links],
        "status": {"code": span.status.status_code.name, "description": span.status.description},
    }


# --- what a finished run is made of, read back --------------------------------------------------


class RecordedNode:
    """A node as the run left it: ``name``, ``kind`` ("service", "client", "database", "broker"),
    ``alive``, ``paused``, ``epoch``; a replica's ``service``, ``index``, ``ready`` and ``disk_store``,
    a client's ``done`` (True once its workload ended), a database's ``store``."""

    def __init__(self, name: str, kind: str, alive: bool, paused: bool, epoch: int) -> None:
        self.name, self.kind, self.alive, self.paused, self.epoch = name, kind, alive, paused, epoch
        self.service: RecordedService | None = None
        self.index = 0
        self.ready = False
        self.done = False
        self.store: RecordedStore | None = None
        self.disk_store: RecordedStore | None = None

    def __repr__(self) -> str:
        return f"<RecordedNode {self.name} {self.kind} {'up' if self.alive else 'down'}>"


class RecordedService:
    """A service as the run left it: its ``name`` and its replicas (``instances``), without its code."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.instances: list[RecordedNode] = []

    @property
    def factory(self) -> Any:
        """Not in the evidence: the code stayed in the process that ran it (ConfigError)."""
        raise ConfigError(
            f"service {self.name!r}: evidence holds what the run did, not its code, so there is no factory to read; "
            f"take what the check needs from the code on the grader's side and pass it in (lab 01: "
            f"invariants(choice, primary=primary(create_app)))"
        )

    def __repr__(self) -> str:
        up = sum(1 for i in self.instances if i.alive)
        return f"<Service {self.name} {up}/{len(self.instances)} up>"


class RecordedStore:
    """A database's or a disk's committed rows, to inspect as ``world.database(name)`` is:
    ``rows(table)``, ``read(table, key)``, ``table_names()`` (copies, rows in key order)."""

    def __init__(self, name: str, tables: dict[str, dict[Key, Any]]) -> None:
        self.name = name
        self._tables = tables

    def read(self, table: str, key: Key, default: Any = None) -> Any:
        """The committed value of a key (a copy), or ``default``."""
        rows = self._tables.get(table, {})
        return plain(rows[key]) if key in rows else default

    def rows(self, table: str) -> dict[Key, Any]:
        """Every committed row of a table as ``{key: value}``, in key order (copies)."""
        data = self._tables.get(table, {})
        return {k: plain(data[k]) for k in sorted(data, key=lambda k: (0, k) if isinstance(k, int) else (1, k))}

    def table_names(self) -> list[str]:
        """The names of every table ever written, sorted."""
        return sorted(self._tables)

    def __repr__(self) -> str:
        return f"<RecordedStore {self.name} tables={self.table_names()}>"


class RecordedBroker:
    """The broker's topics, messages and committed offsets, inspected as ``world.broker`` is."""

    def __init__(
        self, topics: dict[str, list[list[Message]]], committed: dict[str, dict[tuple[str, int], int]]
    ) -> None:
        self._topics = topics
        self._committed = committed

    def topics(self) -> list[str]:
        """The names of every topic, sorted."""
        return sorted(self._topics)

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has."""
        return len(self._topic(topic))

    def groups(self) -> list[str]:
        """The names of every consumer group that has polled, sorted."""
        return sorted(self._committed)

    def messages(self, topic: str) -> list[Message]:
        """Every message of ``topic``, partition by partition, in offset order (copies)."""
        return [m.model_copy(deep=True) for part in self._topic(topic) for m in part]

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        """The committed offsets of ``group``: ``{(topic, partition): next offset to read}``."""
        return dict(sorted(self._committed.get(group, {}).items()))

    def lag(self, group: str, topic: str) -> int:
        """How many messages of ``topic`` the group has not committed yet."""
        committed = self._committed.get(group, {})
        return sum(len(part) - committed.get((topic, p), 0) for p, part in enumerate(self._topic(topic)))

    def _topic(self, topic: str) -> list[list[Message]]:
        parts = self._topics.get(topic)
        if parts is None:
            raise UnknownNameError(f"no topic {topic!r}; topics: {sorted(self._topics)}")
        return parts


class RecordedChaos:
    """The fault schedule of the run and what each fault did: ``schedule``, ``heal_at``, ``healed``,
    ``windows`` and ``coverage()``, as ``world.chaos`` has them."""

    def __init__(self, evidence: Evidence, schedule: Schedule, healed: bool, windows: list[FaultWindow]) -> None:
        self._evidence = evidence
        self.schedule = schedule
        self.heal_at = schedule.fault_phase_end
        self.healed = healed
        self._windows = windows

    @property
    def windows(self) -> list[FaultWindow]:
        """Every fault that started, in start order, with what it hit and how often it fired."""
        return list(self._windows)

    def coverage(self) -> Any:
        """What the faults did and which recovery paths the code took: see ``sandbox.faults.coverage``."""
        from .faults.coverage import coverage

        return coverage(self._evidence)  # type: ignore[arg-type]


class RecordedTracing:
    """The run's finished spans (``spans()``, ``otlp()``, ``otlp_json()``), and the trackers of open
    spans lab code hung on ``world.tracing``, under the same attribute names (each with its ``open``)."""

    def __init__(self, spans: list[ReadableSpan]) -> None:
        self._spans = spans

    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended, as OpenTelemetry SDK spans."""
        return list(self._spans)

    otlp = Tracing.otlp
    otlp_json = Tracing.otlp_json


class OpenSpans:
    """A tracker of open spans read back: ``open`` maps each span id to its span (never ended)."""

    def __init__(self, spans: list[ReadableSpan]) -> None:
        self.open = {s.context.span_id: s for s in spans}


class Evidence(Lookups):
    """A finished run read back from its snapshot: it answers the readers of a ``World`` as the world did.

    What it has: ``seed``, ``now``, ``stalled``, ``overran``, ``clients_done``, ``recorder`` (the
    event log), ``history``, ``events``, ``assertions``, ``errors``, ``nodes``, ``services``,
    ``clients``, ``databases``, ``broker``, ``chaos``, ``tracing``, and ``spans()``,
    ``fingerprint()``, ``node(name)``, ``service(name)``, ``database(name)``, ``disk(node)``.
    It cannot run, change or be injected into: it is what a run left behind.

    Example::

        evidence = Evidence.from_json(text)
        check(evidence, [no_double_charge()])        # as check(world, ...)
        sandbox.viz.sequence_diagram(evidence)        # as sequence_diagram(world)
    """

    seed: int
    now: float
    stalled: str | None
    overran: str | None
    recorder: Recorder
    history: History
    events: list[Event]
    assertions: dict[str, Assertion]
    errors: list[ServiceError]
    nodes: dict[str, RecordedNode]
    services: dict[str, RecordedService]
    clients: dict[str, RecordedNode]
    databases: dict[str, RecordedNode]
    chaos: RecordedChaos | None
    tracing: RecordedTracing | None
    _broker: RecordedBroker | None

    @classmethod
    def from_json(cls, text: str | bytes) -> Evidence:
        """Read a snapshot from its JSON text (at most ``MAX_JSON_BYTES``), checked as ``from_snapshot`` does.

        Raises:
            InvalidParameterError: text over the limit, text that is not JSON, or a malformed snapshot.
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise InvalidParameterError(f"text={_shown(text)}: give the snapshot's JSON as str or bytes")
        if len(text) > MAX_JSON_BYTES:
            raise InvalidParameterError(
                f"the snapshot's JSON is {len(text):,} {'characters' if isinstance(text, str) else 'bytes'} long, "
                f"over the limit of {MAX_JSON_BYTES:,} (MAX_JSON_BYTES): a run this large is refused; run a "
                f"smaller workload"
            )

        def constant(name: str) -> Any:
            raise InvalidParameterError(f"the snapshot's JSON holds {name}, which JSON has no place for; "
                                        f'snapshot() writes such a number as {{"float": "inf"}}')

        try:
            data = json.loads(text, parse_constant=constant)
        except (ValueError, RecursionError) as exc:  # the refusal of a constant passes through
            raise InvalidParameterError(f"the snapshot is not JSON: {type(exc).__name__}: {_shown(str(exc))}") from None
        return cls.from_snapshot(data)

    @classmethod
    def from_snapshot(cls, data: Any) -> Evidence:
        """Check ``data`` (what ``snapshot`` wrote, maybe carried as JSON) and read it back as evidence.

        Example::

            evidence = Evidence.from_snapshot(json.loads(text))

        Raises:
            InvalidParameterError: a field missing, of the wrong type or shape, unknown, or over a
                limit; the message names it (``snapshot['nodes'][2]['epoch']``) and shows its value.
        """
        top = _Obj(data, "", ("format", "seed", "now", "stalled", "overran", "nodes", "log", "history", "events",
                              "assertions", "errors", "broker", "chaos", "tracing"))
        if top.raw("format") != FORMAT:
            raise _bad("['format']", top.raw("format"), f"this reads {FORMAT!r} snapshots, as snapshot() writes them")
        self = cls.__new__(cls)
        self.seed = top.int("seed")
        self.now = top.num("now")
        self.stalled = top.str("stalled", optional=True)
        self.overran = top.str("overran", optional=True)
        self._read_nodes(top)
        self.recorder = Recorder()
        self.recorder.log = _read_log(top)
        self.history = _read_history(top)
        self.events = [
            Event(e.num("time"), e.str("node"), e.str("kind"), MappingProxyType(_read_pairs(e, "fields")))
            for e in _items(top, "events", ("time", "node", "kind", "fields"))
        ]
        self.assertions = {}
        for a in _items(top, "assertions", ("message", "kind", "evaluated", "satisfied", "first")):
            first = a.list("first", optional=True)
            if first is not None:
                if len(first) != 2 or type(first[1]) is not str:
                    raise _bad(a.at("first"), first, "expected [time, node] or null")
                first = (_number(first[0], f"{a.at('first')}[0]"), first[1])
            message = a.str("message")
            self.assertions[message] = Assertion(message, a.str("kind", choices=("sometimes", "reachable")),
                                                 a.int("evaluated"), a.int("satisfied"), first)
        self.errors = [
            ServiceError(e.num("time"), e.str("node"), e.str("where"), e.str("type"), e.str("message"),
                         e.str("traceback"))
            for e in _items(top, "errors", ("time", "node", "where", "type", "message", "traceback"))
        ]
        self._broker = _read_broker(top.raw("broker"), top.at("broker"))
        if (self._broker is None) != (BROKER_NODE not in self.nodes):
            raise _bad("['broker']", top.raw("broker"), f"the broker's contents go with a node {BROKER_NODE!r} of "
                                                        f"kind 'broker', and only with one")
        self.chaos = _read_chaos(self, top.raw("chaos"), top.at("chaos"))
        self.tracing = _read_tracing(top.raw("tracing"), top.at("tracing"))
        return self

    def _read_nodes(self, top: _Obj) -> None:
        self.nodes, self.services, self.clients, self.databases = {}, {}, {}, {}
        fields = ("name", "kind", "alive", "paused", "epoch", "service", "ready", "disk", "done", "tables")
        for item in _items(top, "nodes", fields):
            node = RecordedNode(item.str("name"), item.str("kind", choices=_NODE_KINDS), item.bool("alive"),
                                item.bool("paused"), item.int("epoch"))
            if node.name in self.nodes:
                raise _bad(item.at("name"), node.name, "a second node of that name")
            extra = {"service": ("service", "ready", "disk"), "client": ("done",), "database": ("tables",)}
            for key in item.data:
                if key not in fields[:5] + extra.get(node.kind, ()):
                    raise _bad(item.at(key), item.data[key], f"a {node.kind} node has no field {key!r}")
            if node.kind == "service":
                service = self.services.get(item.str("service"))
                if service is None:
                    service = self.services[item.str("service")] = RecordedService(item.str("service"))
                node.service, node.index, node.ready = service, len(service.instances), item.bool("ready")
                service.instances.append(node)
                if item.raw("disk") is not None:
                    node.disk_store = RecordedStore(f"{node.name}/disk", _read_tables(item, "disk"))
            elif node.kind == "client":
                node.done = item.bool("done")
                self.clients[node.name] = node
            elif node.kind == "database":
                node.store = RecordedStore(node.name, _read_tables(item, "tables"))
                self.databases[node.name] = node
            self.nodes[node.name] = node

    # --- what a finished World answers ---------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Evidence seed={self.seed} t={self.now:.4f} nodes={len(self.nodes)}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"evidence has no {name!r}: it holds what a finished run left behind (its log, history, state and "
            f"spans), not the running world; to run or change a world, build one from the seed ({self.seed})"
        )

    @property
    def clients_done(self) -> bool:
        """True when every workload client had finished its workload."""
        return all(c.done for c in self.clients.values())

    @property
    def broker(self) -> RecordedBroker:
        """The broker's topics, messages and offsets (empty if the run had no broker)."""
        return self._broker if self._broker is not None else RecordedBroker({}, {})

    def spans(self) -> list[ReadableSpan]:
        """The finished OpenTelemetry spans of the run (empty unless it was traced)."""
        return self.tracing.spans() if self.tracing is not None else []

    def fingerprint(self) -> str:
        """The run's fingerprint, as ``World.fingerprint()`` computed it: a hash of the log and the history."""
        return self.recorder.fingerprint(extra=[repr(op) for op in self.history])

    def disk(self, node: str) -> RecordedStore:
        """The local durable disk of a service replica (empty if it never wrote to one)."""
        instance = self.node(node)
        if instance.kind != "service":
            raise UnknownNameError(f"{node!r} is a {instance.kind} node; only service replicas have a local disk")
        return instance.disk_store if instance.disk_store is not None else RecordedStore(f"{instance.name}/disk", {})


# --- reading the parts -----------------------------------------------------------------------


def _read_pairs(obj: _Obj, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, pair in enumerate(obj.list(key)):
        name, value = _pair(pair, f"{obj.at(key)}[{i}]")
        if type(name) is not str:
            raise _bad(f"{obj.at(key)}[{i}][0]", name, "expected a str name")
        out[name] = _decode(value, f"{obj.at(key)}[{i}][1]")
    return out


def _read_tables(obj: _Obj, key: str) -> dict[str, dict[Key, Any]]:
    tables: dict[str, dict[Key, Any]] = {}
    for t in _items(obj, key, ("name", "rows")):
        name = t.str("name")
        if name in tables:
            raise _bad(t.at("name"), name, "a second table of that name")
        rows = tables[name] = {}
        for i, row in enumerate(t.list("rows")):
            where = f"{t.at('rows')}[{i}]"
            k, v = _pair(row, where)
            if type(k) not in (str, int):
                raise _bad(f"{where}[0]", k, "a row's key is a str or an int")
            rows[k] = plain(_decode(v, f"{where}[1]"), f"snapshot{where}[1]")
    return tables


def _read_log(top: _Obj) -> list[tuple[Any, ...]]:
    log = []
    where = top.at("log")
    for i, entry in enumerate(top.list("log")):
        if type(entry) is not list or len(entry) < 2:
            raise _bad(f"{where}[{i}]", entry, "a log entry is [time, kind, *fields]")
        t, kind = entry[0], entry[1]
        if type(t) not in (int, float) or not math.isfinite(t):
            raise _bad(f"{where}[{i}][0]", t, "a log entry starts with its time, a finite number")
        if type(kind) is not str:
            raise _bad(f"{where}[{i}][1]", kind, "a log entry's kind is a str, e.g. 'net.send'")
        log.append((t, kind, *(_decode(f, f"{where}[{i}][{j}]") for j, f in enumerate(entry[2:], 2))))
    return log


def _read_history(top: _Obj) -> History:
    history = History()
    for op in _items(top, "history", ("time", "process", "type", "f", "value", "error")):
        time, process, kind = op.num("time"), op.str("process"), op.str("type", choices=OP_TYPES)
        value = _decode(op.raw("value"), op.at("value"))
        try:
            if kind == "invoke":
                history.invoke(time, process, op.str("f"), value)
            else:
                history.complete(time, process, kind, value, op.str("error", optional=True))
        except ValueError as exc:
            raise _bad(op.where, op.data, str(exc)) from None
        if history[-1].f != op.str("f"):
            raise _bad(op.at("f"), op.raw("f"), f"completes {history[-1].f!r}, the operation its process invoked")
    return history


def _read_broker(data: Any, where: str) -> RecordedBroker | None:
    if data is None:
        return None
    broker = _Obj(data, where, ("topics", "groups"))
    topics: dict[str, list[list[Message]]] = {}
    for t in _items(broker, "topics", ("name", "partitions", "messages")):
        name = t.str("name")
        parts: list[list[Message]] = [[] for _ in range(t.int("partitions", minimum=1))]
        for m in _items(t, "messages", ("partition", "offset", "key", "timestamp", "value", "headers")):
            p = m.int("partition")
            if p >= len(parts):
                raise _bad(m.at("partition"), p, f"topic {name!r} has {len(parts)} partitions")
            if m.int("offset") != len(parts[p]):
                raise _bad(m.at("offset"), m.raw("offset"), f"messages come in offset order: {len(parts[p])} next")
            headers = _read_pairs(m, "headers")
            if any(type(v) is not str for v in headers.values()):
                raise _bad(m.at("headers"), m.raw("headers"), "header values are str")
            parts[p].append(Message(topic=name, partition=p, offset=m.int("offset"), key=m.str("key", optional=True),
                                    value=plain(_decode(m.raw("value"), m.at("value")), f"snapshot{m.at('value')}"),
                                    headers=headers, timestamp=m.num("timestamp")))
        topics[name] = parts
    committed: dict[str, dict[tuple[str, int], int]] = {}
    for g in _items(broker, "groups", ("name", "committed")):
        offsets = committed.setdefault(g.str("name"), {})
        for i, item in enumerate(g.list("committed")):
            if type(item) is not list or len(item) != 3 or type(item[0]) is not str or type(item[1]) is not int \
                    or type(item[2]) is not int:
                raise _bad(f"{g.at('committed')}[{i}]", item, "expected [topic, partition, offset]")
            offsets[(item[0], item[1])] = item[2]
    return RecordedBroker(topics, committed)


def _read_chaos(evidence: Evidence, data: Any, where: str) -> RecordedChaos | None:
    if data is None:
        return None
    from .faults.injector import FaultWindow

    chaos = _Obj(data, where, ("faults", "heal_at", "healed", "windows"))
    schedule = schedule_from_data({"faults": chaos.raw("faults"), "heal_at": chaos.raw("heal_at")}, where)
    windows = []
    for w in _items(chaos, "windows", ("index", "label", "family", "start", "end", "nodes", "peers", "fired")):
        index = w.int("index")
        if index >= len(schedule):
            raise _bad(w.at("index"), index, f"the schedule has {len(schedule)} faults")
        windows.append(FaultWindow(index, schedule[index], w.str("label"), w.str("family"), w.num("start"),
                                   w.num("end", optional=True), w.names("nodes"), w.names("peers"), w.int("fired")))
    return RecordedChaos(evidence, schedule, chaos.bool("healed"), windows)


def _read_tracing(data: Any, where: str) -> RecordedTracing | None:
    if data is None:
        return None
    tracing = _Obj(data, where, ("spans", "open", "resources", "scopes"))
    resources = [Resource(_read_attributes(r, "attributes"), r.str("schema_url", optional=True))
                 for r in _items(tracing, "resources", ("attributes", "schema_url"))]
    scopes = [InstrumentationScope(s.str("name"), s.str("version", optional=True), s.str("schema_url", optional=True),
                                   _read_attributes(s, "attributes"))
              for s in _items(tracing, "scopes", ("name", "version", "schema_url", "attributes"))]

    def spans(obj: _Obj, key: str) -> list[ReadableSpan]:
        return [_read_span(s, resources, scopes) for s in _items(obj, key, _SPAN_FIELDS)]

    out = RecordedTracing(spans(tracing, "spans"))
    for item in _items(tracing, "open", ("attribute", "spans")):
        name = item.str("attribute")
        if not name.isidentifier() or name.startswith("__") or hasattr(out, name):
            raise _bad(item.at("attribute"), name, "a tracker's attribute is a name of its own, e.g. '_open_spans'")
        setattr(out, name, OpenSpans(spans(item, "spans")))
    return out


_SPAN_FIELDS = ("name", "kind", "context", "parent", "resource", "scope", "start", "end", "attributes", "events",
                "links", "status")


def _read_attributes(obj: _Obj, key: str) -> BoundedAttributes | None:
    """Span, event, link, scope or resource attributes (or null): str, bool, int or float values, or tuples
    of one of them."""
    if obj.raw(key) is None:
        return None
    attributes = _read_pairs(obj, key)
    for name, value in attributes.items():
        items = value if type(value) is tuple else (value,)
        kinds = {type(v) for v in items}
        if len(kinds) > 1 or not kinds <= {str, bool, int, float}:
            raise _bad(obj.at(key), obj.raw(key), f"attribute {name!r}={_shown(value)}: OpenTelemetry attributes are "
                                                  f"str, bool, int or float, or tuples of one of them")
    return BoundedAttributes(maxlen=None, attributes=attributes, immutable=True, max_value_len=None)


def _read_context(data: Any, where: str) -> trace.SpanContext:
    c = _Obj(data, where, ("trace_id", "span_id", "flags", "state", "remote"))
    ids = []
    for key, digits in (("trace_id", 32), ("span_id", 16)):
        value = c.str(key)
        if not _HEX[digits].fullmatch(value):
            raise _bad(c.at(key), value, f"expected {digits} lower-case hex digits")
        ids.append(int(value, 16))
    flags = c.int("flags")
    if flags > 255:
        raise _bad(c.at("flags"), flags, "trace flags are one byte (0 to 255)")
    pairs = [_pair(p, f"{c.at('state')}[{i}]") for i, p in enumerate(c.list("state"))]
    state = TraceState(pairs) if all(type(k) is str and type(v) is str for k, v in pairs) else None
    if state is None or len(state) != len(pairs):
        raise _bad(c.at("state"), c.raw("state"), "a W3C tracestate: [key, value] pairs of valid strs")
    return trace.SpanContext(ids[0], ids[1], is_remote=c.bool("remote"), trace_flags=trace.TraceFlags(flags),
                             trace_state=state)


def _read_span(s: _Obj, resources: list[Resource], scopes: list[InstrumentationScope]) -> ReadableSpan:
    def pick(key: str, table: list[Any], optional: bool = False) -> Any:
        index = s.int(key, optional=optional)
        if index is not None and index >= len(table):
            raise _bad(s.at(key), index, f"there are {len(table)} {key}s")
        return None if index is None else table[index]

    status = _Obj(s.raw("status"), s.at("status"), ("code", "description"))
    events = [SpanEvent(e.str("name"), _read_attributes(e, "attributes"), e.int("time"))
              for e in _items(s, "events", ("name", "time", "attributes"))]
    links = [trace.Link(_read_context(link.raw("context"), link.at("context")), _read_attributes(link, "attributes"))
             for link in _items(s, "links", ("context", "attributes"))]
    parent = s.raw("parent")
    return ReadableSpan(
        name=s.str("name"),
        context=_read_context(s.raw("context"), s.at("context")),
        parent=None if parent is None else _read_context(parent, s.at("parent")),
        resource=pick("resource", resources),
        attributes=_read_attributes(s, "attributes"),
        events=events,
        links=links,
        kind=SpanKind[s.str("kind", choices=[k.name for k in SpanKind])],
        status=Status(StatusCode[status.str("code", choices=[c.name for c in StatusCode])],
                      status.str("description", optional=True)),
        start_time=s.int("start"),
        end_time=s.int("end", optional=True),
        instrumentation_scope=pick("scope", scopes, optional=True),
    )

