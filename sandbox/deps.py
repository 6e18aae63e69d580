"""FastAPI dependencies that hand service code the sandbox's clients.

Use them with ``Depends`` exactly like any other dependency::

    @app.post("/charges")
    async def charge(
        body: Charge,
        db: sandbox.Database = Depends(sandbox.database("payments-db")),
        http: sandbox.HttpClient = Depends(sandbox.http_client),
        producer: sandbox.Producer = Depends(sandbox.producer),
        clock: sandbox.Clock = Depends(sandbox.clock),
        tracer: Tracer = Depends(sandbox.tracer),
    ): ...

Inside a World each one is bound to the replica serving the request: the
database is reached over the simulated network, the clock is that machine's clock.
Outside a World (FastAPI's TestClient) the same dependencies give working local
stand-ins: an in-memory database kept on ``app.state``, the wall clock, an HTTP
client that calls apps connected with ``sandbox.connect_local``, and a producer
that keeps what it sent in ``app.state.chaos_dojo_sent``. Tests can also replace
any of them through ``app.dependency_overrides``, as with any FastAPI dependency.
"""

from __future__ import annotations

import time as _wall
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from ._runtime import node_or_none
from .connections import Database, _DiskTransport, _LocalTransport, _RemoteTransport
from .errors import UnknownNameError
from .http import HttpClient, LocalHttpClient, check_timeout
from .metrics import MeteredHttpClient
from .services import Instance, check_name
from .storage import Store

#: Disk write latency (an fsync), in seconds.
DISK_LATENCY = 0.001
#: How long a database call waits for its reply before RequestTimeout, in virtual seconds.
DB_TIMEOUT = 5.0

_database_providers: dict[tuple[str, float | None], Callable[..., Awaitable[Database]]] = {}


def _cached(node: Any, key: Any, make: Callable[[], Any]) -> Any:
    clients = node.__dict__.setdefault("_clients", {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = make()
    return client


def _local_state(request: Request) -> Any:
    return request.app.state


def database(name: str, *, timeout: float | None = DB_TIMEOUT) -> Callable[..., Awaitable[Database]]:
    """A dependency giving a connection to the database ``name`` (see the module docstring).

    Each call waits at most ``timeout`` virtual seconds for the database's reply,
    then raises ``RequestTimeout`` (None: wait forever). The same arguments always
    give the same dependency object, so
    ``app.dependency_overrides[sandbox.database("orders-db")]`` works.
    """
    check_name(name, "database")
    timeout = check_timeout(timeout)
    provider = _database_providers.get((name, timeout))
    if provider is not None:
        return provider

    key = ("db", name, timeout)

    async def provide_database(request: Request) -> Database:
        node = node_or_none()
        clients = getattr(node, "_clients", None)
        if clients is not None:
            client = clients.get(key)
            if client is not None:
                return client
        if node is None:
            state = _local_state(request)
            stores = getattr(state, "chaos_dojo_databases", None)
            if stores is None:
                stores = state.chaos_dojo_databases = {}
            store = stores.get(name)
            if store is None:
                store = stores[name] = Store(_LocalWorld, name, lock_timeout=2.0)
            return Database(_LocalTransport(store))
        return _cached(node, key, lambda: Database(_RemoteTransport(node, _database_node(node, name), timeout)))

    provide_database.__qualname__ = provide_database.__name__ = f"database_{name.replace('-', '_')}"
    _database_providers[(name, timeout)] = provide_database
    return provide_database


def _database_node(node: Any, name: str) -> Any:
    db = node.world.databases.get(name)
    if db is None:
        raise UnknownNameError(
            f"service code on {node.name!r} asked for database {name!r}, which this world does not have; "
            f"databases: {sorted(node.world.databases)}. Add it with world.add_database({name!r})"
        )
    return db


async def disk(request: Request) -> Database:
    """A dependency giving this replica's local durable disk (same API as a database)."""
    node = node_or_none()
    if node is None:
        state = _local_state(request)
        store = getattr(state, "chaos_dojo_disk", None)
        if store is None:
            store = state.chaos_dojo_disk = Store(_LocalWorld, "disk", lock_timeout=2.0)
        return Database(_LocalTransport(store))
    if not isinstance(node, Instance):
        raise UnknownNameError(f"{node.name!r} is a {node.kind} node; only service replicas have a local disk")
    from .world import instance_disk

    return _cached(node, "disk", lambda: Database(_DiskTransport(node, instance_disk(node), DISK_LATENCY)))


async def http_client(request: Request) -> HttpClient | LocalHttpClient:
    """A dependency giving an HTTP client to call other services over the simulated network."""
    node = node_or_none()
    if node is None:
        return LocalHttpClient(getattr(_local_state(request), "chaos_dojo_services", {}))
    return _cached(node, "http", lambda: (HttpClient if node.world.metrics is None else MeteredHttpClient)(node))


def hostname() -> str:
    """The name of the machine running this code (``orders-1``), like ``socket.gethostname()``.

    Outside a World it is ``"localhost"``.
    """
    node = node_or_none()
    return "localhost" if node is None else node.name


class WallClock:
    """The machine's real clock, for service code run outside a World (FastAPI's TestClient)."""

    offset = 0.0
    drift = 0.0

    def time(self) -> float:
        return _wall.time()

    def time_ns(self) -> int:
        return _wall.time_ns()

    def monotonic(self) -> float:
        return _wall.monotonic()

    def now(self) -> Any:
        import datetime as dt

        return dt.datetime.now(tz=dt.timezone.utc)


async def clock(request: Request) -> Any:
    """A dependency giving this machine's clock (``clock.time()``, ``clock.now()``, ``clock.monotonic()``)."""
    node = node_or_none()
    if node is None:
        return WallClock()
    return node.clock


async def producer(request: Request) -> Any:
    """A dependency giving a producer for the Kafka-like broker (``await producer.send(topic, value, key=...)``)."""
    from .broker import LocalProducer, Producer

    node = node_or_none()
    if node is None:
        state = _local_state(request)
        sent = getattr(state, "chaos_dojo_sent", None)
        if sent is None:
            sent = state.chaos_dojo_sent = []
        return LocalProducer(sent)
    return _cached(node, "producer", lambda: Producer(node))


async def tracer(request: Request) -> Any:
    """A dependency giving an OpenTelemetry tracer whose spans use this world's virtual time."""
    from opentelemetry import trace

    node = node_or_none()
    if node is None:
        return trace.get_tracer("chaos-dojo")
    if node.world.tracing is None:
        return trace.NoOpTracer()
    return node.world.tracing.tracer_for(node)


async def resolve(app: Any, dependency: Callable[..., Any]) -> Any:
    """The client a sandbox dependency gives, outside any request: for a loop the app's lifespan
    starts (a recovery loop, a gossip loop, an outbox relay), which has no request to depend on.

    ``dependency`` is what you would pass to ``Depends``: ``sandbox.database("orders-db")``,
    ``sandbox.http_client``, ``sandbox.producer``, ``sandbox.clock``, ``sandbox.tracer``,
    ``sandbox.disk``. Inside a World the client belongs to the replica running the loop;
    outside one (FastAPI's TestClient) it is the same local stand-in the app's requests get.

    Example::

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(recovery_loop, app)
                yield
                tasks.cancel_scope.cancel()

        async def recovery_loop(app: FastAPI) -> None:
            db = await sandbox.resolve(app, sandbox.database("orders-db"))
            ...

    Raises:
        InvalidParameterError: ``dependency`` is not one of the sandbox's request dependencies.
    """
    from .errors import InvalidParameterError

    if dependency is hostname or not callable(dependency):
        raise InvalidParameterError(
            f"dependency={dependency!r}: pass what you would give Depends(), e.g. sandbox.database('orders-db') "
            f"or sandbox.http_client (sandbox.hostname() needs no resolving: call it)"
        )
    return await dependency(Request({"type": "http", "app": app, "headers": []}))


class _LocalWorldType:
    """Just enough of a World for a Store used outside the sandbox."""

    class _Env:
        now = 0.0

    env = _Env()

    @staticmethod
    def record(*_fields: Any) -> None:
        return None


_LocalWorld: Any = _LocalWorldType()
