"""The search: seeds (in worker processes) or Hypothesis strategies, stopping at the first violation."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._determinism import warn_if_hashing_varies
from .._streams import check_seed
from ..checkers.invariants import _FACTORIES
from ..checkers.verdict import Outcome, Verdict
from ..errors import InvalidParameterError, ScenarioError
from ..faults.coverage import coverage
from ..faults.specs import Schedule
from .counterexample import Counterexample, Passed
from .scenario import Invariant, Run, Scenario, _first_failure
from .shrinking import _shrink, _size, hypothesis_storage


def _schedule_for(schedules: Any, index: int, seed: int) -> Schedule:
    if schedules is None:
        return Schedule()
    if isinstance(schedules, Schedule):
        return schedules
    if isinstance(schedules, (list, tuple)):
        return schedules[index % len(schedules)]
    schedule = schedules(seed)
    if not isinstance(schedule, Schedule):
        raise InvalidParameterError(f"schedules({seed}) returned {schedule!r}; it must return a sandbox.faults.Schedule")
    return schedule


def _is_strategy(value: Any) -> bool:
    from hypothesis.strategies import SearchStrategy

    return isinstance(value, SearchStrategy)


def _check_args(scenario: Any, invariants: Any, seeds: Any, schedules: Any) -> tuple[list[Invariant], list[int]]:
    if not isinstance(scenario, Scenario):
        raise InvalidParameterError(
            f"scenario={scenario!r}: pass a sandbox.explore.Scenario(name, build, workload), "
            f"e.g. sandbox.examples.order_system.scenario"
        )
    if callable(invariants) and not isinstance(invariants, (list, tuple)):
        invariants = [invariants]
    invariants = list(invariants)
    if not invariants:
        raise InvalidParameterError(
            "invariants=[]: give a list of checkers, e.g. [no_double_charge(), stock_never_negative()]"
        )
    for i, item in enumerate(invariants):
        if any(item is factory for factory in _FACTORIES):
            raise InvalidParameterError(
                f"invariants[{i}] is the factory {item.__name__} itself; call it to build the invariant: {item.__name__}()"
            )
        if not callable(item):
            raise InvalidParameterError(
                f"invariants[{i}]={item!r} is not an invariant: give callables taking the world, such as no_double_charge()"
            )
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = range(seeds)
    seeds = [check_seed(s) for s in seeds]
    if not seeds:
        raise InvalidParameterError("seeds is empty: give seeds=range(100) or a number of seeds")
    if isinstance(schedules, (list, tuple)):
        if not schedules or not all(isinstance(s, Schedule) for s in schedules):
            raise InvalidParameterError(f"schedules={schedules!r}: a list of schedules must hold Schedule objects")
    elif schedules is not None and not isinstance(schedules, Schedule) and not callable(schedules) and not _is_strategy(schedules):
        raise InvalidParameterError(
            f"schedules={schedules!r}: use None, a Schedule, a list of them, a function seed -> Schedule, "
            f"or a Hypothesis strategy from sandbox.strategies"
        )
    return invariants, seeds


def explore(
    scenario: Scenario,
    invariants: Iterable[Invariant] | Invariant,
    *,
    seeds: Iterable[int] | int = 100,
    schedules: Any = None,
    shrink: bool = True,
    shrink_runs: int = 80,
    workers: int | None = None,
) -> Counterexample | Passed:
    """Run ``scenario`` for each seed with its schedule; stop at the first broken invariant and shrink it.

    ``workers`` processes share the seeds (default: the machine's cores, up to 4;
    1 runs in this process; worker processes need the ``fork`` start method, so
    elsewhere than Linux the seeds run in this process); the first violation in
    *seed order* is the one reported, whatever the number of workers. Shrinking
    makes at most ``shrink_runs`` runs: a count, not seconds, so that the
    counterexample depends on the seed alone, never on the machine's speed.

    Returns a ``Counterexample`` (``.found`` True), or ``Passed`` (``.found`` False).

    Raises:
        InvalidParameterError: a bad scenario, invariant list, seed list, schedules,
            ``workers`` or ``shrink_runs``.
        ScenarioError: the scenario itself raised (its build, or a checker's setup),
            naming the seed and the schedule so that it can be replayed.
    """
    invariants, seed_list = _check_args(scenario, invariants, seeds, schedules)
    for name, value, low in (("workers", workers, 1), ("shrink_runs", shrink_runs, 0)):
        if value is None and name == "workers":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidParameterError(f"{name}={value!r}: use a whole number >= {low}")
    budget = shrink_runs if shrink else 0
    started = time.perf_counter()
    if _is_strategy(schedules):
        return _explore_hypothesis(scenario, invariants, seed_list, schedules, started, budget)
    jobs = [(i, seed, _schedule_for(schedules, i, seed)) for i, seed in enumerate(seed_list)]
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    failing, summary = _search(scenario, invariants, jobs, workers)
    runs = summary.runs
    if failing is None:
        return Passed(
            scenario, runs, tuple(seed_list), summary.undecided, time.perf_counter() - started,
            summary.faults, summary.recovery, summary.unexercised,
        )
    seed, schedule, verdict, run = failing
    original = schedule
    workload = dict(scenario.workload)
    if budget and not run.world.overran:  # a run stopped by its wall-clock limit is not shrunk (each try
        # would spend the limit again)
        schedule, workload, verdict, extra = _shrink(scenario, invariants, seed, schedule, workload, verdict, budget)
        runs += extra
        run = scenario.run(seed, schedule, **workload)
    final = _first_failure(run.check(invariants)) or verdict
    warn_if_hashing_varies()
    return Counterexample(
        scenario, seed, schedule, workload, final, run.fingerprint, runs + 1,
        original, dict(scenario.workload), time.perf_counter() - started, run.world, tuple(invariants),
    )


# Each worker process runs its share of the seeds and reports, per seed, what the search needs.
_WORK: dict[str, Any] = {}


@dataclass(frozen=True)
class _Outcome:
    index: int
    seed: int
    failed: str | None  # the first broken invariant's name
    unknown: tuple[tuple[int, Verdict], ...]
    held: tuple[str, ...]  # sometimes / reachable assertions that held
    seen: tuple[str, ...]  # every such assertion met
    fired: int  # faults of the schedule that acted
    faults: int  # faults of the schedule
    recovery: tuple[tuple[str, int], ...]


def _run_job(job: tuple[int, int, Schedule]) -> _Outcome:
    scenario, invariants = _WORK["scenario"], _WORK["invariants"]
    index, seed, schedule = job
    run = _run_or_explain(scenario, seed, schedule)
    verdicts = run.check(invariants)
    failed = _first_failure(verdicts)
    report = coverage(run.world)
    return _Outcome(
        index, seed, None if failed is None else failed.invariant,
        tuple((seed, v) for v in verdicts if v.outcome is Outcome.UNKNOWN),
        tuple(a.message for a in report.assertions if a.held), tuple(a.message for a in report.assertions),
        len(report.fired), len(schedule), report.recovery,
    )


def _run_or_explain(scenario: Scenario, seed: int, schedule: Schedule, **workload: int) -> Run:
    """``scenario.run``, with any error it raises turned into a ScenarioError naming the seed and schedule."""
    try:
        return scenario.run(seed, schedule, **workload)
    except Exception as exc:
        raise ScenarioError(
            f"scenario {scenario.name!r} raised {type(exc).__name__}: {exc} (seed {seed}, schedule {schedule!r}); "
            f"replay it with {scenario.reference().rpartition(':')[2]}.replay({seed}, ...) to debug it"
        ) from exc


def _search(scenario: Scenario, invariants: list[Invariant], jobs: list, workers: int) -> tuple:
    _WORK["scenario"], _WORK["invariants"] = scenario, invariants
    outcomes: list[_Outcome] = []
    first: int | None = None

    def absorb(outcome: _Outcome) -> None:
        nonlocal first
        outcomes.append(outcome)
        if outcome.failed is not None and (first is None or outcome.index < first):
            first = outcome.index

    if workers <= 1 or len(jobs) < 4 or not _can_fork():
        for job in jobs:
            absorb(_run_job(job))
            if first is not None:
                break
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork")
        before = {child.pid for child in multiprocessing.active_children()}
        # CPython's advice before fork: freeze the heap, so that the workers' collections leave the pages they
        # share with this process alone instead of copying them (measured: the workers' runs cost less CPU).
        gc.collect()
        gc.freeze()
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_die_with, initargs=(os.getpid(),))
        finished = False
        try:
            # Every seed is queued at once; results are read in seed order, so the first failure
            # read is the first in seed order, and the seeds after it are cancelled.
            futures = [pool.submit(_run_job, job) for job in jobs]
            for future in futures:
                absorb(_result(future))
                if first is not None:
                    break
            finished = True
        finally:  # the first failure, or an error: the seeds after it are not run
            if not finished:  # Ctrl-C or an error: a worker busy in a seed that never ends must not outlive it
                _kill_workers(pool, before)
            pool.shutdown(wait=finished, cancel_futures=True)
            gc.unfreeze()
    summary = _Summary.of(outcomes)
    if first is None:
        return None, summary
    _index, seed, schedule = jobs[first]
    run = _run_or_explain(scenario, seed, schedule)  # again, here, for its verdict with the evidence
    verdict = _first_failure(run.check(invariants))
    assert verdict is not None, f"seed {seed} failed in a worker but not here: the scenario is not deterministic"
    return (seed, schedule, verdict, run), summary


@dataclass(frozen=True)
class _Summary:
    runs: int
    undecided: tuple[tuple[int, Verdict], ...]
    unexercised: tuple[str, ...]
    faults: tuple[int, int]
    recovery: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, outcomes: list[_Outcome]) -> _Summary:
        held = {m for o in outcomes for m in o.held}
        seen = dict.fromkeys(m for o in outcomes for m in o.seen)
        paths: Counter[str] = Counter()
        for o in outcomes:
            paths.update(dict(o.recovery))
        return cls(
            len(outcomes),
            tuple(u for o in outcomes for u in o.unknown),
            tuple(m for m in seen if m not in held),
            (sum(o.fired for o in outcomes), sum(o.faults for o in outcomes)),
            tuple(sorted(paths.items())),
        )


def _result(future: Any) -> Any:
    """A future's result, waking twice a second: Ctrl-C reaches this process in whichever of its threads the
    system picks, and is acted on (KeyboardInterrupt) only when the main thread next runs Python code."""
    from concurrent.futures import TimeoutError as NotYet

    while True:
        try:
            return future.result(timeout=0.5)
        except NotYet:
            continue


def _die_with(parent: int) -> None:
    """In a worker process: die when the process that started it dies, however it dies (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere, workers end when their parent closes the pool)."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the pool's own shutdown is what ends the workers
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _kill_workers(pool: Any, before: set[int | None]) -> None:
    """Stop a pool's workers at once (ProcessPoolExecutor only gains ``kill_workers`` in Python 3.14): those it
    lists, and any child started since it was made (one Ctrl-C caught while starting, before it was listed)."""
    import multiprocessing

    workers = list((getattr(pool, "_processes", None) or {}).values())
    workers += [c for c in multiprocessing.active_children() if c.pid not in before and c not in workers]
    for process in workers:
        with contextlib.suppress(Exception):
            process.kill()
    for process in workers:
        with contextlib.suppress(Exception):
            process.join(timeout=5)


def _can_fork() -> bool:
    """Worker processes inherit the scenario by ``fork`` (a scenario built in a notebook cannot be pickled)."""
    import multiprocessing

    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def _explore_hypothesis(
    scenario: Scenario, invariants: list[Invariant], seeds: list[int], strategy: Any, started: float, budget: int
) -> Counterexample | Passed:
    """Hypothesis draws (seed, schedule) pairs and, on a failure, shrinks both itself for up to ``budget``
    runs (after that every candidate counts as passing, which ends Hypothesis' shrinking); then the greedy
    pass shrinks the workload and makes the schedule 1-minimal."""
    hypothesis_storage()
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.errors import HypothesisException

    failures: list[tuple[int, Schedule, Verdict]] = []
    undecided: list[tuple[int, Verdict]] = []
    runs = 0
    after_failure = 0

    class _Broken(Exception):
        pass

    @settings(
        max_examples=len(seeds), derandomize=True, database=None, deadline=None,
        phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
    )
    @given(seed=st.sampled_from(seeds), schedule=strategy)
    def search(seed: int, schedule: Schedule) -> None:
        nonlocal runs, after_failure
        if failures:
            if after_failure >= budget // 2:
                return
            after_failure += 1
        runs += 1
        verdicts = _run_or_explain(scenario, seed, schedule).check(invariants)
        failed = _first_failure(verdicts)
        if failed is not None:
            failures.append((seed, schedule, failed))
            raise _Broken(failed.invariant)
        undecided.extend((seed, v) for v in verdicts if v.outcome is Outcome.UNKNOWN)

    try:
        search()
    except (_Broken, HypothesisException):  # the failure, or Hypothesis' report of it after the budget
        if not failures:
            raise
    if not failures:
        return Passed(scenario, runs, tuple(seeds), tuple(undecided), time.perf_counter() - started)
    # The smallest failing example Hypothesis met (it usually re-runs it last).
    seed, schedule, verdict = min(reversed(failures), key=lambda f: _size((f[1], {})))
    workload = dict(scenario.workload)
    schedule, workload, verdict, extra = _shrink(
        scenario, invariants, seed, schedule, workload, verdict, budget - budget // 2, search=False
    )
    run = _run_or_explain(scenario, seed, schedule, **workload)
    return Counterexample(
        scenario, seed, schedule, workload, _first_failure(run.check(invariants)) or verdict,
        run.fingerprint, runs + extra + 1, failures[0][1], dict(scenario.workload), time.perf_counter() - started,
        run.world, tuple(invariants),
    )
