"""Tracing with the OpenTelemetry SDK, in virtual time, with seeded ids.

``World(seed, tracing=True)`` gives the world its own OpenTelemetry set-up (never
the global one): a ``TracerProvider`` per node, so that each span carries its
service's resource (``service.name``, ``service.instance.id``) as it would in
production, all sharing one seeded id generator and one in-memory exporter.
Timestamps are virtual time (``clocks.EPOCH_NS`` + ``world.now`` in ns), so a trace replays
exactly from its seed.

What the sandbox instruments by itself, as OpenTelemetry's instrumentation
libraries would:

* the HTTP client: a CLIENT span per request, and the W3C ``traceparent`` header
  injected into the request;
* the HTTP server: a SERVER span per request, child of the incoming ``traceparent``;
* database calls (CLIENT spans) and broker sends (PRODUCER spans);
* consumer handlers: a CONSUMER span per message, child of the ``traceparent``
  message header if the producer put one there (the producer does not add it by
  itself: carrying context through Kafka is the service's job).

Service code adds its own spans with the tracer dependency::

    @app.post("/orders")
    async def place(order: Order, tracer: Tracer = Depends(sandbox.tracer)):
        with tracer.start_as_current_span("check-stock") as span:
            span.set_attribute("order.sku", order.sku)

``world.spans()`` returns the finished spans; ``world.tracing.otlp_json()`` exports
them as OTLP/JSON (the body an OTLP/HTTP collector accepts).
"""

from __future__ import annotations

import base64

# Before any TracerProvider exists. Each TracerProvider re-detects its resource in a forked child
# (os.register_at_fork), on a ThreadPoolExecutor; that module's own fork hooks hold its global lock
# across the fork and release it in the child. Fork hooks run in registration order, so if it were
# imported after a provider was made, the child would wait on that lock for ever (explore's workers
# hung so). Importing it first puts its hooks first.
import concurrent.futures.thread  # noqa: F401
import json
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation import set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .clocks import EPOCH_NS
from .recorder import WindowedRunError, fold_step

if TYPE_CHECKING:
    from ._runtime import Task
    from .broker import Message
    from .http import HttpRequest
    from .nodes import Node
    from .world import World

PROPAGATOR = TraceContextTextMapPropagator()
SCOPE = "chaos-dojo.sandbox"


class SeededIdGenerator(IdGenerator):
    """Trace and span ids drawn from one of the world's seeded streams.

    ``force(context)`` makes the next ids those of ``context`` (without drawing), so
    that the SDK can build a span whose ids were drawn earlier.
    """

    def __init__(self, rng: Any) -> None:
        self._rng = rng
        self._forced: trace.SpanContext | None = None

    def force(self, context: trace.SpanContext | None) -> None:
        self._forced = context

    def generate_span_id(self) -> int:
        if self._forced is not None:
            return self._forced.span_id
        while True:
            value = self._rng.getrandbits(64)
            if value:
                return value

    def generate_trace_id(self) -> int:
        if self._forced is not None:
            return self._forced.trace_id
        while True:
            value = self._rng.getrandbits(128)
            if value:
                return value


class VirtualSpan(trace.Span):
    """An SDK span whose end, events and exceptions are stamped with virtual time."""

    def __init__(self, span: trace.Span, tracing: Tracing, node: Node) -> None:
        self._span = span
        self._tracing = tracing
        self._node = node

    def end(self, end_time: int | None = None) -> None:
        if not self._node.alive:
            return  # ended while its process crashed: never exported, as with a real SDK
        self._span.end(end_time=end_time if end_time is not None else self._tracing.now_ns())

    def get_span_context(self) -> trace.SpanContext:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Any) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self._span.add_event(name, attributes, timestamp if timestamp is not None else self._tracing.now_ns())

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self._span.set_status(status, description)

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: int | None = None, escaped: bool = False) -> None:
        self._span.record_exception(exception, attributes, timestamp if timestamp is not None else self._tracing.now_ns(), escaped)

    @property
    def name(self) -> str:
        return self._span.name  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<VirtualSpan {self._span!r}>"


class VirtualTracer(trace.Tracer):
    """A tracer whose spans start and end in virtual time (the ``sandbox.tracer`` dependency)."""

    def __init__(self, tracer: trace.Tracer, tracing: Tracing, node: Node) -> None:
        self._tracer = tracer
        self._tracing = tracing
        self._node = node

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> VirtualSpan:
        span = self._tracer.start_span(
            name, context, kind, attributes, links,
            start_time if start_time is not None else self._tracing.now_ns(),
            record_exception, set_status_on_exception,
        )
        return VirtualSpan(span, self._tracing, self._node)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[VirtualSpan]:
        span = self.start_span(name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception)
        with trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception, set_status_on_exception=set_status_on_exception) as current:
            yield current  # type: ignore[misc]


class AutoSpan(trace.Span):
    """A span the sandbox records by itself (HTTP client and server, database, broker).

    It behaves as a recording span while the world runs: service code can find it
    with ``trace.get_current_span()`` and add attributes, events and a status to it,
    and child spans take it as their parent. Its ids are drawn from the world's
    seeded id generator when it starts, exactly as the SDK would draw them. The
    OpenTelemetry SDK builds the real span from it (same ids, timestamps,
    attributes, events and status, through the node's TracerProvider) when the spans
    are first read: building SDK spans costs tens of microseconds each, and many
    runs are checked without ever reading them.
    """

    __slots__ = ("node", "_name", "kind", "_context", "parent", "start_time", "end_time", "attributes", "events", "links", "status", "_tracing")

    def __init__(self, tracing: Tracing, node: str, name: str, kind: SpanKind, parent: trace.SpanContext | None, attributes: dict[str, Any]) -> None:
        generator = tracing.id_generator
        trace_id = parent.trace_id if parent is not None else generator.generate_trace_id()
        self._context = trace.SpanContext(
            trace_id, generator.generate_span_id(), is_remote=False, trace_flags=_SAMPLED,
            trace_state=parent.trace_state if parent is not None else None,  # W3C tracestate travels with the trace
        )
        self._tracing = tracing
        self.node = node
        self._name = name
        self.kind = kind
        self.parent = parent
        self.start_time = tracing.now_ns()
        self.end_time: int | None = None
        self.attributes = attributes
        self.events: list[tuple[str, Any, int]] = []
        self.links: list[trace.Link] = []
        self.status = _UNSET  # Status is immutable: one shared value until set_status replaces it

    @property
    def name(self) -> str:
        return self._name

    def get_span_context(self) -> trace.SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self.end_time is None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Any) -> None:
        if self.end_time is None:
            self.attributes.update(attributes)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if self.end_time is None:
            self.events.append((name, dict(attributes or {}), timestamp if timestamp is not None else self._tracing.now_ns()))

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        if self.end_time is None:
            self.links.append(trace.Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time is not None:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if self.status.status_code is StatusCode.OK:
            return  # as in the SDK: OK is final
        if status.status_code is StatusCode.UNSET:
            return
        self.status = status

    def record_exception(self, exception: BaseException, attributes: Any = None, timestamp: int | None = None, escaped: bool = False) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        details = {  # the attributes the SDK's record_exception writes
            "exception.type": qualname if module in (None, "builtins") else f"{module}.{qualname}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(type(exception), exception, exception.__traceback__)),
            "exception.escaped": str(escaped),
        }
        details.update(attributes or {})
        self.add_event("exception", details, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            return
        self.end_time = end_time if end_time is not None else self._tracing.now_ns()
        if self._tracing.node_is_up(self.node):  # a crashed process exports nothing more
            self._tracing._keep_span(self)

    def __repr__(self) -> str:
        return f"<AutoSpan {self._name!r} {self.kind.name} on {self.node}>"


_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


class _Collector(SpanProcessor):
    """Keeps every span the SDK ends, in order, alongside the recorded automatic spans."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def on_end(self, span: ReadableSpan) -> None:
        tracing = self._tracing
        if tracing._building is not None:
            tracing._building.append(span)
        else:
            tracing._keep_span(span)


class _NodeTracer:
    __slots__ = ("raw", "virtual")

    def __init__(self, raw: trace.Tracer, virtual: VirtualTracer) -> None:
        self.raw = raw
        self.virtual = virtual


class Tracing:
    """A world's OpenTelemetry set-up: per-node providers sharing one seeded id generator.

    ``spans()`` lists every finished span, in the order they ended: the spans
    service code made with the tracer dependency, and the sandbox's automatic spans
    (built into SDK spans on first read, see ``AutoSpan``).

    ``keep`` (``World(seed, tracing=True, keep_spans=N)``): None keeps every finished
    span; a number keeps only the last ``keep`` (a few more while the world runs: the
    oldest go in batches), so that a long traced run's memory stays flat. Once some
    were let go, ``spans()`` and the exports refuse (``WindowedRunError``): a trace
    with spans missing would look broken when it is not. ``recent_spans()`` gives the
    spans kept, ``dropped`` counts the others.
    """

    def __init__(self, world: World, keep: int | None = None) -> None:
        self.world = world
        self.id_generator = SeededIdGenerator(world.streams["tracing"])
        self._collector = _Collector(self)
        self.providers: dict[str, TracerProvider] = {}
        self._tracers: dict[str, _NodeTracer] = {}
        # Finished spans in the order they ended; an AutoSpan is replaced by its SDK span when built.
        self._finished: list[ReadableSpan | AutoSpan] = []
        self._built_upto = 0  # _finished[:_built_upto] are all SDK spans
        self._building: list[ReadableSpan] | None = None
        #: How many of the last finished spans are kept (None: all of them).
        self.keep = keep
        #: How many finished spans were let go; 0 unless ``keep`` is set.
        self.dropped = 0
        self._fold_at = None if keep is None else keep + fold_step(keep)
        self._keep_span = self._finished.append if keep is None else self._keep_in_window

    def _keep_in_window(self, span: ReadableSpan | AutoSpan) -> None:
        finished = self._finished
        finished.append(span)
        if len(finished) >= self._fold_at:  # type: ignore[operator]
            self.trim()

    def trim(self) -> None:
        """Let go of every finished span but the last ``keep``; nothing without ``keep``."""
        if self.keep is None:
            return
        cut = len(self._finished) - self.keep
        if cut > 0:
            del self._finished[:cut]
            self.dropped += cut
            self._built_upto = max(0, self._built_upto - cut)

    def node_is_up(self, name: str) -> bool:
        node = self.world.nodes.get(name)
        return node is None or node.alive

    def now_ns(self) -> int:
        """Virtual time now as Unix nanoseconds: ``clocks.EPOCH_NS + round(world.now * 1e9)``."""
        return EPOCH_NS + round(self.world.env.now * 1e9)

    def provider(self, node: Node | str) -> TracerProvider:
        """The TracerProvider of one node (its resource names its service and replica)."""
        name = node if isinstance(node, str) else node.name
        provider = self.providers.get(name)
        if provider is None:
            found = self.world.nodes.get(name)
            service = getattr(getattr(found, "service", None), "name", name)
            kind = getattr(found, "kind", "node")
            resource = Resource({"service.name": service, "service.instance.id": name, "chaos_dojo.node.kind": kind})
            provider = TracerProvider(
                sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False, id_generator=self.id_generator
            )
            provider.add_span_processor(self._collector)
            self.providers[name] = provider
        return provider

    def _node_tracer(self, node: Node | str) -> _NodeTracer:
        name = node if isinstance(node, str) else node.name
        nt = self._tracers.get(name)
        if nt is None:
            raw = self.provider(name).get_tracer(SCOPE)
            nt = self._tracers[name] = _NodeTracer(raw, VirtualTracer(raw, self, self.world.nodes[name]))
        return nt

    def tracer_for(self, node: Node) -> VirtualTracer:
        """The tracer service code on ``node`` gets from ``Depends(sandbox.tracer)``."""
        return self._node_tracer(node).virtual

    # --- automatic instrumentation -----------------------------------------------------

    def _start(self, node: Node, name: str, kind: SpanKind, parent: otel_context.Context | None, attributes: dict[str, Any]) -> AutoSpan:
        parent_span = trace.get_current_span(parent).get_span_context()
        return AutoSpan(self, node.name, name, kind, parent_span if parent_span.is_valid else None, attributes)

    async def within(self, span: trace.Span, awaitable: Any) -> Any:
        """Await ``awaitable``; end ``span`` with its outcome (ERROR and the exception if it raised)."""
        try:
            result = await awaitable
        except BaseException as exc:
            self.end_span(span, exc)
            raise
        self.end_span(span, None)
        return result

    def end_span(self, span: trace.Span, error: BaseException | None) -> None:
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            if isinstance(error, Exception):
                span.record_exception(error, timestamp=self.now_ns())
        span.end(end_time=self.now_ns())

    def client_span(self, node: Node, request: HttpRequest) -> trace.Span:
        """Start the CLIENT span of an outgoing request and put its traceparent in the headers."""
        span = self._start(
            node, request.method, SpanKind.CLIENT, None,
            {"http.request.method": request.method, "url.full": request.url, "server.address": request.host},
        )
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, set_span_in_context(span))
        request.headers = [h for h in request.headers if h[0] not in (b"traceparent", b"tracestate")]
        request.headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items())
        return span

    def end_client_span(self, span: trace.Span, status: int | None, error: BaseException | None) -> None:
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_status(Status(StatusCode.ERROR))
        self.end_span(span, error)

    def server_span(self, node: Node, task: Task, request: HttpRequest) -> trace.Span:
        """Start the SERVER span of an incoming request, child of its traceparent, current in ``task``."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers if k in (b"traceparent", b"tracestate")}
        parent = PROPAGATOR.extract(carrier) if carrier else otel_context.Context()
        span = self._start(
            node, f"{request.method} {request.path}", SpanKind.SERVER, parent,
            {"http.request.method": request.method, "url.path": request.path, "url.scheme": "http"},
        )
        task.ctx.run(otel_context.attach, set_span_in_context(span))
        return span

    def end_server_span(self, span: trace.Span, status: int, error: BaseException | None, route: str | None) -> None:
        if route:
            method = span.attributes.get("http.request.method") if hasattr(span, "attributes") else None
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        self.end_span(span, error)

    def db_span(self, node: Node, database: str, op: tuple) -> trace.Span:
        table = op[2] if len(op) > 2 and isinstance(op[2], str) and op[0] not in ("begin",) else None
        name = f"{op[0]} {table}" if table else op[0]
        attributes = {"db.system.name": "chaos-dojo", "db.namespace": database, "db.operation.name": op[0]}
        if table:
            attributes["db.collection.name"] = table
        return self._start(node, name, SpanKind.CLIENT, None, attributes)

    def producer_span(self, node: Node, topic: str) -> trace.Span:
        return self._start(
            node, f"send {topic}", SpanKind.PRODUCER, None,
            {"messaging.system": "kafka", "messaging.destination.name": topic, "messaging.operation.type": "send"},
        )

    def consumer_span(self, node: Node, message: Message) -> tuple[trace.Span, object]:
        """Start the CONSUMER span of one delivered message and make it current."""
        carrier = {k.lower(): v for k, v in message.headers.items() if k.lower() in ("traceparent", "tracestate")}
        parent = PROPAGATOR.extract(carrier) if carrier else otel_context.Context()
        span = self._start(
            node, f"process {message.topic}", SpanKind.CONSUMER, parent,
            {
                "messaging.system": "kafka", "messaging.destination.name": message.topic,
                "messaging.operation.type": "process", "messaging.destination.partition.id": str(message.partition),
                "messaging.kafka.offset": message.offset,
            },
        )
        token = otel_context.attach(set_span_in_context(span))
        return span, token

    def end_consumer_span(self, handle: tuple[trace.Span, object], ok: bool, error: BaseException | None) -> None:
        span, token = handle
        otel_context.detach(token)
        if not ok and error is None:
            span.set_status(Status(StatusCode.ERROR, "handler did not succeed"))
        self.end_span(span, error)

    # --- reading and exporting -----------------------------------------------------------

    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended, as OpenTelemetry SDK spans.

        Raises:
            WindowedRunError: the world keeps only its last spans (``keep_spans``) and some were let go;
                ``recent_spans()`` gives the ones kept.
        """
        if self.dropped:
            raise WindowedRunError(
                f"this world keeps only its last {self.keep:,} finished spans (World(tracing=True, keep_spans="
                f"{self.keep})) and let {self.dropped:,} earlier ones go, so the whole run's spans are gone: a "
                f"trace missing its first spans would look broken to a checker, a picture or an exporter. Build "
                f"the world without keep_spans to read them all; world.tracing.recent_spans() gives the ones kept"
            )
        return self.recent_spans()

    def recent_spans(self) -> list[ReadableSpan]:
        """The finished spans kept (all of them unless ``keep`` is set), in the order they ended.

        Example::

            world = sandbox.World(seed=7, tracing=True, keep_spans=500)
            ...
            world.tracing.recent_spans()[-1].name   # the last span that ended
        """
        finished = self._finished
        for i in range(self._built_upto, len(finished)):
            item = finished[i]
            if isinstance(item, AutoSpan):
                finished[i] = self._build(item)  # the SDK span takes its place: one copy is kept, not two
        self._built_upto = len(finished)
        return list(finished)  # type: ignore[arg-type]

    def _build(self, auto: AutoSpan) -> ReadableSpan:
        """The SDK span of a recorded automatic span: same ids, times, attributes, events, status."""
        parent = (
            trace.set_span_in_context(trace.NonRecordingSpan(auto.parent)) if auto.parent is not None else otel_context.Context()
        )
        self.id_generator.force(auto.get_span_context())
        self._building = []
        try:
            span = self._node_tracer(auto.node).raw.start_span(
                auto.name, parent, auto.kind, auto.attributes, auto.links or None, start_time=auto.start_time
            )
            for name, attributes, timestamp in auto.events:
                span.add_event(name, attributes, timestamp)
            if auto.status.status_code is not StatusCode.UNSET:
                span.set_status(auto.status)
            span.end(end_time=auto.end_time)
            (built,) = self._building
        finally:
            self._building = None
            self.id_generator.force(None)
        return built

    def otlp(self) -> Any:
        """The finished spans as an OTLP ``ExportTraceServiceRequest`` protobuf message."""
        return encode_spans(self.spans())

    def otlp_json(self, indent: int | None = None) -> str:
        """The finished spans as OTLP/JSON: the protobuf JSON mapping, ids in hex, enums as ints."""
        as_dict = MessageToDict(self.otlp(), use_integers_for_enums=True)
        _hex_ids(as_dict)
        return json.dumps(as_dict, indent=indent, sort_keys=False)


def _hex_ids(node: Any) -> None:
    """OTLP/JSON writes trace and span ids as hex, not as protobuf JSON's base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)
