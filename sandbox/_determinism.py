"""Process-wide sources of chance and time, answered by the world inside sandbox code.

Service code written for production calls ``time.time()``, ``uuid.uuid4()`` and
``random.random()`` directly; AI assistants write ids as ``str(uuid.uuid4())`` and
jitter as ``random.uniform(0, 0.1)`` all the time. Inside a world those would read
the real clock and the operating system's entropy, and a run would stop replaying
from its seed. So while a sandbox task runs, these module functions answer from the
world instead (and outside sandbox tasks they are exactly the originals):

==============================================  =============================================
``time.time()``, ``time.time_ns()``             the node's clock (offset and drift included)
``time.monotonic()``, ``time.perf_counter()``   the node's monotonic clock (and ``_ns``)
``time.sleep(s)``                               ``ForeignAwaitError``: it would block the
                                                real thread; ``await sandbox.sleep(s)``
``uuid.uuid4()``                                a UUID from the world's seeded stream
``random.random()``, ``random.uniform()``...    the node's seeded stream ``random/<node>``
==============================================  =============================================

Code that imported a function by name before the sandbox was imported (``from time
import time`` in a module loaded earlier) keeps the original; service modules loaded
by a world (``isolate_module=True``) always see these. ``datetime.now()`` cannot be
redirected: use ``sandbox.clock`` (``clock.now()``) in service code.
"""

from __future__ import annotations

import random as _random
import time as _time
import uuid as _uuid
from collections.abc import Callable
from typing import Any

from ._runtime import current_node
from .errors import ForeignAwaitError

_ORIGINALS: dict[tuple[Any, str], Callable[..., Any]] = {}

RANDOM_FUNCTIONS = (
    "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample",
    "gauss", "normalvariate", "lognormvariate", "expovariate", "vonmisesvariate", "gammavariate",
    "betavariate", "paretovariate", "weibullvariate", "triangular", "getrandbits", "randbytes",
)


def _install(module: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    key = (module, name)
    if key in _ORIGINALS:
        return
    original = getattr(module, name, None)
    if original is None:
        return
    _ORIGINALS[key] = original
    replacement = make(original)
    replacement.__name__ = name
    replacement.__qualname__ = name
    replacement.__doc__ = (original.__doc__ or "") + "\n\n(Inside a Chaos Dojo sandbox task, answered by the world.)"
    replacement.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(module, name, replacement)


def _clock_reading(method: str, scale: float | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def reading() -> Any:
            node = current_node.get()
            if node is None:
                return original()
            value = getattr(node.clock, method)()
            return value if scale is None else round(value * scale)

        return reading

    return make


def _sleep(original: Callable[..., Any]) -> Callable[..., Any]:
    def sleep(seconds: float) -> None:
        node = current_node.get()
        if node is None:
            return original(seconds)
        raise ForeignAwaitError(
            f"time.sleep({seconds!r}) in service code on {node.name!r} would block the real thread and "
            f"not pass any virtual time: use `await sandbox.sleep({seconds!r})`"
        )

    return sleep


def _uuid4(original: Callable[..., Any]) -> Callable[..., Any]:
    def uuid4() -> _uuid.UUID:
        node = current_node.get()
        if node is None:
            return original()
        return _uuid.UUID(int=node.world.streams[f"uuid/{node.name}"].getrandbits(128), version=4)

    return uuid4


def _seeded(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def draw(*args: Any, **kwargs: Any) -> Any:
            node = current_node.get()
            if node is None:
                return original(*args, **kwargs)
            return getattr(node.world.streams[f"random/{node.name}"], name)(*args, **kwargs)

        return draw

    return make


def install() -> None:
    """Redirect the functions in the module docstring's table (idempotent)."""
    _install(_time, "time", _clock_reading("time", None))
    _install(_time, "time_ns", _clock_reading("time_ns", None))
    _install(_time, "monotonic", _clock_reading("monotonic", None))
    _install(_time, "monotonic_ns", _clock_reading("monotonic", 1e9))
    _install(_time, "perf_counter", _clock_reading("monotonic", None))
    _install(_time, "perf_counter_ns", _clock_reading("monotonic", 1e9))
    _install(_time, "sleep", _sleep)
    _install(_uuid, "uuid4", _uuid4)
    for name in RANDOM_FUNCTIONS:
        _install(_random, name, _seeded(name))


install()
