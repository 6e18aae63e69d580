"""Scenarios (a system under test, built for a seed and a workload size) and their runs."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .._checks import seconds
from .._streams import check_seed
from ..checkers._common import Invariant
from ..checkers.invariants import check
from ..checkers.verdict import Outcome, Verdict
from ..errors import InvalidParameterError, UnknownNameError
from ..faults.specs import Schedule
from ..world import World


@dataclass(frozen=True)
class Scenario:
    """A system under test: how to build its world, how big its workload is, how long it settles.

    ``build(seed, **workload)`` returns the world, built but not yet run.
    ``workload`` maps each workload knob to its full size (e.g. ``{"clients": 8,
    "orders_per_client": 5}``); shrinking tries smaller values, down to 1.
    ``settle`` is the quiet phase (virtual seconds after the clients are done and
    every fault is healed); ``limit`` caps the run.

    Example::

        scenario = Scenario("order-system", build_world, {"clients": 8, "orders_per_client": 5})
        run = scenario.run(seed=3, schedule=Schedule([Loss("payments", start=1, duration=2)]))
        run.world.history
    """

    name: str
    build: Callable[..., World]
    workload: Mapping[str, int] = field(default_factory=dict)
    settle: float = 2.0
    limit: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidParameterError(f"name={self.name!r}: name the scenario, e.g. 'order-system'")
        if not callable(self.build):
            raise InvalidParameterError(f"build={self.build!r}: pass the function that builds the world, build(seed, **workload)")
        if not isinstance(self.workload, Mapping):
            raise InvalidParameterError(
                f"workload={self.workload!r}: give a dict of knob -> full size, e.g. {{'clients': 8, 'orders_per_client': 5}}"
            )
        try:
            params = inspect.signature(self.build).parameters
        except (TypeError, ValueError):  # a builtin or C callable: cannot tell, trust it
            params = None
        takes_any = params is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for knob, size in self.workload.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise InvalidParameterError(f"workload[{knob!r}]={size!r}: use a whole number >= 1")
            if not takes_any and knob not in params:  # type: ignore[operator]
                raise InvalidParameterError(
                    f"workload knob {knob!r} is no parameter of {getattr(self.build, '__name__', self.build)!r}; "
                    f"its parameters: {list(params)}"  # type: ignore[arg-type]
                )
        for name in ("settle", "limit"):
            seconds(name, getattr(self, name), positive=name == "limit")
        object.__setattr__(self, "workload", dict(self.workload))
        _NAMED[self.name] = self

    def run(self, seed: int, schedule: Schedule | None = None, **workload: int) -> Run:
        """Build the world for ``seed`` and ``workload`` (default: full size), inject ``schedule``, run it."""
        seed = check_seed(seed)
        sizes = self._sizes(workload)
        world = self.build(seed, **sizes)
        if not isinstance(world, World):
            raise InvalidParameterError(
                f"scenario {self.name!r}: build({seed}, ...) returned {world!r}; it must return a sandbox.World (not run yet)"
            )
        schedule = schedule if schedule is not None else Schedule()
        world.inject(schedule)
        world.run(limit=self.limit, settle=self.settle)
        return Run(self, seed, schedule, sizes, world)

    def replay(self, seed: int, schedule: Schedule | None = None, **workload: int) -> Run:
        """The same as ``run``: a seed, a schedule and a workload replay exactly."""
        return self.run(seed, schedule, **workload)

    def _sizes(self, workload: Mapping[str, int]) -> dict[str, int]:
        sizes = dict(self.workload)
        for knob, size in workload.items():
            if knob not in sizes:
                raise InvalidParameterError(
                    f"{knob}={size!r}: scenario {self.name!r} has no workload knob {knob!r}; knobs: {sorted(sizes)}"
                )
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise InvalidParameterError(f"{knob}={size!r}: use a whole number >= 1")
            sizes[knob] = size
        return sizes

    def reference(self) -> str:
        """How a snippet names this scenario: ``module:attribute`` if it lives in a module, else its variable name."""
        module = getattr(self.build, "__module__", None) or "__main__"
        for mod_name in (module, "__main__"):
            mod = sys.modules.get(mod_name)
            for attr, value in sorted(vars(mod).items()) if mod is not None else ():
                if value is self:
                    return attr if mod_name == "__main__" else f"{mod_name}:{attr}"
        return f"sandbox.explore.scenario_named({self.name!r})"


#: Every scenario made in this process, by name (the last one of a name wins).
_NAMED: dict[str, Scenario] = {}


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name`` made in this process: how a replay snippet finds a scenario
    that is bound to no variable (``sandbox.explore.scenario_named('my-shop').replay(3)``).

    Raises:
        UnknownNameError: no scenario of that name was made in this process.
    """
    found = _NAMED.get(name)
    if found is None:
        raise UnknownNameError(
            f"no scenario named {name!r} in this process; scenarios: {sorted(_NAMED)}. "
            f"Run the cell (or import the module) that makes it first"
        )
    return found


@dataclass
class Run:
    """One finished run of a scenario: what went in (seed, schedule, workload) and the world that came out."""

    scenario: Scenario
    seed: int
    schedule: Schedule
    workload: dict[str, int]
    world: World

    def check(self, invariants: Sequence[Invariant]) -> list[Verdict]:
        """Every invariant's verdict on this run (a checker that raises gives UNKNOWN, never a crash)."""
        return check(self.world, invariants)

    @property
    def fingerprint(self) -> str:
        return self.world.fingerprint()


def _first_failure(verdicts: Sequence[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.outcome is Outcome.FAIL), None)


