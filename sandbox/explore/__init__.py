"""Explore a system under faults, find a broken invariant, shrink it to the smallest story.

A ``Scenario`` says how to build a world for a seed and a workload size.
``explore(scenario, invariants, seeds=..., schedules=...)`` runs it seed after
seed, each run with its fault schedule (a fault phase, then a quiet phase in which
every fault is healed), checks the invariants on the finished world, and stops at
the first violation. It then shrinks what it found (fewer faults, shorter ones, a
smaller workload; Hypothesis drives the search, and a last pass makes sure no
single fault can be dropped) and returns a ``Counterexample``: the seed, the
minimal schedule and workload, the violated invariant with its evidence,
``replay()`` and a one-line snippet to paste.

Example::

    from sandbox.checkers import no_double_charge
    from sandbox.examples.order_system import scenario
    from sandbox.explore import explore
    from sandbox.faults import nemesis

    found = explore(scenario, [no_double_charge()], seeds=range(50),
                    schedules=lambda seed: nemesis(seed, ["orders", "payments"], kinds=("delay", "loss")))
    print(found)            # the story, the schedule and the replay line
    found.replay()          # the same run again, exactly

``schedules`` may be None (no faults), one ``Schedule`` for every seed, a list of
schedules (one per seed, in turn), a function ``seed -> Schedule``, or a
Hypothesis strategy (``sandbox.strategies.schedules(...)``), in which case
Hypothesis searches and shrinks on its own.
"""

from __future__ import annotations

from .counterexample import Counterexample, Passed
from .scenario import Run, Scenario, scenario_named
from .search import explore
from .shrinking import shrink

__all__ = ["Scenario", "Run", "Counterexample", "Passed", "explore", "shrink", "scenario_named"]
