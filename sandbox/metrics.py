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

import bisect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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

from . import _checks
from ._determinism import answer_in_virtual_time
from ._promql import (
    LabelSet,
    Sample,
    check_labels,
    extrapolated_rate,
    histogram_quantile,
    sum_by,
)
from ._runtime import current_node
from .broker import BROKER_NODE
from .errors import (
    IncompleteResponse,
    InvalidParameterError,
    NodeCrashed,
    RequestTimeout,
    SimulatedFailure,
    UnknownNameError,
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
#: How far back an instant query looks for a series' last sample (Prometheus's ``lookback-delta``).
LOOKBACK = 300.0
#: Latency buckets (seconds) of the sandbox's histograms: a database call to a 10 s outage.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
#: Two virtual times this close are the same instant (a scrape on a range's edge is on it).
_EPS = 1e-9

#: What the sandbox records for every service (sample names; the labels each series has).
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


@dataclass(frozen=True)
class Series:
    """One series over a range of query times (``Metrics.range``): its labels, times and values (NaN where it
    was absent)."""

    labelset: LabelSet
    times: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.labelset)


class _Stored:
    """One scraped series: its samples' times and values (None: stale, its target failed a scrape)."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[float | None] = []


_COUNTER_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


class Metrics:
    """A world's metrics: the sandbox's own registry, the scraper, the scraped series and the queries on them.

    Made by ``World(seed, metrics=True)``; read it as ``world.metrics`` (see the module docstring).
    """

    def __init__(self, world: World, interval: float) -> None:
        self.world = world
        #: Virtual seconds between scrapes.
        self.interval = interval
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
        self._series: dict[tuple[str, LabelSet], _Stored] = {}
        self._by_name: dict[str, list[tuple[str, LabelSet]]] = {}
        self._kinds: dict[str, str] = {}  # sample name -> "counter" (rate works) or "gauge"
        self._target_keys: dict[str, dict[tuple[str, LabelSet], None]] = {}
        #: The virtual times of every scrape so far.
        self.scrape_times: list[float] = []
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

    def _ingest(self, at: float, target: str, families: Iterable[Metric], target_labels: LabelSet) -> None:
        for family in families:
            kind = "counter" if family.type in _COUNTER_SUFFIXES else "gauge"
            counted = _COUNTER_SUFFIXES.get(family.type, ())
            for suffix in counted or ("",):
                self._kinds.setdefault(family.name + suffix, kind)
            created = family.name + "_created"
            for s in family.samples:
                if s.name == created:
                    continue
                labels = s.labels
                if target_labels:
                    labels = _relabel(labels, target_labels)
                key = (s.name, tuple(sorted(labels.items())))
                self._store(at, target, key, s.value, "counter" if s.name.endswith(counted) and counted else "gauge")

    def _store(self, at: float, target: str, key: tuple[str, LabelSet], value: float, kind: str) -> None:
        stored = self._series.get(key)
        if stored is None:
            stored = self._series[key] = _Stored()
            self._by_name.setdefault(key[0], []).append(key)
            self._kinds.setdefault(key[0], kind)
            if target:
                self._target_keys.setdefault(target, {})[key] = None
        stored.times.append(at)
        stored.values.append(value)

    def _stale(self, at: float, target: str) -> None:
        for key in self._target_keys.get(target, ()):
            stored = self._series[key]
            if stored.values and stored.values[-1] is not None:
                stored.times.append(at)
                stored.values.append(None)

    # --- queries ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every sample name scraped or declared so far, sorted (counters end in ``_total``, histograms have
        ``_bucket``, ``_count`` and ``_sum``)."""
        return sorted(self._kinds)

    def _matching(self, name: str, match: Mapping[str, Any]) -> list[tuple[tuple[str, LabelSet], _Stored]]:
        if not isinstance(name, str) or name not in self._kinds:
            import difflib

            close = difflib.get_close_matches(str(name), self._kinds, n=3)
            raise UnknownNameError(
                f"no metric {name!r} in this world's scrapes"
                + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
                + f" Sample names: {', '.join(self.names())}"
            )
        for label, wanted in match.items():
            if not isinstance(wanted, (str, re.Pattern)):
                raise InvalidParameterError(
                    f"{label}={wanted!r}: match a label with a string (status='503') or a compiled regular "
                    f"expression matching the whole value (status=re.compile('5..'), as PromQL's =~)"
                )
        found = []
        for key in self._by_name.get(name, ()):
            labels = dict(key[1])
            if all(_matches(labels.get(label, ""), wanted) for label, wanted in match.items()):
                found.append((key, self._series[key]))
        return found

    def _at(self, at: float | None) -> float:
        if at is None:
            return self.scrape_times[-1] if self.scrape_times else 0.0
        return _checks.seconds("at", at)

    def select(self, name: str, at: float | None = None, **match: str | re.Pattern[str]) -> list[Sample]:
        """The instant vector ``name{match}`` at virtual time ``at`` (the last scrape if None): each series'
        latest sample at or before ``at`` (none if its target went down since).

        Example::

            world.metrics.select("http_server_requests_in_flight", at=3.0, service="orders")

        Raises:
            UnknownNameError: no such metric was scraped (the error lists those that were).
            InvalidParameterError: ``at`` is negative, or a label is matched with neither a string nor a pattern.
        """
        at = self._at(at)
        out = []
        for (sample_name, labelset), stored in self._matching(name, match):
            i = bisect.bisect_right(stored.times, at + _EPS)
            if i and stored.values[i - 1] is not None and at - stored.times[i - 1] < LOOKBACK:
                out.append(Sample(sample_name, labelset, float(stored.values[i - 1])))  # type: ignore[arg-type]
        return out

    def _over(self, name: str, window: float, at: float | None, match: Mapping[str, Any], is_rate: bool,
              what: str) -> list[Sample]:
        window = _checks.seconds("window", window, positive=True)
        if window < 2 * self.interval - _EPS:
            raise InvalidParameterError(
                f"window={window!r}: with a scrape every {self.interval:g} s a window that short holds fewer than "
                f"two samples, and {what}() needs two; use at least {2 * self.interval:g} s (Prometheus advises "
                f"four scrape intervals: {4 * self.interval:g})"
            )
        at = self._at(at)
        found = self._matching(name, match)
        if self._kinds.get(name) != "counter":
            raise InvalidParameterError(
                f"{what}({name!r}): {name} is a gauge, and {what}() is for counters (NAME_total, and a histogram's "
                f"_bucket, _count and _sum); read a gauge with select()"
            )
        out = []
        start = at - window
        for (sample_name, labelset), stored in found:
            lo = bisect.bisect_right(stored.times, start + _EPS)
            hi = bisect.bisect_right(stored.times, at + _EPS)
            times, values = [], []
            for t, v in zip(stored.times[lo:hi], stored.values[lo:hi]):
                if v is not None:
                    times.append(t)
                    values.append(v)
            value = extrapolated_rate(times, values, start, at, is_rate=is_rate)
            if value is not None:
                out.append(Sample(sample_name, labelset, value))
        return out

    def rate(self, name: str, window: float, at: float | None = None, **match: str | re.Pattern[str]) -> list[Sample]:
        """PromQL's ``rate(name{match}[window])`` at ``at`` (the last scrape if None): each counter's increase
        per second over the window, counter resets and extrapolation to the window's edges as Prometheus does.

        Example::

            world.metrics.rate("http_server_requests_total", 4.0, service="orders", status=re.compile("5.."))

        Raises:
            UnknownNameError: no such metric. InvalidParameterError: a gauge, a window shorter than two scrape
                intervals, a negative ``at``, a label matched with neither a string nor a pattern.
        """
        return self._over(name, window, at, match, True, "rate")

    def increase(self, name: str, window: float, at: float | None = None, **match: str | re.Pattern[str]) -> list[Sample]:
        """PromQL's ``increase(name{match}[window])``: ``rate`` times the window (see ``rate``)."""
        return self._over(name, window, at, match, False, "increase")

    def quantile(self, q: float, histogram: str, window: float, at: float | None = None, *, by: Iterable[str] = (),
                 **match: str | re.Pattern[str]) -> list[Sample]:
        """PromQL's ``histogram_quantile(q, sum by (le, by...) (rate(histogram_bucket{match}[window])))``.

        Example (p99 latency of the checkout, over every replica and route, over the last 4 s)::

            world.metrics.quantile(0.99, "http_server_request_duration_seconds", 4.0, service="checkout")

        Raises:
            InvalidParameterError: ``q`` not from 0 to 1; see ``rate`` for the rest.
        """
        keep = check_labels(by, "by")
        base = histogram[: -len("_bucket")] if histogram.endswith("_bucket") else histogram
        buckets = self.rate(f"{base}_bucket", window, at, **match)
        return histogram_quantile(q, sum_by(buckets, keep + ("le",)))

    def range(self, query: Callable[[float], list[Sample]], *, start: float | None = None, end: float | None = None,
              step: float | None = None) -> list[Series]:
        """A range query: ``query(at)`` evaluated at ``start``, ``start + step``, ... up to ``end`` (by default
        every scrape), one ``Series`` per label set (NaN where it had no value), as Grafana draws a panel.

        Example::

            errors = world.metrics.range(lambda at: sum_by(world.metrics.rate(
                "http_server_requests_total", 4.0, at, status=re.compile("5..")), ("service",)))

        Raises:
            InvalidParameterError: a negative ``start``, ``end`` before ``start``, a ``step`` that is not > 0.
        """
        start = self.scrape_times[0] if start is None and self.scrape_times else _checks.seconds("start", start or 0.0)
        end = self._at(end)
        step = self.interval if step is None else _checks.seconds("step", step, positive=True)
        if end < start:
            raise InvalidParameterError(f"end={end!r} is before start={start!r}: give start <= end")
        times = [start + i * step for i in range(int((end - start) / step + _EPS) + 1)]
        found: dict[LabelSet, dict[int, float]] = {}
        for i, at in enumerate(times):
            for sample in query(at):
                found.setdefault(sample.labelset, {})[i] = sample.value
        return [
            Series(labels, tuple(times), tuple(values.get(i, math.nan) for i in range(len(times))))
            for labels, values in sorted(found.items())
        ]

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
                    labels = _relabel(s.labels, target) if target else s.labels
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


def _relabel(labels: Mapping[str, str], target: LabelSet) -> dict[str, str]:
    """A scraped sample's labels with its target's; a clashing label of its own is kept as ``exported_NAME``,
    as Prometheus does (``honor_labels: false``)."""
    out = dict(labels)
    for name, value in target:
        if name in out:
            out[f"exported_{name}"] = out[name]
        out[name] = value
    return out


def _matches(value: str, wanted: str | re.Pattern[str]) -> bool:
    return value == wanted if isinstance(wanted, str) else wanted.fullmatch(value) is not None


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
