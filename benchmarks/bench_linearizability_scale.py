"""Linearizability at scale, side by side with Porcupine: 50 clients, thousands of operations on a map of strings.

The workload of Porcupine's own key-value tests (from Jepsen's etcd tests): 50 clients, each doing one operation
at a time, ``get``, ``put`` and ``append`` on the keys of a map of strings. From a seed, the benchmark generates
two histories:

* **linearizable**: a store that applies every operation at one instant inside its interval, in the order of
  those instants; what each get returns comes from that sequential run;
* **loses an append**: the same run, except that the store acknowledges one append (past the middle of the
  history) and never applies it. The append is chosen so that the next operation invoked on its key after it
  returned is a get, and no put on that key overlaps them: no order can explain that get, so the history is not
  linearizable, and the search must rule out every order of everything before it on that key.

The map is modelled as a learner would write it, through the documented ``Model`` protocol (``StringMapModel``
below: ``init`` and ``step``, plus ``split`` and ``per_key`` to check one key at a time, as Porcupine's model
defines ``Partition``). The checker knows nothing of it.

The Porcupine column runs Porcupine (github.com/anishathalye/porcupine, MIT licence; the files it needs are
vendored in ``benchmarks/porcupine/``) on the same histories, with Porcupine's own key-value model from its test
suite, through a small Go program built once per run in a temporary folder (offline: it needs nothing but Go).
Without ``go`` the column says how to install it. Each repeat runs the Python checker, then Porcupine, so that a
change in the machine's load hits both; the medians count. Porcupine's time is that of its check alone (its
reading of the JSON history is not timed); the Python checker's time includes reading the history (a list of
dicts). Porcupine checks the keys in parallel goroutines, on every core; the Python checker shares the keys still
undecided after a few milliseconds with a second process. ``--one-core`` adds side columns, taking turns with the
others: the Python checker kept to one process, and Porcupine with ``GOMAXPROCS=1``.

How hard a history is varies a lot from seed to seed, for both checkers alike (the search is exponential in the
worst case): some histories neither decides within the time limit (UNKNOWN), and the table shows them too. Run it
from the repository root::

    python benchmarks/bench_linearizability_scale.py                     # seeds 1 to 6: about a minute
    python benchmarks/bench_linearizability_scale.py --seeds 10 --repeats 5
    python benchmarks/bench_linearizability_scale.py --seeds 1-12 --time-limit 10
    python benchmarks/bench_linearizability_scale.py --seeds 1-12 --repeats 5 --time-limit 10 --one-core
    python benchmarks/bench_linearizability_scale.py --seeds 10 --profile      # then cProfile of each check

The goal (issue 11): each history decided within 3x of Porcupine's time, measured in the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import json
import math
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sandbox.checkers import Call, Model, Outcome, _turns, check_linearizability

perf_counter = inspect.unwrap(time.perf_counter)  # the real clock, whatever the sandbox redirects
PORCUPINE = Path(__file__).resolve().parent / "porcupine"

CLIENTS = 50
OPERATIONS = 2000
KEYS = 10
GOAL = 3.0  # at most this many times Porcupine's time
EXPECTED = {"linearizable": (Outcome.PASS, "Ok"), "loses an append": (Outcome.FAIL, "Illegal")}


# --- the model, as a learner writes it -------------------------------------------------------------


class StringModel:
    """One key's string: get returns it ('' before any write), put replaces it, append adds to its end."""

    def init(self) -> str:
        return ""

    def step(self, state: str, call: Call) -> tuple[bool, str]:
        if call.f == "get":
            return (not call.known or call.output == state), state
        if call.f == "put":
            return True, call.input
        return True, state + call.input


class StringMapModel:
    """A map of strings; every operation's value is [key, argument] and a get's ok value is [key, string seen].

    The whole map is a tuple of (key, string) pairs, sorted; ``split`` and ``per_key`` let the checker take
    one key at a time (a history is linearizable if and only if each key's is), as Porcupine's model does.
    """

    def __init__(self) -> None:
        self.one = StringModel()

    def init(self) -> tuple[tuple[str, str], ...]:
        return ()

    def step(self, state: tuple[tuple[str, str], ...], call: Call) -> tuple[bool, Any]:
        key, sub = self.split(call)
        values = dict(state)
        ok, values[key] = self.one.step(values.get(key, ""), sub)
        return ok, tuple(sorted(values.items()))

    def split(self, call: Call) -> tuple[str, Call]:
        key, argument = call.input
        seen = call.output[1] if call.f == "get" and call.known else None
        return key, replace(call, input=argument, output=seen)

    def per_key(self, key: str) -> Model:
        return self.one


# --- the histories ---------------------------------------------------------------------------------


def generate(seed: int, clients: int, operations: int, keys: int) -> list[dict[str, Any]]:
    """Operations of ``clients`` clients, each starting its next one as soon as its last one returns.

    Most operations are quick (0.02 to 0.2 time units) and take effect at an instant drawn inside their
    interval; one in five is slow (1 to 4 units: the store applied it, its reply was late) and took effect in
    the first half of its interval. Durations in history positions are then close to Jepsen's etcd histories in
    Porcupine's test data (most operations overlap a few others on their key, one in five overlaps dozens).
    A get is 45 % of the operations, a put 5 %, an append 50 %; a put or an append writes ``x CLIENT N y``.
    """
    rng = random.Random(seed)
    clock = [rng.uniform(0, 1) for _ in range(clients)]
    ops = []
    for n in range(operations):
        client = min(range(clients), key=clock.__getitem__)  # the client whose last operation returned first
        start = clock[client] + rng.expovariate(20.0)
        slow = rng.random() < 0.2
        end = start + (rng.uniform(1, 4) if slow else rng.uniform(0.02, 0.2)) + 1e-3
        clock[client] = end
        f = rng.choices(("get", "put", "append"), weights=(45, 5, 50))[0]
        key = f"k{rng.randrange(keys)}"
        point = start + rng.uniform(0, 0.5) * (end - start) if slow else rng.uniform(start, end)
        ops.append({
            "n": n, "client": client, "f": f, "key": key, "start": start, "end": end, "point": point,
            "argument": "" if f == "get" else f"x {client} {n} y",
        })
    return ops


def run_store(ops: list[dict[str, Any]], lose: int | None = None) -> list[dict[str, Any]]:
    """The history of a store applying ``ops`` in the order of their points; it drops the append ``lose``."""
    values: dict[str, str] = {}
    seen: dict[int, str] = {}
    for op in sorted(ops, key=lambda op: op["point"]):
        if op["f"] == "get":
            seen[op["n"]] = values.get(op["key"], "")
        elif op["n"] != lose:
            values[op["key"]] = (values.get(op["key"], "") if op["f"] == "append" else "") + op["argument"]
    events = []
    for op in ops:
        process, f, key = f"c{op['client']}", op["f"], op["key"]
        asked, answer = (None, seen[op["n"]]) if f == "get" else (op["argument"], op["argument"])
        events.append((op["start"], {"process": process, "type": "invoke", "f": f, "value": [key, asked]}))
        events.append((op["end"], {"process": process, "type": "ok", "f": f, "value": [key, answer]}))
    events.sort(key=lambda event: event[0])
    return [{**event, "time": at} for at, event in events]


def lost_append(ops: list[dict[str, Any]], after: float = 0.5) -> int:
    """An append (past ``after`` of the history) whose key is next invoked by a get, with no put overlapping them.

    The get then cannot see the append's text however the concurrent operations are ordered: a history that
    loses this append is not linearizable, and the get is the first response nothing explains.
    """
    by_key: dict[str, list[dict[str, Any]]] = {}
    for op in sorted(ops, key=lambda op: op["start"]):
        by_key.setdefault(op["key"], []).append(op)
    horizon = max(op["end"] for op in ops) * after
    for append in sorted(ops, key=lambda op: op["end"]):
        if append["f"] != "append" or append["end"] < horizon:
            continue
        same_key = by_key[append["key"]]
        following = next((op for op in same_key if op["start"] > append["end"]), None)
        if following is None or following["f"] != "get":
            continue
        overlapping = (op for op in same_key if op["start"] < following["end"] and op["end"] > append["start"])
        if not any(op["f"] == "put" for op in overlapping):
            return append["n"]
    raise ValueError("no append fits: try another --seed")


def porcupine_operations(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as Porcupine's Operations: call and return times are positions in the history."""
    open_ops: dict[str, dict[str, Any]] = {}
    ops = []
    for position, event in enumerate(history):
        key, value = event["value"]
        if event["type"] == "invoke":
            open_ops[event["process"]] = {
                "client": int(event["process"][1:]), "f": event["f"], "key": key,
                "value": value or "", "output": "", "call": position,
            }
        else:
            op = open_ops.pop(event["process"])
            ops.append({**op, "output": value if event["f"] == "get" else "", "return": position})
    return ops


# --- timing ----------------------------------------------------------------------------------------


class Porcupine:
    """The Go program, built once in ``folder``; ``problem`` says why not when it could not be."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.binary: Path | None = None
        go = shutil.which("go")
        if go is None:
            self.problem = "go is not installed: apt-get install golang-go (or see https://go.dev/doc/install)"
            return
        source = folder / "src"
        shutil.copytree(PORCUPINE, source)
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GO111MODULE": "on",
               "GOCACHE": str(folder / "cache"), "GOPATH": str(folder / "gopath")}
        built = subprocess.run([go, "build", "-o", str(folder / "porcupinebench"), "."], cwd=source, env=env,
                               capture_output=True, text=True)
        if built.returncode:
            self.problem = f"go build failed in a copy of {PORCUPINE}: {built.stderr.strip()}"
            return
        self.binary, self.problem = folder / "porcupinebench", ""

    def write(self, name: str, history: list[dict[str, Any]]) -> Path:
        path = self.folder / f"{name.replace(' ', '-')}.json"
        path.write_text(json.dumps(porcupine_operations(history)))
        return path

    def check(self, path: Path, time_limit: float, cores: int | None = None) -> tuple[float, str]:
        """Porcupine's time for one check of the history in ``path``, and its answer (Ok, Illegal or Unknown).

        ``cores``: how many cores Go may use at once (GOMAXPROCS); by default all of them.
        """
        env = {**os.environ, "GOMAXPROCS": str(cores)} if cores else None
        ran = subprocess.run([str(self.binary), str(path), "1", str(time_limit)], capture_output=True, text=True,
                             check=True, env=env)
        answer = json.loads(ran.stdout)
        return answer["seconds"][0], answer["result"]


def check_once(history: list[dict[str, Any]], time_limit: float, one_process: bool = False) -> tuple[float, Any]:
    """The time of one check_linearizability, and its verdict; ``one_process``: without a second process."""
    fork_after = _turns.FORK_AFTER
    _turns.FORK_AFTER = math.inf if one_process else fork_after  # the checker's own knob (private), for this row
    try:
        start = perf_counter()
        verdict = check_linearizability(history, StringMapModel(), time_limit=time_limit)
        return perf_counter() - start, verdict
    finally:
        _turns.FORK_AFTER = fork_after


def seeds(text: str) -> list[int]:
    """'10' or '1-12' or '1,4,7'."""
    chosen: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        chosen += range(int(first), int(last or first) + 1)
    return chosen


def profile(history: list[dict[str, Any]], name: str, time_limit: float) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    check_linearizability(history, StringMapModel(), time_limit=time_limit)
    profiler.disable()
    print(f"\n--- cProfile, {name} history: top 15 by total (self) time")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=seeds, default=seeds("1-6"), help="e.g. 10, 1-12 or 1,4,7 (default 1-6)")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--operations", type=int, default=OPERATIONS)
    parser.add_argument("--keys", type=int, default=KEYS)
    parser.add_argument("--repeats", type=int, default=3, help="checks per history and checker; the median counts")
    parser.add_argument("--time-limit", type=float, default=5.0, help="for both checkers, seconds (default 5)")
    parser.add_argument("--profile", action="store_true", help="then run each check once under cProfile")
    parser.add_argument("--one-core", action="store_true",
                        help="also each checker on one core: the Python checker without its second process, "
                             "Porcupine with GOMAXPROCS=1 (side columns, taking turns with the others)")
    args = parser.parse_args()
    print(f"linearizability at scale: {args.clients} clients, {args.operations} operations (get 45 %, put 5 %, "
          f"append 50 %) on {args.keys} keys of a map of strings; median of {args.repeats} checks")
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
          f"time limit {args.time_limit:g} s for both checkers")
    print()
    side = f"{'one core: Python':>20}{'Porcupine':>20}{'ratio':>8}" if args.one_core else ""
    print(f"{'seed':>4}  {'history':<16}{'lost append':>12}{'check_linearizability':>26}{'Porcupine (Go)':>24}{'ratio':>8}"
          f"{side}")
    wrong, ratios, side_ratios = [], [], []
    with tempfile.TemporaryDirectory(prefix="porcupine-bench-") as temporary:
        porcupine = Porcupine(Path(temporary))
        for seed in args.seeds:
            ops = generate(seed, args.clients, args.operations, args.keys)
            lost = lost_append(ops)
            histories = {"linearizable": run_store(ops), "loses an append": run_store(ops, lose=lost)}
            for name, history in histories.items():
                path = porcupine.write(name, history) if porcupine.binary else None
                runs: dict[str, list[tuple[float, Any]]] = {"ours": [], "theirs": [], "ours 1": [], "theirs 1": []}
                for _ in range(args.repeats):
                    runs["ours"].append(check_once(history, args.time_limit))
                    if path is not None:
                        runs["theirs"].append(porcupine.check(path, args.time_limit))
                    if args.one_core:
                        runs["ours 1"].append(check_once(history, args.time_limit, one_process=True))
                        if path is not None:
                            runs["theirs 1"].append(porcupine.check(path, args.time_limit, cores=1))
                    answers = [answer for column in runs.values() for _, answer in column[-1:]]
                    if any(answer in (Outcome.UNKNOWN, "Unknown") or getattr(answer, "outcome", None) is Outcome.UNKNOWN
                           for answer in answers):
                        break  # one run that reached the time limit says enough
                for column, expected in (("ours", EXPECTED[name][0]), ("ours 1", EXPECTED[name][0])):
                    for _, verdict in runs[column]:
                        if verdict.outcome not in (expected, Outcome.UNKNOWN):
                            wrong.append(f"seed {seed}, {name}: check_linearizability answered {verdict}")
                for column in ("theirs", "theirs 1"):
                    for _, answer in runs[column]:
                        if answer not in (EXPECTED[name][1], "Unknown"):
                            wrong.append(f"seed {seed}, {name}: Porcupine answered {answer}")
                where = f"op {lost}" if name == "loses an append" else ""
                cells = [f"{seed:>4}  {name:<16}{where:>12}"]
                for mine, theirs, kept in (("ours", "theirs", ratios), ("ours 1", "theirs 1", side_ratios)):
                    if not runs[mine]:
                        continue
                    took = statistics.median(t for t, _ in runs[mine])
                    verdict = runs[mine][-1][1]
                    wide = 13 if mine == "ours" else 9
                    cell, ratio = "(not run)", ""
                    if runs[theirs]:
                        median = statistics.median(t for t, _ in runs[theirs])
                        answer = runs[theirs][-1][1]
                        cell, ratio = f"{median:>9.3f} s {answer:<8}", took / median
                        if verdict.outcome is EXPECTED[name][0] and answer == EXPECTED[name][1]:
                            kept.append(ratio)
                        ratio = f"x{ratio:.2f}"
                    cells.append(f"{took:>{wide}.3f} s {verdict.outcome.name:<9}{cell:>{26 if mine == 'ours' else 20}}"
                                 f"{ratio:>8}")
                print("".join(cells), flush=True)
            if args.profile:
                for name, history in histories.items():
                    profile(history, f"seed {seed}, {name}", args.time_limit)
        if porcupine.problem:
            print(f"\nPorcupine not run: {porcupine.problem}; then run this again")
    print(f"\nratio: check_linearizability's time / Porcupine's, medians from the same run (goal: at most {GOAL:g})")
    for label, kept in (("", ratios), ("on one core each, ", side_ratios)):
        if kept:
            met = sum(ratio <= GOAL for ratio in kept)
            print(f"{label}decided by both: {len(kept)} histories, ratio {min(kept):.2f} to {max(kept):.2f} "
                  f"(median {statistics.median(kept):.2f}); within {GOAL:g}x: {met} of {len(kept)}")
    for line in wrong:
        print(f"WRONG VERDICT: {line}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
