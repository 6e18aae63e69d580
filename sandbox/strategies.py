"""Hypothesis strategies for faults and fault schedules.

With these, Hypothesis both *generates* fault schedules and *shrinks* a failing
one: fewer faults, earlier, shorter, milder, on the first-named targets, until
what is left is the smallest schedule that still breaks the system.

Example (a property-based test of a lab)::

    from hypothesis import given, settings
    from sandbox.strategies import schedules

    @settings(max_examples=50, deadline=None, derandomize=True)
    @given(schedule=schedules(["orders", "payments"], kinds=("partition", "loss"), max_faults=3))
    def test_no_double_charge(schedule):
        world = build_world(seed=1)
        world.inject(schedule)
        world.run(settle=2.0)
        assert no_double_charge()(world)

The parameters drawn for each kind are the nemesis' (``sandbox.faults.nemesis``),
so a schedule Hypothesis finds is one a nemesis could have drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from ._checks import seconds
from .errors import InvalidParameterError
from .faults.nemesis import (
    DEFAULT_KINDS,
    Targets,
    check_durations,
    check_kinds,
    draw_fault,
)
from .faults.specs import Fault, Schedule

if TYPE_CHECKING:
    from .world import World

__all__ = ["faults", "schedules"]

_STEPS = 1000


class _DrawnRandom:
    """The few ``random.Random`` methods the nemesis uses, answered by Hypothesis draws
    (so each draw shrinks: towards the low end of a range and the first of a choice)."""

    def __init__(self, draw: Any) -> None:
        self._draw = draw

    def random(self) -> float:
        return self._draw(st.integers(0, _STEPS - 1)) / _STEPS

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._draw(st.integers(0, _STEPS)) / _STEPS

    def randrange(self, n: int) -> int:
        return self._draw(st.integers(0, n - 1))

    def choice(self, items: Sequence[Any]) -> Any:
        return items[self._draw(st.integers(0, len(items) - 1))]


def faults(
    targets: World | Iterable[str] | Targets,
    *,
    kinds: Iterable[str] = DEFAULT_KINDS,
    within: float = 10.0,
    duration: tuple[float, float] = (0.2, 2.0),
) -> st.SearchStrategy[Fault]:
    """A strategy for one fault of ``kinds`` on ``targets`` (the world, or service names),
    starting in ``[0, within]`` and lasting ``duration`` = ``(shortest, longest)`` seconds.

    Raises:
        InvalidParameterError: an unknown kind, a kind with nothing to act on, a bad range.
    """
    t = Targets.of(targets)
    kinds = check_kinds(kinds, t)
    within = seconds("within", within, positive=True)
    low, high = check_durations(duration)

    @st.composite
    def one(draw: Any) -> Fault:
        kind = draw(st.sampled_from(kinds))
        rng = _DrawnRandom(draw)
        start = rng.uniform(0.0, within)
        return draw_fault(kind, rng, t, start, rng.uniform(low, high))

    return one()


def schedules(
    targets: World | Iterable[str] | Targets,
    *,
    kinds: Iterable[str] = DEFAULT_KINDS,
    max_faults: int = 4,
    min_faults: int = 0,
    within: float = 10.0,
    duration: tuple[float, float] = (0.2, 2.0),
) -> st.SearchStrategy[Schedule]:
    """A strategy for schedules of ``min_faults`` to ``max_faults`` faults (see ``faults``), in start order.

    Raises:
        InvalidParameterError: see ``faults``; or a bad ``min_faults`` / ``max_faults``.
    """
    for name, value in (("max_faults", max_faults), ("min_faults", min_faults)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidParameterError(f"{name}={value!r}: use a whole number >= 0")
    if min_faults > max_faults:
        raise InvalidParameterError(f"min_faults={min_faults!r} is more than max_faults={max_faults!r}")
    one = faults(targets, kinds=kinds, within=within, duration=duration)
    return st.lists(one, min_size=min_faults, max_size=max_faults).map(
        lambda items: Schedule(sorted(items, key=lambda f: f.start))
    )
