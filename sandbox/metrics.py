"""Metrics in the Prometheus model: recorded in virtual time, scraped, queried as PromQL does.

A world built with ``World(seed, metrics=True)`` keeps metrics as a Prometheus server
would see them. Two kinds of targets are scraped every ``scrape_interval`` virtual
seconds (1 s unless told):

- **the sandbox itself**, as a service mesh's proxies do (Envoy, Linkerd), records for
  every service without a line of its code: requests served by route template, method,
  status and replica, their latency, requests in flight, outbound calls by callee and
  outcome (a timeout is an outcome, so every retry shows as one more attempt), consumer
  lag per group and partition, and database lock waits (see ``SANDBOX_METRICS``);
- **each replica**, a process of its own, exposes what its code records with the real
  ``prometheus_client`` library: ``Counter``, ``Gauge``, ``Histogram`` with labels.

Each replica has its own registry, as each process has its own: get it with
``sandbox.metrics_registry(app)`` in the app factory. Metrics registered on
prometheus_client's default registry by code a replica runs (a module-level
``Counter("orders_placed", "...")`` in the service's module, which each replica runs
afresh) go to that replica's registry too; a restarted replica starts from zero,
and ``rate`` sees a counter reset, as Prometheus does. ``Histogram.time()`` and
``Gauge.set_to_current_time()`` read virtual time. Scraped series carry the target's
``service`` and ``replica`` labels (Prometheus calls them ``job`` and ``instance``); a
replica that is down or paused fails its scrape (``up`` is 0) and its series go stale.

Example (the names lab 06 reads; see ``BREAKER_STATE`` and ``RETRIES``)::

    def create_app():
        app = FastAPI()
        registry = sandbox.metrics_registry(app)
        breaker = Gauge("circuit_breaker_state", "0 closed, 1 open, 2 half-open", ["dependency"], registry=registry)
        retries = Counter("retries", "Calls sent again", ["dependency"], registry=registry)
        ...

    world = sandbox.World(seed=7, metrics=True)
    ...
    world.run()
    m = world.metrics
    m.rate("http_server_requests_total", 4.0, service="checkout", status=re.compile("5.."))
    m.quantile(0.99, "http_server_request_duration_seconds", 4.0, service="checkout")
    print(m.exposition())          # the Prometheus text format, as GET /metrics would give it

Metrics are observation, not behaviour: turning them on changes no random draw, no
event and no fingerprint. Outside a World (FastAPI's TestClient) ``metrics_registry(app)``
gives the app a registry of its own, on ``app.state``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import prometheus_client
import prometheus_client.context_managers
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample as _RawSample
from starlette.requests import Request

from ._determinism import answer_in_virtual_time
from ._promql import (
    LabelSet,
    Sample,
    histogram_quantile,
    sum_by,
)
from ._runtime import current_node
from ._tsdb import Scraped, Series, relabel
from .broker import BROKER_NODE
from .errors import (
    IncompleteResponse,
    InvalidParameterError,
    NodeCrashed,
    RequestTimeout,
    SimulatedFailure,
)
from .http import HttpClient, split_url
from .services import Instance

if TYPE_CHECKING:
    from .world import World

__all__ = [
    "metrics_registry",
    "Metrics",
    "Sample",
    "Series",
    "sum_by",
    "histogram_quantile",
    "SANDBOX_METRICS",
    "BREAKER_STATE",
    "BREAKER_STATES",
    "RETRIES",
    "LATENCY_BUCKETS",
    "DEFAULT_SCRAPE_INTERVAL",
]

#: Seconds of virtual time between two scrapes, unless ``World(scrape_interval=...)`` says otherwise.
DEFAULT_SCRAPE_INTERVAL = 1.0
#: Latency buckets (seconds) of the sandbox's histograms: a database call to a 10 s outage.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)

#: What the sandbox records for every service (a histogram by its name: its samples are NAME_bucket, NAME_count and
#: NAME_sum), and the labels of each.
SANDBOX_METRICS = {
    "http_server_requests_total": "requests served: service, replica, method, route (the template), status",
    "http_server_request_duration_seconds": "histogram of the time from a request's arrival to its response "
                                            "(_bucket, _count, _sum): service, replica, method, route",
    "http_server_requests_in_flight": "requests arrived and not yet answered: service, replica",
    "http_client_requests_total": "calls a service made: service, replica, callee, method, outcome (the status, "
                                  "'timeout' or 'incomplete')",
    "http_client_request_duration_seconds": "histogram of a call's time until its answer or its timeout: "
                                            "service, replica, callee, method",
    "broker_consumer_lag": "messages not yet committed: group, topic, partition",
    "db_lock_wait_seconds": "histogram of row-lock waits: database, table, outcome ('granted', 'timeout', "
                            "'aborted')",
    "up": "1 if the replica answered its scrape, 0 if it was down or paused: service, replica",
}
#: The gauge a service's circuit breaker sets (label ``dependency``): 0 closed, 1 open, 2 half-open.
BREAKER_STATE = "circuit_breaker_state"
#: The values of ``BREAKER_STATE``.
BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}
#: The counter a service adds one to for each call it sends again (label ``dependency``); its sample name
#: (prometheus_client adds ``_total`` to a counter's name).
RETRIES = "retries_total"

# prometheus_client's Histogram.time() and Summary.time() read timeit.default_timer, bound at import:
# inside a sandbox task it reads the node's monotonic clock, as time.perf_counter does.
answer_in_virtual_time(prometheus_client.context_managers, "default_timer")

_REGISTRY_ATTR = "_prometheus_registry"


def _replica_registry(node: Any) -> CollectorRegistry:
    """The registry of ``node``'s current incarnation (a restart is a new process, with an empty one)."""
    held = node.__dict__.get(_REGISTRY_ATTR)
    if held is None or held[0] != node.epoch:
        held = (node.epoch, CollectorRegistry())
        setattr(node, _REGISTRY_ATTR, held)
    return held[1]


def metrics_registry(app: Request) -> CollectorRegistry:
    """The prometheus_client registry of the replica running ``app``: pass it to every metric the service makes.

    In a World each replica (each incarnation: a restart begins again from zero) has its own, and the
    world scrapes it; outside one (FastAPI's TestClient) the app gets one of its own, kept on ``app.state``,
    so that building the app twice never registers a metric twice. Call it with the app in the app factory;
    an endpoint can also get it as a dependency, ``registry = Depends(sandbox.metrics_registry)`` (FastAPI
    passes the request, whose app it is).

    Example::

        def create_app():
            app = FastAPI()
            registry = sandbox.metrics_registry(app)
            placed = Counter("orders_placed", "Orders accepted", registry=registry)

            @app.get("/metrics")                       # optional: the world scrapes without it
            async def metrics() -> Response:
                return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    Raises:
        InvalidParameterError: ``app`` is not an app (it has no ``state``) outside a World.
    """
    node = current_node.get()
    if isinstance(node, Instance):
        return _replica_registry(node)
    if isinstance(app, Request):
        app = app.app
    state = getattr(app, "state", None)
    if state is None:
        raise InvalidParameterError(
            f"metrics_registry({app!r}): pass the FastAPI app the metrics belong to, e.g. "
            f"`app = FastAPI(); registry = sandbox.metrics_registry(app)`"
        )
    registry = getattr(state, "chaos_dojo_registry", None)
    if registry is None:
        registry = state.chaos_dojo_registry = CollectorRegistry()
    return registry


def _per_replica(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def method(collector: Any) -> None:
        node = current_node.get()
        if isinstance(node, Instance):  # code of a replica: its own process's default registry
            return getattr(_replica_registry(node), original.__name__)(collector)
        return original(collector)

    method.__name__ = original.__name__
    return method


# A metric made on the default registry by code a replica runs belongs to that replica.
for _name in ("register", "unregister"):
    setattr(prometheus_client.REGISTRY, _name, _per_replica(getattr(prometheus_client.REGISTRY, _name)))


class Metrics(Scraped):
    """A world's metrics: the sandbox's own registry, the scraper, the scraped series and the queries on them.

    Made by ``World(seed, metrics=True)``; read it as ``world.metrics`` (see the module docstring).
    """

    def __init__(self, world: World, interval: float) -> None:
        super().__init__(interval)
        self.world = world
        #: The sandbox's own metrics (the service mesh's): see ``SANDBOX_METRICS``.
        self.registry = CollectorRegistry()
        r = self.registry
        self._served = Counter("http_server_requests", "Requests served", ["service", "replica", "method", "route",
                                                                           "status"], registry=r)
        self._latency = Histogram("http_server_request_duration_seconds", "Time from a request's arrival to its "
                                  "response", ["service", "replica", "method", "route"], buckets=LATENCY_BUCKETS,
                                  registry=r)
        self._in_flight = Gauge("http_server_requests_in_flight", "Requests arrived and not yet answered",
                                ["service", "replica"], registry=r)
        self._calls = Counter("http_client_requests", "Calls made to other services", ["service", "replica",
                                                                                        "callee", "method", "outcome"],
                              registry=r)
        self._call_latency = Histogram("http_client_request_duration_seconds", "Time of a call until its answer or "
                                       "its timeout", ["service", "replica", "callee", "method"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self._lag = Gauge("broker_consumer_lag", "Messages not yet committed by a consumer group",
                          ["group", "topic", "partition"], registry=r)
        self._lock_waits = Histogram("db_lock_wait_seconds", "Waits for a row lock", ["database", "table", "outcome"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}  # (metric, *label values) -> its child, looked up once
        self._open: dict[Any, tuple[Instance, int, float]] = {}  # exchange -> its replica, incarnation, arrival
        world.env.process(self._scraper())

    def __repr__(self) -> str:
        return f"<Metrics every {self.interval:g}s: {len(self.scrape_times)} scrapes, {len(self._series)} series>"

    # --- recording (called by the sandbox's request paths) ---------------------------------

    def arrived(self, exchange: Any) -> None:
        """A request reached a replica."""
        instance = exchange.instance
        self._open[exchange] = (instance, instance.epoch, self.world.env.now)

    def answered(self, exchange: Any) -> None:
        """A replica answered a request."""
        opened = self._open.pop(exchange, None)
        if opened is None:
            return
        instance, _epoch, started = opened
        route = getattr(exchange.scope.get("route"), "path", None) or "(unmatched)"
        method = exchange.request.method
        service = instance.service.name
        self._child(self._served, service, instance.name, method, route, str(exchange.status)).inc()
        self._child(self._latency, service, instance.name, method, route).observe(self.world.env.now - started)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, kept: a request's path through the sandbox asks for the same few often."""
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def called(self, node: Any, callee: str, method: str, outcome: str, started: float) -> None:
        """A service's call to another ended: with a status, a timeout, or a response cut short."""
        service = node.service.name if isinstance(node, Instance) else node.name
        self._child(self._calls, service, node.name, callee, method, outcome).inc()
        self._child(self._call_latency, service, node.name, callee, method).observe(self.world.env.now - started)

    def lock_wait(self, database: str, table: str, event: Any) -> None:
        """A statement began waiting for a row lock; ``event`` fires when it gets it (or gives up)."""
        started = self.world.env.now

        def ended(event: Any) -> None:
            from .errors import LockTimeout

            outcome = "granted" if event.ok else "timeout" if isinstance(event.value, LockTimeout) else "aborted"
            self._lock_waits.labels(database, table, outcome).observe(self.world.env.now - started)

        event.callbacks.append(ended)

    # --- scraping -------------------------------------------------------------------------

    def _scraper(self) -> Any:
        env = self.world.env
        k = 0
        while True:
            self._scrape(k * self.interval)
            k += 1
            yield env.timeout(max(k * self.interval - env.now, 0.0))

    def _refresh(self) -> None:
        """Set the gauges read from the world's state: requests in flight, consumer lag."""
        counts: dict[str, int] = {}
        for exchange, (instance, epoch, _t) in list(self._open.items()):
            if instance.epoch != epoch:  # its replica crashed: the request died with it
                del self._open[exchange]
            else:
                counts[instance.name] = counts.get(instance.name, 0) + 1
        for service in self.world.services.values():
            for instance in service.instances:
                self._in_flight.labels(service.name, instance.name).set(counts.get(instance.name, 0))
        broker = self.world.nodes.get(BROKER_NODE)
        if broker is not None:
            for (group, topic, partition), lag in broker.lags().items():
                self._lag.labels(group, topic, str(partition)).set(lag)

    def _scrape(self, at: float) -> None:
        self.scrape_times.append(at)
        self._refresh()
        self._ingest(at, "", self.registry.collect(), ())
        for service in self.world.services.values():
            for instance in service.instances:
                target = (("replica", instance.name), ("service", service.name))
                up = instance.alive and not instance.paused
                self._store(at, "", ("up", target), 1.0 if up else 0.0, "gauge")
                if not up:
                    self._stale(at, instance.name)
                    continue
                held = instance.__dict__.get(_REGISTRY_ATTR)
                if held is not None and held[0] == instance.epoch:
                    self._ingest(at, instance.name, held[1].collect(), target)

    # --- export ----------------------------------------------------------------------------

    def exposition(self) -> str:
        """What a scrape now collects, in the Prometheus text exposition format (``generate_latest``): the
        sandbox's metrics and every running replica's, each replica's series labelled with its ``service``
        and ``replica``; without the ``_created`` series (a metric's creation time).

        Example::

            text = world.metrics.exposition()
            for family in prometheus_client.parser.text_string_to_metric_families(text): ...
        """
        self._refresh()
        families: dict[str, Metric] = {}
        collected: list[tuple[LabelSet, Iterable[Metric]]] = [((), self.registry.collect())]
        for service in self.world.services.values():
            for instance in service.instances:
                held = instance.__dict__.get(_REGISTRY_ATTR)
                if instance.alive and not instance.paused and held is not None and held[0] == instance.epoch:
                    collected.append(((("replica", instance.name), ("service", service.name)), held[1].collect()))
        for target, metrics in collected:
            for family in metrics:
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                created = family.name + "_created"  # real wall-clock times for the sandbox's own: left out
                for s in family.samples:
                    if s.name == created:
                        continue
                    labels = relabel(s.labels, target) if target else s.labels
                    merged.samples.append(_RawSample(s.name, labels, s.value, s.timestamp, s.exemplar))
        registry = CollectorRegistry()
        registry.register(_Fixed(list(families.values())))
        return generate_latest(registry).decode()


class _Fixed:
    """A collector that gives the families it holds (an exposition of merged targets)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class MeteredHttpClient(HttpClient):
    """The HTTP client of a service in a world with metrics: each call also counts in
    ``http_client_requests_total`` and ``http_client_request_duration_seconds``."""

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        node = self._node
        world = node.world
        started = world.env.now
        try:
            response = await super().request(method, url, **kwargs)
        except SimulatedFailure as exc:
            if not isinstance(exc, NodeCrashed):  # the caller itself went down: nobody is left to count
                outcome = "timeout" if isinstance(exc, RequestTimeout) else \
                    "incomplete" if isinstance(exc, IncompleteResponse) else type(exc).__name__
                world.metrics.called(node, split_url(url)[0], method.upper(), outcome, started)
            raise
        world.metrics.called(node, split_url(url)[0], method.upper(), str(response.status_code), started)
        return response
