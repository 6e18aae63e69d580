"""Virtual time is floating point: one rule for every deadline.

SimPy adds delays to ``env.now`` in floating point, so a timer armed at ``t`` for ``d``
seconds fires at a ``now`` for which ``now - t`` may be ``d - 2e-16``: a check
``now - t >= d`` made by that very timer fails, and nothing checks again (a database's
idle-transaction timer kept an abandoned transaction's row locks for ever that way).
So no sandbox code compares a virtual instant with a deadline directly. It asks ``due``:
a deadline is due once ``now`` is within ``TOLERANCE`` (a nanosecond) of it; and it arms
timers with ``call_at``, at the absolute deadline that ``due`` will be asked about.

Example::

    deadline = tx.last_active + idle_timeout
    call_at(env, deadline, lambda: abort(tx) if due(env.now, tx.last_active + idle_timeout) else None)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simpy.events import Timeout

#: How close to a deadline counts as at it (seconds of virtual time): far below any delay the
#: sandbox models (microseconds at the least), far above float rounding at any run's length.
TOLERANCE = 1e-9


def due(now: float, deadline: float) -> bool:
    """True once virtual time ``now`` has reached ``deadline`` (within ``TOLERANCE``)."""
    return now >= deadline - TOLERANCE


def call_at(env: Any, deadline: float, callback: Callable[[], Any]) -> Timeout:
    """Call ``callback()`` when virtual time reaches ``deadline`` (at once if it has); the timer event."""
    timer = Timeout(env, max(deadline - env.now, 0.0), deadline)
    timer.callbacks.append(lambda _event: callback())
    return timer
