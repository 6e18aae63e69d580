"""Per-node clocks: what ``time.time()`` would say on each machine.

Virtual time (``world.now``) is the one true time of the simulation. A node's
clock reads it through its own offset and drift, the way a real machine's clock
is set a little wrong and runs a little fast or slow:
``clock.time() = EPOCH + local seconds``, where local seconds advance at
``1 + drift`` times the rate of virtual time and jump by ``offset``.

Example::

    clock = world.node("orders-0").clock
    clock.offset = 2.5       # this machine's wall clock is 2.5 s ahead
    clock.drift = 1e-3       # and gains a millisecond every second
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import TYPE_CHECKING

from .errors import InvalidParameterError

if TYPE_CHECKING:
    from simpy import Environment

#: Virtual time 0 reads as 2026-01-01T00:00:00Z on a perfect clock.
EPOCH = 1_767_225_600.0
#: The same instant in integer nanoseconds (for exact span timestamps).
EPOCH_NS = 1_767_225_600 * 10**9


class Clock:
    """One node's clock: wall time with an offset and a drift over virtual time."""

    __slots__ = ("_env", "node", "_offset", "_drift", "_anchor_virtual", "_anchor_local")

    def __init__(self, env: Environment, node: str) -> None:
        self._env = env
        self.node = node
        self._offset = 0.0
        self._drift = 0.0
        self._anchor_virtual = 0.0
        self._anchor_local = 0.0

    def _local(self) -> float:
        return self._anchor_local + (self._env.now - self._anchor_virtual) * (1.0 + self._drift)

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead (+) or behind (-) of true time, apart from drift."""
        return self._offset

    @offset.setter
    def offset(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise InvalidParameterError(f"clock offset={seconds!r}: use a finite number of seconds")
        self._offset = float(seconds)

    @property
    def drift(self) -> float:
        """Extra seconds gained per second of true time (1e-4 = 100 ppm fast)."""
        return self._drift

    @drift.setter
    def drift(self, rate: float) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not -1.0 < rate < 1.0:
            raise InvalidParameterError(f"clock drift={rate!r}: use a rate between -1 and 1 (1e-4 is 100 ppm)")
        self._anchor_local = self._local()
        self._anchor_virtual = self._env.now
        self._drift = float(rate)

    def time(self) -> float:
        """Seconds since the Unix epoch, as this node's wall clock reads now (like ``time.time()``)."""
        return EPOCH + self._local() + self._offset

    def time_ns(self) -> int:
        """``time()`` in integer nanoseconds."""
        return round(self.time() * 1e9)

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never jumping with offset changes (like ``time.monotonic()``)."""
        return self._local()

    def now(self) -> _dt.datetime:
        """This node's wall clock as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.time(), tz=_dt.timezone.utc)

    def __repr__(self) -> str:
        return f"<Clock {self.node} offset={self._offset:+g}s drift={self._drift:+g}>"
