"""Workload clients: the users and load generators outside the services.

A workload client is an ``async def`` function run on a node of its own (a user's
browser, a load generator). It calls services over the same simulated network
with the same HTTP client the services use, and records what it does in the
world's history, Jepsen-style::

    async def shopper(client: sandbox.Client) -> None:
        for _ in range(3):
            async with client.operation("place-order", {"sku": "lamp", "qty": 1}) as op:
                r = await client.http.post("http://orders/orders", json={"sku": "lamp", "qty": 1})
                op.ok(r.json()) if r.status_code == 201 else op.fail(r.json())
            await client.sleep(client.random.expovariate(10))

    world.add_client("shopper-0", shopper)

Inside ``client.operation(...)``, a ``SimulatedFailure`` (a timeout, say) is
recorded as ``info`` (the outcome is unknown) and does not propagate; any other
exception is recorded as ``info`` and re-raised.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from simpy.events import Event

from ._runtime import Task, sleep
from .errors import SimulatedFailure
from .http import HttpClient
from .nodes import Node

if TYPE_CHECKING:
    from .world import World

WorkloadFn = Callable[..., Awaitable[Any]]
_INVOKED: Any = object()


class Client:
    """What a workload function gets: its name, HTTP client, clock, seeded random stream."""

    def __init__(self, node: ClientNode) -> None:
        self._node = node
        self.name = node.name
        self.http = HttpClient(node)
        self.random: random.Random = node.world.streams[f"client/{node.name}"]

    @property
    def now(self) -> float:
        """Virtual time now, in seconds."""
        return self._node.env.now

    @property
    def clock(self):
        """This client machine's clock (offset and drift settable)."""
        return self._node.clock

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time."""
        await sleep(seconds)

    def operation(self, f: str, value: Any = None) -> Operation:
        """Record one operation in the history: ``async with client.operation(f, value) as op:``."""
        return Operation(self._node, f, value)


class Operation:
    """One history operation in progress; complete it with ``ok``, ``fail`` or ``info`` (or
    ``answered`` with an HTTP response, which picks one)."""

    def __init__(self, node: ClientNode, f: str, value: Any) -> None:
        self._node = node
        self.f = f
        self.value = value
        self._outcome: tuple[str, Any, str | None] | None = None

    def ok(self, value: Any = _INVOKED) -> None:
        """It happened; ``value`` is what the client observed (by default, the invoked value)."""
        self._outcome = ("ok", self.value if value is _INVOKED else value, None)

    def fail(self, value: Any = None, error: str | None = None) -> None:
        """It certainly did not happen (the service said so)."""
        self._outcome = ("fail", value, error)

    def info(self, value: Any = None, error: str | None = None) -> None:
        """The client cannot tell whether it happened."""
        self._outcome = ("info", value, error)

    def answered(self, response: Any) -> None:
        """Complete with an HTTP answer, read as Jepsen reads one: a 2xx happened (``ok``, its JSON
        body), a 4xx certainly did not (``fail``: the service refused), anything else (a 5xx) may or
        may not have (``info``); the last two keep ``{"status": ..., "detail": <the body's text>}``.

        Example::

            async with client.operation("place-order", request) as op:
                op.answered(await client.http.post("http://orders/orders", json=request))
        """
        status = response.status_code
        if 200 <= status < 300:
            self.ok(response.json())
        elif 400 <= status < 500:
            self.fail({"status": status, "detail": response.text})
        else:
            self.info({"status": status, "detail": response.text})

    async def __aenter__(self) -> Operation:
        node = self._node
        node.world.history.invoke(node.env.now, node.process, self.f, self.value)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        node = self._node
        history = node.world.history
        if exc is not None and not isinstance(exc, Exception):
            return False  # the client node crashed: its operation stays open, as in Jepsen
        if exc is not None:
            history.complete(node.env.now, node.process, "info", None, f"{type(exc).__name__}: {exc}")
            return isinstance(exc, SimulatedFailure)
        kind, value, error = self._outcome or ("ok", self.value, None)
        history.complete(node.env.now, node.process, kind, value, error)  # type: ignore[arg-type]
        return False


class ClientNode(Node):
    """A node running one workload function."""

    kind = "client"

    def __init__(self, world: World, name: str, fn: WorkloadFn, args: tuple[Any, ...], start: float) -> None:
        super().__init__(world, name)
        self.fn = fn
        self.args = args
        self.start = start
        self.done = Event(world.env)
        self.task: Task | None = None

    @property
    def process(self) -> str:
        """The history's name for this client: its node name, then ``name#1``, ``name#2``... after
        restarts. As in Jepsen, a crashed client's open operation stays open for ever (its outcome
        is unknown) and the restarted client is a new process."""
        return self.name if self.epoch == 0 else f"{self.name}#{self.epoch}"

    def on_start(self) -> None:
        if self.done.triggered:  # restarted after a crash: the workload runs again from the top
            self.done = Event(self.env)
        self.spawn_soon(self._main, f"client {self.name}", self._finished)

    async def _main(self) -> Any:
        if self.start:
            await sleep(self.start)
        return await self.fn(Client(self), *self.args)

    def _finished(self, task: Task) -> None:
        if task.error is not None:
            self.world.record_error(self, "workload", task.error)
        if not self.done.triggered:
            self.done.succeed(task.result)

    def on_crash(self) -> None:
        if not self.done.triggered:
            self.done.succeed(None)
