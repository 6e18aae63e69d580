"""Shrinking a failing run: Hypothesis searches smaller schedules and workloads, a greedy pass makes it 1-minimal."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..checkers.verdict import Outcome, Verdict
from ..faults.specs import Schedule
from .counterexample import Counterexample
from .scenario import Invariant, Scenario


def _fails(scenario: Scenario, invariants: list[Invariant], seed: int, schedule: Schedule, workload: dict[str, int], target: str) -> Verdict | None:
    """The verdict if this candidate breaks ``target`` again, else None (a candidate the
    scenario cannot even build, such as a workload too small for it, does not reproduce)."""
    try:
        run = scenario.run(seed, schedule, **workload)
    except Exception:
        return None
    for verdict in run.check(invariants):
        if verdict.outcome is Outcome.FAIL and verdict.invariant == target:
            return verdict
    return None


def shrink(counterexample: Counterexample, invariants: Sequence[Invariant], *, runs: int = 80) -> Counterexample:
    """Shrink a counterexample further (or again, with a bigger budget of ``runs``)."""
    c = counterexample
    schedule, workload, verdict, used = _shrink(c.scenario, list(invariants), c.seed, c.schedule, c.workload, c.verdict, runs)
    run = c.scenario.run(c.seed, schedule, **workload)
    return Counterexample(
        c.scenario, c.seed, schedule, workload, verdict, run.fingerprint, c.runs + used + 1,
        c.original_schedule, c.original_workload, c.seconds, run.world, tuple(invariants),
    )


def _shrink(
    scenario: Scenario, invariants: list[Invariant], seed: int, schedule: Schedule,
    workload: dict[str, int], verdict: Verdict, budget: int, *, search: bool = True,
) -> tuple[Schedule, dict[str, int], Verdict, int]:
    """Make the failing (schedule, workload) smaller while the same invariant still fails.

    First Hypothesis searches sub-schedules and smaller workloads (keeping each
    fault or not, each workload knob between 1 and its size) and shrinks the best
    it finds (skipped if not ``search``); then a greedy pass drops each remaining
    fault that is not needed, lowers each knob, and halves durations, so that the
    result is 1-minimal: no single fault can be removed. At most ``budget`` runs are
    made, a count rather than seconds, so that the result depends on the seed alone,
    never on how fast the machine is.
    """
    target = verdict.invariant
    runs = 0
    best = (schedule, dict(workload), verdict)

    def attempt(s: Schedule, w: dict[str, int]) -> Verdict | None:
        nonlocal runs, best
        if runs >= budget:
            return None
        runs += 1
        found = _fails(scenario, invariants, seed, s, w, target)
        if found is not None and _smaller((s, w), best[:2]):
            best = (s, dict(w), found)
        return found

    if search:
        _shrink_hypothesis(schedule, workload, attempt)
    schedule, workload, verdict = best
    # Greedy: drop faults one at a time (last first), then lower each knob, then halve durations.
    for i in reversed(range(len(schedule))):
        smaller = schedule.without(i)
        if attempt(smaller, workload) is not None:
            schedule = smaller
    for knob in list(workload):
        for size in _smaller_sizes(workload[knob]):
            trial = {**workload, knob: size}
            if attempt(schedule, trial) is not None:
                workload = trial
                break
    for i, fault in enumerate(schedule):
        if fault.duration is None:
            continue
        shorter = fault.replace(duration=round(max(fault.duration / 2, 0.001), 3))
        trial_schedule = Schedule(schedule.faults[:i] + (shorter,) + schedule.faults[i + 1 :], schedule.heal_at)
        if attempt(trial_schedule, workload) is not None:
            schedule = trial_schedule
    return (*best, runs)


def _smaller_sizes(size: int) -> list[int]:
    """Sizes to try below ``size``, smallest first: every one up to 8, then halvings."""
    sizes = set(range(1, min(size, 9)))
    n = size // 2
    while n > 8:
        sizes.add(n)
        n //= 2
    return sorted(s for s in sizes if s < size)


def _size(candidate: tuple[Schedule, dict[str, int]]) -> tuple[int, int, float]:
    schedule, workload = candidate
    total = sum(f.duration or 0.0 for f in schedule)
    return len(schedule), sum(workload.values()), total


def _smaller(a: tuple[Schedule, dict[str, int]], b: tuple[Schedule, dict[str, int]]) -> bool:
    return _size(a) < _size(b)


def hypothesis_storage() -> None:
    """Keep Hypothesis' files out of the learner's folders.

    With ``database=None`` Hypothesis keeps no example database, but it still caches the constants it collects
    from the code under test in ``.hypothesis/`` under the current folder: beside a lab notebook, or in the
    checkout when the tests run. A counterexample depends on its seed alone, so that cache belongs with the
    user's caches (``$XDG_CACHE_HOME/chaos-dojo/hypothesis``, by default ``~/.cache/...``). Set before
    Hypothesis first needs a folder (it reads ``HYPOTHESIS_STORAGE_DIRECTORY`` then); one the user set wins.
    """
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(cache, "chaos-dojo", "hypothesis")


def _shrink_hypothesis(schedule: Schedule, workload: dict[str, int], attempt: Callable) -> None:
    """Let Hypothesis search sub-schedules and smaller workloads, and shrink what fails
    (``attempt`` keeps the smallest failing candidate, and answers "passes" once the budget is spent)."""
    hypothesis_storage()
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import HypothesisException

    n = len(schedule)
    knobs = sorted(workload)
    # A fault is kept unless its draw shrinks to 0: random draws keep most faults (so the
    # failure is met again soon), shrinking drops them.
    keeps = st.lists(st.integers(0, 7), min_size=n, max_size=n)
    sizes = st.tuples(*[st.integers(1, workload[k]) for k in knobs]) if knobs else st.just(())

    def fails(candidate: tuple[list[int], tuple[int, ...]]) -> bool:
        keep, chosen = candidate
        sub = Schedule(tuple(f for f, k in zip(schedule, keep) if k), schedule.heal_at)
        return attempt(sub, dict(zip(knobs, chosen))) is not None

    try:
        find(
            st.tuples(keeps, sizes),
            fails,
            settings=settings(
                max_examples=12,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            ),
        )
    except HypothesisException:
        # NoSuchExample (nothing smaller fails), or a "flaky" report once the budget is spent
        # and every candidate counts as passing: what was found is kept by ``attempt``.
        pass


