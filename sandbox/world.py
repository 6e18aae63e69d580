"""The World: one simulated datacenter run, from one seed.

A world holds virtual time (a SimPy environment), the seed and its named random
streams, the nodes (service replicas, databases, the broker, workload clients),
the network between them, the tracer, the history of client operations, and the
event log whose hash is the run's fingerprint.

Example::

    world = sandbox.World(seed=7)
    world.add_database("orders-db")
    world.add_service("orders", create_app, replicas=2)
    world.add_client("shopper-0", shopper)
    world.run(until=30)
    print(world.fingerprint())   # the same for seed 7 in any process
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import simpy
from simpy.events import AllOf

from ._checks import seconds
from ._lookups import Lookups
from ._runtime import driving
from ._streams import Streams, check_seed
from ._wallclock import DEFAULT_WALL_LIMIT, OverBudget, enforce_wall_limit
from .broker import BROKER_NODE
from .clients import ClientNode, WorkloadFn
from .errors import (
    DuplicateNameError,
    InvalidParameterError,
    InvalidReplicasError,
    UnknownNameError,
    UnknownServiceError,
    WorldFinishedError,
)
from .events import Assertion, Event
from .history import History
from .network import Network
from .nodes import Node
from .recorder import Recorder, WindowedRunError, check_keep
from .services import (
    AppFactory,
    Instance,
    Service,
    ServiceError,
    check_name,
    format_error,
    release_app_caches,
)
from .storage import DatabaseNode, Store

if TYPE_CHECKING:
    from .broker import Broker
    from .faults import Chaos, Schedule
    from .metrics import Metrics
    from .tracing import Tracing

#: The most replicas one service may have: each runs its own copy of the app (a world of 10**9 would never be built).
MAX_REPLICAS = 100


class World(Lookups):
    """One deterministic run of a simulated datacenter (see the module docstring).

    Args:
        seed: a non-negative int; every random draw of the run derives from it.
        tracing: record OpenTelemetry spans (``world.spans()``, ``world.tracing.otlp_json()``).
        wall_limit: real seconds each ``run()`` may take (None: no limit).
        keep_events: for long runs, keep only the last N entries of the event log (and the last N domain
            events) instead of all of them, so that memory stays flat however long the world runs. The
            fingerprint is the same; what reads the whole log (checkers, pictures, ``evidence.snapshot``)
            refuses once some were let go (``WindowedRunError``). None (the default) keeps everything.
        keep_spans: the same for finished spans (with ``tracing=True``): keep only the last N.
        metrics: record and scrape metrics in the Prometheus model (``world.metrics``, see ``sandbox.metrics``).
        scrape_interval: virtual seconds between two scrapes (with ``metrics=True``; 1 s unless told).

    Example (a long run: its log's last 100,000 entries kept, some 12 MB in the order system, whatever its
    length; the history, which the checkers of operations read, is kept whole)::

        world = sandbox.World(seed=7, keep_events=100_000)

    Raises:
        BadSeedError: ``seed`` is not a non-negative int.
        InvalidParameterError: ``keep_events`` or ``keep_spans`` is not None or a whole number >= 0, or
            ``keep_spans`` without ``tracing=True``, ``metrics`` not a bool, a ``scrape_interval`` that is not
            a number of seconds > 0 or given without ``metrics=True``.
    """

    def __init__(
        self,
        seed: int,
        *,
        tracing: bool = False,
        wall_limit: float | None = DEFAULT_WALL_LIMIT,
        keep_events: int | None = None,
        keep_spans: int | None = None,
        metrics: bool = False,
        scrape_interval: float | None = None,
    ) -> None:
        self.seed = check_seed(seed)
        if wall_limit is not None:
            seconds("wall_limit", wall_limit, positive=True)
        keep_events = check_keep("keep_events", keep_events, 100_000, "event log entries")
        keep_spans = check_keep("keep_spans", keep_spans, 10_000, "finished spans")
        if keep_spans is not None and not tracing:
            raise InvalidParameterError(
                f"keep_spans={keep_spans!r} without tracing=True: this world records no spans to keep; pass "
                f"tracing=True as well, or leave keep_spans out"
            )
        if not isinstance(metrics, bool):
            raise InvalidParameterError(f"metrics={metrics!r}: use True to record metrics, or False")
        if scrape_interval is not None:
            if not metrics:
                raise InvalidParameterError(
                    f"scrape_interval={scrape_interval!r} without metrics=True: this world scrapes nothing; pass "
                    f"metrics=True as well, or leave scrape_interval out"
                )
            seconds("scrape_interval", scrape_interval, positive=True)
        #: Real seconds each ``run()`` call may take before the code running is stopped (None: no limit).
        self.wall_limit = wall_limit
        self.env = simpy.Environment()
        self.streams = Streams(self.seed)
        self.recorder = Recorder(keep_events)
        self._log = self.recorder.sink
        self.network = Network(self)
        self.nodes: dict[str, Node] = {}
        self.services: dict[str, Service] = {}
        self.databases: dict[str, DatabaseNode] = {}
        self.clients: dict[str, ClientNode] = {}
        self.history = History()
        self.errors: list[ServiceError] = []
        self._events: list[Event] | deque[Event] = [] if keep_events is None else deque(maxlen=keep_events)
        self._events_said = 0
        #: ``sandbox.sometimes`` / ``sandbox.reachable`` tallies, by message.
        self.assertions: dict[str, Assertion] = {}
        self._ids = 0
        self._broker: Broker | None = None
        self._finished = False
        self._running = False
        #: Why ``run()`` stopped before its clients finished (its virtual-time limit), or None.
        self.stalled: str | None = None
        #: Why ``run()`` was stopped by its wall-clock limit (which node, task and line), or None. Every
        #: invariant fails on such a world: what it would have done is unknown.
        self.overran: str | None = None
        #: The fault schedule in force (``inject``), or None.
        self.chaos: Chaos | None = None
        self.tracing: Tracing | None = None
        if tracing:
            from .tracing import Tracing

            self.tracing = Tracing(self, keep_spans)
        #: The metrics scraped in virtual time (``World(metrics=True)``), or None.
        self.metrics: Metrics | None = None
        if metrics:
            from .metrics import DEFAULT_SCRAPE_INTERVAL, Metrics

            self.metrics = Metrics(self, DEFAULT_SCRAPE_INTERVAL if scrape_interval is None else float(scrape_interval))

    def __repr__(self) -> str:
        return f"<World seed={self.seed} t={self.now:.4f} nodes={len(self.nodes)}>"

    # --- basics ----------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual time now, in seconds since the world began."""
        return self.env.now

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def record(self, kind: str, *fields: Any) -> None:
        """Append one entry to the event log (plain values only)."""
        self._log.append((self.env.now, kind, *fields))

    @property
    def events(self) -> list[Event]:
        """Domain events said by service code with ``sandbox.event`` (saga steps, breaker states...), in order.

        Raises:
            WindowedRunError: the world keeps only its last events (``keep_events``) and some were let go.
        """
        events = self._events
        if isinstance(events, list):
            return events
        if self._events_said > len(events):
            raise WindowedRunError(
                f"this world keeps only its last {events.maxlen:,} domain events (World(keep_events="
                f"{events.maxlen})) and let {self._events_said - len(events):,} earlier ones go, so a checker "
                f"reading them (sagas, breakers, retries) would judge part of the run as the whole. Build the "
                f"world without keep_events to check it; world.recorder.recent('event') gives the ones kept"
            )
        return list(events)

    def _said(self, event: Event) -> None:
        """Keep one domain event said by service code (``sandbox.event``)."""
        self._events.append(event)
        self._events_said += 1

    def spans(self) -> list[Any]:
        """The finished OpenTelemetry spans of this run (empty unless ``tracing=True``).

        Raises:
            WindowedRunError: the world keeps only its last spans (``keep_spans``) and some were let go.
        """
        return self.tracing.spans() if self.tracing is not None else []

    def fingerprint(self) -> str:
        """A hash of the full event log and the history: equal for equal seeds, in any process (and the same
        with ``keep_events``: the entries let go were hashed on their way out)."""
        return self.recorder.fingerprint(extra=[repr(op) for op in self.history])

    # --- building the datacenter -----------------------------------------------------

    def _claim(self, name: str, what: str) -> None:
        if self._running:
            raise WorldFinishedError(
                f"cannot add {what} {name!r} while the world runs (from code running inside it); build the whole "
                f"world (services, databases, clients) before run()"
            )
        if self._finished:
            raise WorldFinishedError(
                f"cannot add {what} {name!r}: this world already ran its workload to completion (t={self.now:.4f}); "
                f"build a new World(seed={self.seed}), add everything to it, then run it"
            )
        check_name(name, what)
        if name == BROKER_NODE:
            raise DuplicateNameError(f"{what} name {name!r} is reserved for the broker's node; pick another name")
        for taken, kind in ((self.services, "service"), (self.nodes, "node")):
            if name in taken:
                raise DuplicateNameError(
                    f"{what} name {name!r} is already taken by a {kind} in this world; pick another name"
                )

    def add_service(self, name: str, app_factory: AppFactory, *, replicas: int = 1, isolate_module: bool = True) -> Service:
        """Host a FastAPI app as service ``name`` with ``replicas`` replicas (nodes name-0, name-1...).

        ``app_factory()`` must build and return the app; it runs again at every
        (re)start of a replica. With ``isolate_module`` (the default) a factory
        defined in a module file runs from a fresh copy of that module per replica,
        so module-level state is per process, as in production.

        Raises:
            DuplicateNameError: the name is taken. InvalidReplicasError: replicas not in 1..MAX_REPLICAS.
            WorldFinishedError: the world already ran to completion, or is running.
        """
        self._claim(name, "service")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
            raise InvalidReplicasError(
                f"replicas={replicas!r} for service {name!r}: use a whole number from 1 (one process) to "
                f"{MAX_REPLICAS} (each replica runs its own copy of the app; 3 to 5 show every failure the course "
                f"teaches)"
            )
        if not callable(app_factory):
            raise InvalidParameterError(
                f"app_factory={app_factory!r} for service {name!r} is not callable: pass the function that "
                f"builds the app (create_app), not the app itself"
            )
        if hasattr(app_factory, "router") and hasattr(app_factory, "routes"):
            raise InvalidParameterError(
                f"service {name!r} was given the app object {app_factory!r}; pass the factory function that builds it "
                f"(e.g. `def create_app(): ...; return app`), so that a restarted replica starts from fresh memory"
            )
        for i in range(replicas):
            self._claim(f"{name}-{i}", "service replica")
        service = Service(self, name, app_factory, replicas, isolate_module)
        self.services[name] = service
        for instance in service.instances:
            self.nodes[instance.name] = instance
        try:
            for instance in service.instances:
                instance.on_start()
        except BaseException:
            # A factory that fails leaves no trace: fix it and add the service again.
            del self.services[name]
            for instance in service.instances:
                instance.alive = False  # replicas already started never become ready
                self.nodes.pop(instance.name, None)
            raise
        return service

    def add_database(
        self,
        name: str,
        *,
        latency: float = 0.0005,
        jitter: float = 0.0001,
        lock_timeout: float = 2.0,
        idle_timeout: float = 30.0,
    ) -> DatabaseNode:
        """Add a database server node ``name`` (per-operation ``latency`` seconds, +/- ``jitter``).

        ``lock_timeout`` bounds every wait for a row lock; a transaction idle for
        ``idle_timeout`` seconds is aborted (its client probably died).
        """
        self._claim(name, "database")
        node = DatabaseNode(
            self,
            name,
            latency=seconds("latency", latency),
            jitter=seconds("jitter", jitter),
            lock_timeout=seconds("lock_timeout", lock_timeout, positive=True),
            idle_timeout=seconds("idle_timeout", idle_timeout, positive=True),
        )
        self.nodes[name] = node
        self.databases[name] = node
        self.record("db.start", name)
        return node

    def add_client(self, name: str, fn: WorkloadFn, *args: Any, start: float = 0.0) -> ClientNode:
        """Run the workload function ``fn(client, *args)`` on a new client node ``name``.

        It starts ``start`` seconds of virtual time from now.
        """
        self._claim(name, "client")
        if not inspect.iscoroutinefunction(fn) and not inspect.iscoroutinefunction(getattr(fn, "__call__", None)):
            raise InvalidParameterError(
                f"fn={fn!r} for client {name!r}: pass an `async def fn(client)` function (a workload awaits the "
                f"network, so it must be a coroutine function)"
            )
        node = ClientNode(self, name, fn, args, seconds("start", start))
        self.nodes[name] = node
        self.clients[name] = node
        node.on_start()
        return node

    @property
    def broker(self) -> Broker:
        """The Kafka-like broker (a node named ``kafka``), created on first use."""
        if self._broker is None:
            from .broker import Broker

            self._broker = Broker(self)
        return self._broker

    # --- looking things up -----------------------------------------------------------

    def disk(self, node: str) -> Store:
        """The local durable disk of a service replica, to inspect."""
        instance = self.node(node)
        if not isinstance(instance, Instance):
            raise UnknownNameError(f"{node!r} is a {instance.kind} node; only service replicas have a local disk")
        return instance_disk(instance)

    def _expand(self, names: Iterable[str]) -> list[str]:
        if isinstance(names, str):
            names = [names]
        out: list[str] = []
        for name in names:
            service = self.services.get(name)
            found = [i.name for i in service.instances] if service is not None else [self._node_named(name, "node").name]
            for n in found:
                if n not in out:
                    out.append(n)
        return out

    def _route(self, host: str, caller: Node) -> Node:
        service = self.services.get(host)
        if service is not None:
            return service.pick(caller)
        node = self.nodes.get(host)
        if isinstance(node, Instance):
            return node
        raise UnknownServiceError(
            f"no service named {host!r} to send a request to; services: {sorted(self.services)}. "
            f"Use 'http://SERVICE/path' with one of them, or add it with world.add_service({host!r}, ...)"
        )

    # --- life of nodes ---------------------------------------------------------------

    def crash(self, name: str) -> None:
        """Crash a node (or every replica of a service) now."""
        for node_name in self._expand([name]):
            self.nodes[node_name].crash()

    def restart(self, name: str) -> None:
        """Restart a crashed node (or every crashed replica of a service) now."""
        for node_name in self._expand([name]):
            self.nodes[node_name].restart()

    def pause(self, name: str) -> None:
        """Freeze a node (or every replica of a service) now: see ``Node.pause``."""
        for node_name in self._expand([name]):
            self.nodes[node_name].pause()

    def resume(self, name: str) -> None:
        """Unfreeze a paused node (or every paused replica of a service) now."""
        for node_name in self._expand([name]):
            self.nodes[node_name].resume()

    def _node_crashed(self, node: Node) -> None:
        for db in self.databases.values():
            db.client_crashed(node)
        if self._broker is not None:
            self._broker.node_crashed(node)

    def _instance_ready(self, instance: Instance) -> None:
        if getattr(getattr(instance.app, "state", None), "chaos_dojo_consumers", None):
            self.broker.instance_ready(instance)

    def record_error(self, node: Node, where: str, error: BaseException) -> None:
        """Record an exception that escaped code running on ``node`` (``where``: the endpoint, consumer or
        task) in ``world.errors``, as a server's log would show it; the run goes on."""
        if isinstance(error, OverBudget):  # the run's wall-clock limit, recorded once by the run itself
            return
        kind, message = type(error).__name__, str(error)
        if isinstance(error, RuntimeError) and "unsupported async environment" in message:
            # httpx / httpcore found no asyncio loop: a real network client was used.
            kind = "ForeignAwaitError"
            message = (
                f"a real network client (httpx.AsyncClient, aiohttp...) tried to open a socket, which the sandbox "
                f"does not simulate ({error}); use the sandbox HTTP client "
                f"(`http: sandbox.HttpClient = Depends(sandbox.http_client)`), whose methods mirror httpx's"
            )
        self.record("service.error", node.name, where, kind)
        self.errors.append(ServiceError(self.env.now, node.name, where, kind, message, format_error(error)))

    # --- faults ----------------------------------------------------------------------

    def inject(self, schedule: Schedule) -> Chaos:
        """Put a fault schedule into this world (see ``sandbox.faults``), before it runs.

        Every name is checked now; each fault then starts and heals in virtual time,
        and at ``schedule.fault_phase_end`` whatever is still in force heals: the
        quiet phase begins. ``run()`` runs at least until then.

        Example::

            world.inject(Schedule([Partition("orders", "payments", start=1, duration=2)]))
            world.run(settle=2.0)
            world.chaos.coverage()

        Raises:
            InvalidParameterError: a name that is no node, database or consumer group of
                this world, a fault starting in the past, or a second schedule.
            WorldFinishedError: the world already ran to completion.
        """
        from .faults import Chaos

        if self.chaos is not None:
            raise InvalidParameterError(
                "this world already has a fault schedule; combine them into one (schedule_a + schedule_b) "
                "and inject that"
            )
        if self._finished:
            raise WorldFinishedError(f"this world already ran to completion; build a new World(seed={self.seed})")
        self.chaos = Chaos(self, schedule)
        return self.chaos

    # --- running ---------------------------------------------------------------------

    def run(self, until: float | None = None, *, limit: float = 3600.0, settle: float = 0.0) -> World:
        """Advance virtual time.

        ``run(until=t)`` runs to virtual time ``t`` (call again with a later ``t`` to
        go on). ``run()`` runs until every workload client has finished (or until
        ``limit`` virtual seconds from now: background consumers never stop by
        themselves) and, with a fault schedule injected, at least until its fault
        phase ends; then ``settle`` seconds more (the quiet phase) so that what the
        clients set in motion (queued messages, retries, compensations) can finish;
        after it the world is finished.

        Raises:
            WorldFinishedError: ``until`` is not later than now, or the world already ran to completion.
        """
        if self._finished:
            raise WorldFinishedError(
                f"this world already ran its workload to completion (t={self.now:.4f}); "
                f"build a new World(seed={self.seed}) to run again"
            )
        if until is not None:
            if isinstance(until, bool) or not isinstance(until, (int, float)) or not math.isfinite(until):
                raise InvalidParameterError(f"until={until!r}: use a finite number of virtual seconds")
            if until <= self.now:
                raise WorldFinishedError(
                    f"until={until!r} is not later than now (t={self.now:g}): virtual time only moves forward; "
                    f"pass a later until, or build a new World(seed={self.seed})"
                )
            with self._driven():
                self.env.run(until=until)
            release_app_caches()
            return self
        seconds("limit", limit, positive=True)
        seconds("settle", settle)
        with self._driven():
            self._run_to_completion(limit, settle)
        self._finished = True
        release_app_caches()
        return self

    @contextmanager
    def _driven(self) -> Iterator[None]:
        """While the world's loop runs: the run's guards (``driving``), its wall-clock limit, and no additions."""
        self._running = True
        try:
            with driving(), enforce_wall_limit(self, self.wall_limit):
                yield
        except OverBudget as over:
            self._overran(over)
        finally:
            self._running = False
            self.recorder.trim()  # with keep_events / keep_spans: exactly the last N kept between runs
            if self.tracing is not None:
                self.tracing.trim()

    def _overran(self, over: OverBudget) -> None:
        """The wall-clock limit stopped the run: say so (the world's errors, ``overran``, ``stalled``), and end it."""
        self.overran = self.stalled = over.message
        node = self.nodes.get(over.node or "")
        self.record("run.overran", over.node or "", over.task or "")
        self.errors.append(ServiceError(self.env.now, over.node or "(the sandbox)", over.task or "run",
                                        "WallClockLimit", over.message, over.message))
        if node is not None:
            for task in list(getattr(node, "tasks", {}).values()):
                task.alive = False  # abandoned mid-step: nothing resumes it
        self._finished = True

    def _run_to_completion(self, limit: float, settle: float) -> None:
        if self.clients:
            pending = [c.done for c in self.clients.values() if not c.done.triggered]
            if pending:
                deadline = self.env.timeout(limit)
                self.env.run(until=self.env.any_of([AllOf(self.env, pending), deadline]))
                running = [name for name, c in self.clients.items() if not c.done.triggered]
                if running:
                    self.stalled = (
                        f"the run reached its limit of {limit:g} virtual seconds (t={self.now:.4f}) with "
                        f"{len(running)} client(s) still running ({', '.join(running[:5])}"
                        f"{', ...' if len(running) > 5 else ''}): their last requests never got an answer "
                        f"(a service that waits or retries for ever?); what they did after it is missing"
                    )
                    self.record("run.limit", limit, *running)
        else:
            self.env.run(until=self.env.now + limit)
        chaos = self.chaos
        if chaos is not None and not chaos.healed:
            if self.env.now < chaos.heal_at:
                self.env.run(until=chaos.heal_at)
            chaos.heal()
        if settle:
            self.env.run(until=self.env.now + settle)

    @property
    def clients_done(self) -> bool:
        """True when every workload client has finished its workload."""
        return all(c.done.triggered for c in self.clients.values())


def instance_disk(instance: Instance) -> Store:
    if instance.disk_store is None:
        instance.disk_store = Store(instance.world, f"{instance.name}/disk", lock_timeout=2.0)
    return instance.disk_store
