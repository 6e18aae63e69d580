"""Domain events and "sometimes" assertions: what service code tells the checkers.

The network, the databases and the broker are observed by the sandbox on their
own. What only the service knows (a saga step done or undone, a circuit breaker
changing state, a retry it decided to make) it says with ``sandbox.event``. And
what a test run must have *exercised* to mean anything (a retry that succeeded,
a compensation, a redelivered message handled) it says with ``sandbox.sometimes``
or ``sandbox.reachable``, as in Antithesis' SDK: a green run in which the retry
path never ran proves nothing about the retry path, and the coverage report says so.

Example (service code)::

    sandbox.event("saga", saga=order_id, step="charge", action="undo")
    sandbox.event("breaker", name="payments", before="closed", after="open")
    sandbox.sometimes(attempt > 1, "a payment was retried")
    sandbox.reachable("a reservation was released")

Outside a running world (a FastAPI ``TestClient``, a plain unit test) these calls
do nothing, so the same code runs everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._runtime import current_node
from .errors import InvalidParameterError

if TYPE_CHECKING:
    from .world import World

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Event:
    """One domain event: at virtual ``time`` node ``node`` said ``kind`` with ``fields``."""

    time: float
    node: str
    kind: str
    fields: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def __str__(self) -> str:
        shown = " ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.time:9.4f} {self.node} {self.kind} {shown}".rstrip()


@dataclass
class Assertion:
    """Tally of one ``sometimes`` / ``reachable`` assertion over a run: how often it was
    evaluated, how often it was true, and where it first came true."""

    message: str
    kind: str  # "sometimes" or "reachable"
    evaluated: int = 0
    satisfied: int = 0
    first: tuple[float, str] | None = None  # (time, node) of the first time it held

    @property
    def held(self) -> bool:
        return self.satisfied > 0

    def __str__(self) -> str:
        if self.held:
            assert self.first is not None
            return (
                f"{'ok' if self.held else '--'} {self.kind}({self.message!r}): true {self.satisfied} of "
                f"{self.evaluated} times, first at t={self.first[0]:.4f} on {self.first[1]}"
            )
        if self.evaluated:
            return f"-- {self.kind}({self.message!r}): evaluated {self.evaluated} times, never true"
        return f"-- {self.kind}({self.message!r}): never reached"


def _world_and_node() -> tuple[World, str] | None:
    node = current_node.get()
    if node is None:
        return None
    return node.world, node.name


def _check_kind(kind: Any, what: str) -> str:
    if not isinstance(kind, str) or not kind:
        raise InvalidParameterError(f"{what}={kind!r}: use a short non-empty string such as 'saga' or 'breaker'")
    return kind


def event(kind: str, **fields: Any) -> None:
    """Record a domain event for the checkers (no-op outside a running world).

    Field values must be plain scalars (str, int, float, bool, None), so that the
    event log stays a faithful, replayable record.

    Example::

        sandbox.event("saga", saga="ord-7", step="reserve", action="do")

    Raises:
        InvalidParameterError: an empty kind, or a field value that is not a plain scalar.
    """
    _check_kind(kind, "kind")
    for name, value in fields.items():
        if not isinstance(value, _SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
            raise InvalidParameterError(
                f"sandbox.event({kind!r}, {name}={value!r}): field values must be plain str, int, finite float, "
                f"bool or None; pass an id or a number, not an object"
            )
    where = _world_and_node()
    if where is None:
        return
    world, node = where
    world._said(Event(world.now, node, kind, MappingProxyType(dict(fields))))
    world.record("event", node, kind, tuple(fields.items()))


def sometimes(condition: Any, message: str) -> bool:
    """Assert that ``condition`` is true at least once somewhere in a run (or in a search).

    Returns ``bool(condition)``, so it can wrap a test inline. The tally shows in the
    run's coverage report; a "sometimes" that never held means the path was never
    exercised, and a green result says less than it seems.

    Example::

        if sandbox.sometimes(response.status_code == 503, "payments answered 503"):
            ...
    """
    _check_kind(message, "message")
    held = bool(condition)
    where = _world_and_node()
    if where is not None:
        world, node = where
        _tally(world, message, "sometimes", held, node)
    return held


def reachable(message: str) -> None:
    """Assert that this line is reached at least once in a run (a ``sometimes(True, ...)``)."""
    _check_kind(message, "message")
    where = _world_and_node()
    if where is not None:
        world, node = where
        _tally(world, message, "reachable", True, node)


def declare(world: World, message: str, kind: str = "sometimes") -> Assertion:
    """Make ``message`` known to ``world`` before the run, so that a path never reached
    still shows in the coverage report ("never reached") instead of being missing."""
    _check_kind(message, "message")
    if kind not in ("sometimes", "reachable"):
        raise InvalidParameterError(f"kind={kind!r}: use 'sometimes' or 'reachable'")
    found = world.assertions.get(message)
    if found is None:
        found = world.assertions[message] = Assertion(message, kind)
    return found


def _tally(world: World, message: str, kind: str, held: bool, node: str) -> None:
    tally = world.assertions.get(message)
    if tally is None:
        tally = world.assertions[message] = Assertion(message, kind)
    tally.evaluated += 1
    if held:
        tally.satisfied += 1
        if tally.first is None:
            tally.first = (world.now, node)
            world.record("assert.first", node, message)
