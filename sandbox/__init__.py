"""Chaos Dojo's sandbox: a deterministic simulated datacenter that runs real FastAPI services.

Build a world from a seed, host FastAPI apps on its nodes, give them databases and
a Kafka-like broker, drive them with workload clients, and read what happened::

    import sandbox
    from fastapi import Depends, FastAPI

    def create_app():
        app = FastAPI()

        @app.post("/orders", status_code=201)
        async def place(order: dict, db: sandbox.Database = Depends(sandbox.database("orders-db"))):
            await db.put("orders", order["id"], order)
            return order

        return app

    world = sandbox.World(seed=7)
    world.add_database("orders-db")
    world.add_service("orders", create_app, replicas=2)

    async def shopper(client: sandbox.Client):
        async with client.operation("place", {"id": "o1"}) as op:
            r = await client.http.post("http://orders/orders", json={"id": "o1"})
            op.ok(r.json())

    world.add_client("shopper-0", shopper)
    world.run()
    world.fingerprint()   # the same for seed 7 in every process

Everything public is importable from ``sandbox``; the submodules hold the details.
The documented submodules go further: ``sandbox.faults`` (fault schedules and the
nemesis), ``sandbox.checkers`` (invariants and linearizability), ``sandbox.explore``
(search seeds and schedules, shrink, replay) with ``sandbox.strategies`` (Hypothesis
strategies for schedules), ``sandbox.metrics`` (Prometheus-model metrics: queries, names), and ``sandbox.viz`` (sequence diagrams, trace waterfalls,
fault timelines, a stepper).
"""

from __future__ import annotations

from . import _determinism  # noqa: F401  (time, uuid and random answer from the world in sandbox code)
from ._determinism import HashSeedWarning, hashing_is_fixed, replica_globals
from ._runtime import gather, sleep
from .broker import Broker, Message, Producer, RecordMetadata, consumer
from .clients import Client, Operation
from .clocks import Clock
from .connections import Database, Transaction
from .deps import (
    clock,
    database,
    disk,
    hostname,
    http_client,
    producer,
    resolve,
    tracer,
)
from .errors import (
    BadSeedError,
    ConfigError,
    DuplicateKey,
    DuplicateNameError,
    ForeignAwaitError,
    IncompleteResponse,
    InvalidParameterError,
    InvalidReplicasError,
    LivelockError,
    LockTimeout,
    NodeCrashed,
    NotInSandboxError,
    RequestTimeout,
    SandboxError,
    ScenarioError,
    SimulatedFailure,
    TransactionAborted,
    UnknownNameError,
    UnknownServiceError,
    VersionConflict,
    WindowedRunError,
    WorldFinishedError,
)
from .events import Assertion, Event, event, reachable, sometimes
from .history import History, Op
from .http import HttpClient, Response, connect_local
from .metrics import Metrics, metrics_registry
from .network import LinkState, Network
from .nodes import Node
from .services import Service, ServiceError
from .storage import Row, Store
from .world import World

__all__ = [
    # the world
    "World",
    "Node",
    "Service",
    "ServiceError",
    "Network",
    "LinkState",
    "Clock",
    "History",
    "Op",
    "Metrics",
    # service code
    "sleep",
    "gather",
    "database",
    "disk",
    "http_client",
    "producer",
    "clock",
    "tracer",
    "hostname",
    "resolve",
    "replica_globals",
    "metrics_registry",
    "hashing_is_fixed",
    "HashSeedWarning",
    "consumer",
    "connect_local",
    "Database",
    "Transaction",
    "Row",
    "Store",
    "HttpClient",
    "Response",
    "Producer",
    "RecordMetadata",
    "Message",
    "Broker",
    "event",
    "sometimes",
    "reachable",
    "Event",
    "Assertion",
    # workload clients
    "Client",
    "Operation",
    # errors: misuse
    "SandboxError",
    "ConfigError",
    "BadSeedError",
    "DuplicateNameError",
    "UnknownNameError",
    "UnknownServiceError",
    "InvalidReplicasError",
    "InvalidParameterError",
    "WorldFinishedError",
    "WindowedRunError",
    "ScenarioError",
    "ForeignAwaitError",
    "LivelockError",
    "NotInSandboxError",
    # errors: simulated failures
    "SimulatedFailure",
    "RequestTimeout",
    "IncompleteResponse",
    "NodeCrashed",
    "LockTimeout",
    "VersionConflict",
    "DuplicateKey",
    "TransactionAborted",
]
