"""How fast the course can break the order system: runs with a nemesis, exploring, shrinking, replaying.

One run of this script prints, on this machine, in the same process run:

1. **Scenario runs per second** for the order system (8 customers x 5 orders, four services with two
   replicas each: about 40 orders, some 600 network messages per run) under a nemesis schedule of
   four faults, against the same runs on a calm network (the baseline): the ratio is the cost of faults.
2. **Exploring 200 seeds** with a nemesis (every run checked by `no_double_charge` and
   `stock_never_negative`, which must *not* stop it: the invariants are checked but the search is run
   to the end with a checker that only records), with the default number of worker processes.
3. **Finding and shrinking** a double charge (delays and losses between orders and payments), the
   shrinking part timed on its own; and **replaying** the counterexample.
4. **Linearizability** checking time by history size (from `bench_linearizability.py`).

And between 2 and 3, **explore's workers** (2b): the same seeds explored with one worker (in this process), two
worker processes, and four and eight where the machine has the cores, side by side: runs/s and the speed-up.

Goals (issue 3): 200 seeded runs of a lab-sized scenario in under 15 s on two cores; shrinking in
under 15 s; replay under 1 s. Run it from the repository root::

    python benchmarks/bench_explore.py
    python benchmarks/bench_explore.py --seeds 50 --quick
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sandbox import World
from sandbox.checkers import Verdict, no_double_charge, stock_never_negative
from sandbox.examples import order_system
from sandbox.explore import Counterexample, explore
from sandbox.faults import nemesis

perf_counter = inspect.unwrap(time.perf_counter)  # the real clock, whatever the sandbox redirects
HERE = Path(__file__).resolve().parent


def record_only(world: World) -> Verdict:
    """Check both order-system invariants, and pass: so that the exploration runs every seed."""
    verdicts = [no_double_charge()(world), stock_never_negative()(world)]
    broken = sum(not v for v in verdicts)
    return Verdict.passing("checked", f"{broken} of 2 invariants broken (recorded, not stopping)")


def lab_nemesis(seed: int):
    return nemesis(seed, ["orders", "inventory", "payments"], count=4, within=3.0)


def slow_payments(seed: int):
    return nemesis(seed, ["orders", "payments"], kinds=("delay", "loss"), count=3, within=2.0)


def runs_per_second(seeds: range) -> tuple[float, float]:
    scenario = order_system.scenario
    t0 = perf_counter()
    for seed in seeds:
        scenario.run(seed)
    calm = len(seeds) / (perf_counter() - t0)
    t0 = perf_counter()
    for seed in seeds:
        scenario.run(seed, lab_nemesis(seed))
    faulty = len(seeds) / (perf_counter() - t0)
    return calm, faulty


def scaling(seeds: range, repeats: int = 3) -> dict[int, float]:
    """Explore the same seeds with 1 worker (in this process: the baseline), then 2 worker processes, and 4 and 8
    where the machine has that many cores, taking turns ``repeats`` times (so that a change in the machine's speed
    hits them alike; the best of each counts); print runs/s and the speed-up over one worker. Each exploration must
    run the same seeds to the same summary, or the comparison means nothing."""
    counts = [1, 2] + [n for n in (4, 8) if n <= (os.cpu_count() or 1)]
    best: dict[int, float] = {}
    summaries = set()
    print(f"2b. explore's workers: the same {len(seeds)} seeds with a nemesis, side by side, best of {repeats} taking "
          f"turns (goal: 2 workers >= 1.7x one, on an idle 2-core machine)")
    for _ in range(repeats):
        for workers in counts:
            t0 = perf_counter()
            result = explore(order_system.scenario, [record_only], seeds=seeds, schedules=lab_nemesis, workers=workers)
            took = perf_counter() - t0
            summaries.add((result.runs, result.faults, result.recovery))
            best[workers] = min(best.get(workers, took), took)
    assert len(summaries) == 1, f"the explorations disagree: {summaries}"
    rates = {workers: len(seeds) / took for workers, took in best.items()}
    for workers in counts:
        speedup = rates[workers] / rates[1]
        goal = "" if workers != 2 else f"   goal >= 1.7x: {'met' if speedup >= 1.7 else 'NOT met'}"
        print(f"   {workers} worker{'s' if workers > 1 else ' '}  {best[workers]:6.1f} s  {rates[workers]:6.1f} runs/s  "
              f"{speedup:4.2f}x{goal}")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200, help="seeds to explore (default 200)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: cores, up to 4)")
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller linearizability table")
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    print()

    sample = range(10 if args.quick else 30)
    calm, faulty = runs_per_second(sample)
    print(f"1. order system runs per second, one process ({len(sample)} seeds each)")
    print(f"   calm network (baseline)      {calm:6.1f} runs/s")
    print(f"   with a 4-fault nemesis       {faulty:6.1f} runs/s   ratio {faulty / calm:.2f}")
    print()

    t0 = perf_counter()
    result = explore(order_system.scenario, [record_only], seeds=range(args.seeds), schedules=lab_nemesis, workers=args.workers)
    took = perf_counter() - t0
    print(f"2. explore {result.runs} seeds with a nemesis: {took:.1f} s  (goal: 200 in < 15 s)  "
          f"= {result.runs / took:.1f} runs/s")
    print()

    scaling(range(60 if args.quick else args.seeds))
    print()

    t0 = perf_counter()
    found = explore(order_system.scenario, [no_double_charge()], seeds=range(200), schedules=slow_payments,
                    workers=args.workers, shrink=False)
    find = perf_counter() - t0
    assert isinstance(found, Counterexample), "no double charge found: the benchmark needs one"
    t0 = perf_counter()
    shrunk = explore(order_system.scenario, [no_double_charge()], seeds=[found.seed], schedules=slow_payments, workers=1)
    shrink = perf_counter() - t0
    assert isinstance(shrunk, Counterexample)
    replays = []
    for _ in range(3):
        t0 = perf_counter()
        run = shrunk.replay()
        replays.append(perf_counter() - t0)
        assert run.fingerprint == shrunk.fingerprint, "replay differs: determinism is broken"
    print(f"3. double charge found at seed {found.seed} in {find:.1f} s; shrunk from {len(found.schedule)} faults "
          f"to {len(shrunk.schedule)}, workload {shrunk.workload}, in {shrink:.1f} s  (goal < 15 s; {shrunk.runs} runs)")
    print(f"   replay: {statistics.median(replays) * 1000:.0f} ms  (goal < 1 s)")
    print(f"   {shrunk.snippet}")
    print()

    print("4. linearizability checking time by history size (10 clients):")
    sys.stdout.flush()
    extra = ["--repeats", "1"] if args.quick else ["--repeats", "3"]
    subprocess.run([sys.executable, str(HERE / "bench_linearizability.py"), *extra], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
