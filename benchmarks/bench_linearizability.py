"""How long the linearizability checker takes to decide histories of 10 clients, by size.

For each size (100, 200, 400, 800 operations) and each model (a register; a key-value map with
5 keys), the benchmark generates one linearizable history and one that is not, and times
``check_linearizability`` on each (the median of a few runs, the real clock).

The histories come from a sequential execution, as a real linearizable system would produce:
every operation gets a random invoke/response interval on its client (clients do one operation
at a time, and their intervals overlap at random), a linearization point is drawn inside each
interval, and the operations are applied one by one to a plain register (or map) in the order of
those points, which decides what each read returns and whether each compare-and-set succeeds.
A few operations (2 %) end ``info``: the client cannot tell whether they happened (half did).
The non-linearizable twin changes the last successful read to a value that was never written, so
the checker must exhaust every order of the history before that read: the worst case for a FAIL.

Run it from the repository root::

    python benchmarks/bench_linearizability.py            # the table
    python benchmarks/bench_linearizability.py --repeats 7 --seed 3 --info 0.05

The goal (issue 3): a few hundred operations from 10 clients decided in well under a second.
"""

from __future__ import annotations

import argparse
import inspect
import platform
import random
import statistics
import sys
import time
from typing import Any

from sandbox import History
from sandbox.checkers import (
    KeyValueModel,
    Outcome,
    RegisterModel,
    check_linearizability,
)

perf_counter = inspect.unwrap(time.perf_counter)  # the real clock, whatever the sandbox redirects

CLIENTS = 10
SIZES = (100, 200, 400, 800)
KEYS = 5


def generate(
    seed: int, clients: int, operations: int, keys: int | None, info: float, values: int | None = None
) -> list[dict[str, Any]]:
    """A linearizable history: random overlapping intervals, results from a sequential run."""
    rng = random.Random(seed)
    ops: list[dict[str, Any]] = []
    clock = [rng.uniform(0, 1) for _ in range(clients)]
    for n in range(operations):
        client = n % clients
        start = clock[client] + rng.expovariate(2.0)
        end = start + rng.expovariate(1.0) + 1e-3
        clock[client] = end
        f = rng.choices(("read", "write", "cas"), weights=(5, 3, 2))[0]
        ops.append({
            "process": f"c{client}", "f": f, "start": start, "end": end,
            "point": rng.uniform(start, end), "key": None if keys is None else f"k{rng.randrange(keys)}",
            "new": n + 1 if values is None else rng.randrange(values), "indeterminate": rng.random() < info, "happened": rng.random() < 0.5,
        })
    values: dict[Any, Any] = {}
    for op in sorted(ops, key=lambda op: op["point"]):
        current = values.get(op["key"], 0)
        if op["indeterminate"] and not op["happened"]:
            op["expected"] = current + rng.choice((0, 1))
            continue
        if op["f"] == "read":
            op["seen"] = current
        elif op["f"] == "write":
            values[op["key"]] = op["new"]
        else:
            op["expected"] = current if rng.random() < 0.7 else current + 1
            op["swapped"] = op["expected"] == current
            if op["swapped"]:
                values[op["key"]] = op["new"]
    events = []
    for op in ops:
        if op["f"] == "read":
            asked, seen = None, op.get("seen")
        elif op["f"] == "write":
            asked = seen = op["new"]
        else:
            asked = seen = [op["expected"], op["new"]]
        if keys is not None:
            asked, seen = [op["key"], asked], [op["key"], seen]
        if op["indeterminate"]:
            outcome, seen = "info", None
        elif op["f"] == "cas" and not op["swapped"]:
            outcome = "fail"
        else:
            outcome = "ok"
        events.append((op["start"], 1, {"process": op["process"], "type": "invoke", "f": op["f"], "value": asked, "time": op["start"]}))
        events.append((op["end"], 0, {"process": op["process"], "type": outcome, "f": op["f"], "value": seen, "time": op["end"]}))
    return [event for _, _, event in sorted(events, key=lambda e: (e[0], e[1]))]


def break_last_read(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same history with its last successful read returning a value never written."""
    broken = [dict(op) for op in history]
    last = max(i for i, op in enumerate(broken) if op["type"] == "ok" and op["f"] == "read")
    value = broken[last]["value"]
    broken[last]["value"] = -1 if not isinstance(value, list) else [value[0], -1]
    return broken


def timed(history: list[dict[str, Any]], model: Any, repeats: int, time_limit: float) -> tuple[float, Outcome]:
    times, outcomes = [], set()
    for _ in range(repeats):
        start = perf_counter()
        verdict = check_linearizability(history, model, time_limit=time_limit)
        times.append(perf_counter() - start)
        outcomes.add(verdict.outcome)
    assert len(outcomes) == 1 or Outcome.UNKNOWN in outcomes, outcomes
    return statistics.median(times), max(outcomes, key=lambda o: o is Outcome.UNKNOWN)


def baseline(history: list[dict[str, Any]], repeats: int) -> float:
    """The median time to build a sandbox.History from the same dicts and pair it: reading the history once."""
    times = []
    for _ in range(repeats):
        start = perf_counter()
        History.from_ops(history).pairs()
        times.append(perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--info", type=float, default=0.02, help="share of indeterminate (info) operations")
    parser.add_argument("--values", type=int, default=None,
                        help="draw written values from range(VALUES) instead of writing a new value each time")
    parser.add_argument("--time-limit", type=float, default=30.0)
    args = parser.parse_args()
    print(f"linearizability checking time, {CLIENTS} clients, median of {args.repeats} runs, seed {args.seed}, "
          f"{args.info:.0%} info ops (Python {platform.python_version()}, {platform.machine()})")
    print(f"{'model':<18}{'operations':>11}{'linearizable':>26}{'not linearizable':>30}{'read once':>12}")
    worst = 0.0
    for name, keys, model in (("register", None, RegisterModel(0)), (f"key-value, {KEYS} keys", KEYS, KeyValueModel(0))):
        for size in SIZES:
            good = generate(args.seed * 1000 + size, CLIENTS, size, keys, args.info, args.values)
            bad = break_last_read(good)
            t_good, o_good = timed(good, model, args.repeats, args.time_limit)
            t_bad, o_bad = timed(bad, model, args.repeats, args.time_limit)
            if o_good is not Outcome.PASS or o_bad is not Outcome.FAIL:
                print(f"seed {args.seed}, size {size}, {name}: expected PASS and FAIL, got {o_good.name} and {o_bad.name}")
                if Outcome.UNKNOWN not in (o_good, o_bad):
                    return 1
            base = baseline(good, args.repeats)
            if size <= 400:
                worst = max(worst, t_good, t_bad)
            print(
                f"{name:<18}{size:>11}{t_good * 1e3:>11.1f} ms {o_good.name:<4} x{t_good / base:<6.0f}"
                f"{t_bad * 1e3:>11.1f} ms {o_bad.name:<4} x{t_bad / base:<6.0f}{base * 1e3:>9.2f} ms"
            )
    print("x: checking time / time to read the history once (sandbox.History.from_ops and pairs), same run")
    print(f"slowest decision up to 400 operations: {worst * 1e3:.1f} ms (goal: well under 1000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
