"""Faults: break a world on purpose, on a schedule, and see what fired.

Faults are plain data (``specs``), put into a world by ``world.inject(schedule)``
(``injector``), drawn from a seed by ``nemesis``, generated and shrunk by
Hypothesis (``sandbox.strategies``), and reported by ``coverage``.

Example::

    import sandbox
    from sandbox.faults import Loss, Partition, Schedule

    world = build_world(seed=3)
    world.inject(Schedule([
        Loss("payments", probability=0.3, start=0.5, duration=2.0),
        Partition("orders", "inventory", start=3.0, duration=1.0),
    ]))
    world.run(settle=2.0)          # fault phase, then a quiet phase with every fault healed
    print(world.chaos.coverage())  # what fired, and which recovery paths the code took
"""

from __future__ import annotations

from .coverage import Coverage, coverage
from .injector import Chaos, FaultWindow
from .nemesis import DEFAULT_KINDS, Targets, nemesis
from .specs import (
    KINDS,
    Bandwidth,
    Bridge,
    ClockSkew,
    Clog,
    Delay,
    DiskLoss,
    Duplicate,
    Failure,
    Fault,
    Isolate,
    Kill,
    LinkFault,
    LockTimeouts,
    Loss,
    Partition,
    Pause,
    Rebalance,
    Redelivery,
    Reorder,
    Schedule,
    SlowStorage,
    SplitHalves,
    StorageTimeout,
)

__all__ = [
    "Fault",
    "LinkFault",
    "Schedule",
    "KINDS",
    # NetworkChaos
    "Delay",
    "Loss",
    "Duplicate",
    "Reorder",
    "Bandwidth",
    "Clog",
    "Partition",
    "Isolate",
    "SplitHalves",
    "Bridge",
    # PodChaos
    "Kill",
    "DiskLoss",
    "Failure",
    "Pause",
    # TimeChaos
    "ClockSkew",
    # IOChaos
    "SlowStorage",
    "StorageTimeout",
    "LockTimeouts",
    # KafkaChaos
    "Rebalance",
    "Redelivery",
    # drawing, running, reporting
    "nemesis",
    "DEFAULT_KINDS",
    "Targets",
    "Chaos",
    "FaultWindow",
    "Coverage",
    "coverage",
]
