"""How a long run's memory grows, and how long a run at 1,000 orders per second can go in 1 GiB.

One run of this script prints, on this machine:

1. **Memory per order** of the order system (``sandbox/examples/order_system.py``: four FastAPI services with two
   replicas each, their databases, the broker, the slow and lossy orders <-> payments link) at about 1,000 orders
   per virtual second: ``CLIENTS`` customers, each placing an order, waiting for it and thinking 0.15 s on average,
   as the example's ``shopper`` does (the example's load is customers x orders each; 165 customers place about
   1,000 a second). Four configurations: the whole log kept (the default) and ``World(keep_events=KEEP_EVENTS)``,
   tracing off and on (``keep_spans=KEEP_SPANS`` with the window). Each world runs to 2, 4, 8 and 16 virtual
   seconds of shopping, in a fresh process, twice: once for the process's resident memory (RSS, after a garbage
   collection) and the CPU time (running, and the fingerprint at the end), once under tracemalloc for Python's
   own allocations, exactly. The growth per order is the slope over the last doubling (see ``POINTS``); from it
   and the RSS extrapolated back to no order, how many minutes at 1,000 orders a second fit in 1 GiB. The window
   must not change the run: each windowed world's fingerprint is checked equal to the whole log's.
2. **Where the memory goes**, by tracemalloc in one more process (tracing on, whole log): what releasing each
   part frees, per order: the event log, the spans as recorded and once read (built into OpenTelemetry SDK
   spans), the history (the Jepsen history the checkers read: no window can take it), the calls' deadlines (each
   kept until its timeout: bounded), the statements each database saw (kept to drop duplicates, never let go),
   the databases' rows and the broker's topics (the system's own data, which a real deployment keeps too).
3. **1,000 worlds in one process**: small order-system worlds (2 customers x 2 orders, calm network) run one
   after another, never collecting by hand; RSS and the objects the garbage collector tracks after 100, half and
   all of them, and the size of FastAPI's own cache of endpoint facts (``fastapi.routing._endpoint_context_cache``,
   a dict by ``id(function)`` that nothing clears). A process that runs world after world (an exploration, a
   grader, a notebook) must stay flat.

Memory figures are RSS from ``/proc/self/statm`` (Linux) or, elsewhere, the peak from ``resource``. Run it from
the repository root::

    python benchmarks/bench_memory.py              # about 7 minutes on two cores
    python benchmarks/bench_memory.py --quick      # 2, 4 and 8 virtual seconds; 200 worlds
    python benchmarks/bench_memory.py --stocked    # deep shelves: every order goes through (fewer a second)

It exits with 0 unless a windowed run's fingerprint differs from the whole log's (then 1, with the seed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi.routing

import sandbox
from sandbox.examples import order_system

SEED = 7
#: Customers at once: with the example's think time and latencies, about 1,000 orders per virtual second.
CLIENTS = 165
#: Orders each customer would place: more than any run here reaches (the runs stop at a virtual time).
ORDERS_EACH = 1_000_000
#: Virtual seconds of shopping (after the shop opens) at which memory is read. The growth per order is taken over
#: the last doubling: by then every call made before it has passed its timeout (5 s for HTTP and the databases;
#: a caller keeps each call's deadline until then, which grows memory for the first 5 s of any run).
POINTS = (2.0, 4.0, 8.0, 16.0)
#: The window: full well before the first point (about 17 entries and 5 spans an order), so that what grows
#: after it is what a window cannot bound.
KEEP_EVENTS = 10_000
KEEP_SPANS = 2_000
RATE = 1_000  # orders per virtual second, for the minutes-in-1-GiB figure
GIB = 1024**3
WORLDS = 1_000
#: Units per warehouse with ``--stocked``: no order is ever refused for stock.
DEEP = 10**9

HERE = Path(__file__).resolve()


# --- the workload ----------------------------------------------------------------------------


async def stock_deep_shelves(client: sandbox.Client) -> None:
    """The clerk of ``--stocked``: every SKU, DEEP units in every warehouse."""
    for sku in order_system.PRICES:
        for warehouse in order_system.WAREHOUSES:
            await client.http.put(f"http://inventory/stock/{sku}/{warehouse}", json={"qty": DEEP})


def build(seed: int, *, clients: int, orders: int, tracing: bool, window: bool, stocked: bool = False,
          faults: bool = True) -> sandbox.World:
    """``order_system.build_world`` with the window's options (``same_world`` checks the window changes nothing)."""
    return order_system.build_world(
        seed, clients=clients, orders_per_client=orders, tracing=tracing, faults=faults,
        clerk=stock_deep_shelves if stocked else None, wall_limit=None,
        keep_events=KEEP_EVENTS if window else None, keep_spans=KEEP_SPANS if window and tracing else None,
    )


def same_world() -> None:
    """The benchmark's world is the example's: the same fingerprint for a short run, window or not."""
    ours = [build(SEED, clients=8, orders=5, tracing=False, window=w) for w in (False, True)]
    theirs = order_system.build_world(SEED, clients=8, orders_per_client=5)
    for world in (*ours, theirs):
        order_system.run_to_completion(world)
    prints = {world.fingerprint() for world in (*ours, theirs)}
    if len(prints) != 1:
        raise SystemExit(f"seed {SEED}: the benchmark's world is not order_system.build_world's ({prints})")


def placed(world: sandbox.World) -> int:
    """Orders the customers have placed so far (completed place-order operations, whatever the answer)."""
    return sum(1 for op in world.history if op.f == "place-order" and op.type != "invoke")


def rss() -> int:
    """This process's resident memory now, in bytes (the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


# --- 1. one configuration, in its own process ------------------------------------------------


def one_config(tracing: bool, window: bool, points: tuple[float, ...], stocked: bool, traced: bool) -> dict[str, Any]:
    """Run one configuration to each point: orders placed, memory (RSS, or tracemalloc's count), kept records."""
    if traced:
        tracemalloc.start()
    world = build(SEED, clients=CLIENTS, orders=ORDERS_EACH, tracing=tracing, window=window, stocked=stocked)
    rows: list[dict[str, Any]] = []
    cpu = 0.0
    for point in points:
        t0 = time.process_time()
        world.run(until=order_system.SHOP_OPENS + point)
        cpu += time.process_time() - t0
        gc.collect()
        memory = tracemalloc.get_traced_memory()[0] if traced else rss()
        rows.append({"t": point, "orders": placed(world), "memory": memory, "log": len(world.recorder.recent()),
                     "spans": len(world.tracing.recent_spans()) if tracing and window else None,
                     "history": len(world.history)})
    t0 = time.process_time()
    fingerprint = world.fingerprint()  # the whole log's hashes it now; the window's, mostly as it ran
    cpu += time.process_time() - t0
    return {"rows": rows, "cpu": cpu, "fingerprint": fingerprint, "dropped": world.recorder.dropped}


def in_subprocess(*args: str) -> Any:
    out = subprocess.run([sys.executable, str(HERE), *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """Bytes per order over the last doubling, and the memory extrapolated back to no order."""
    first, last = rows[-2], rows[-1]
    per = (last["memory"] - first["memory"]) / max(1, last["orders"] - first["orders"])
    return per, first["memory"] - per * first["orders"]


def minutes_in(limit: int, per_order: float, start: float) -> float:
    """Minutes at ``RATE`` orders a second before memory reaches ``limit``, from ``start`` (no order yet)."""
    if per_order <= 0:
        return float("inf")
    return (limit - start) / per_order / RATE / 60


def per_order_table(points: tuple[float, ...], stocked: bool) -> bool:
    configs = [(tracing, window) for tracing in (False, True) for window in (False, True)]
    results: dict[tuple[bool, bool, bool], Any] = {}
    for traced in (False, True):
        for tracing, window in configs:
            options = {"tracing": tracing, "window": window, "points": points, "stocked": stocked, "traced": traced}
            results[tracing, window, traced] = in_subprocess("--one", json.dumps(options))
    rows = results[False, False, False]["rows"]
    rate = (rows[-1]["orders"] - rows[0]["orders"]) / (points[-1] - points[0])
    what = ("deep shelves: every order goes through" if stocked else
            "the example's shelves: empty within a second, then most orders are refused at the stock check")
    print(f"1. memory per order: {CLIENTS} customers, {rate:,.0f} orders per virtual second ({what}); "
          f"window: keep_events={KEEP_EVENTS:_}, keep_spans={KEEP_SPANS:_}")
    print(f"  {'configuration':<26}" + "".join(f"{f'{p:g} s':>16}" for p in points)
          + f"{'KB/order':>10}{'traced KB/order':>17}{'CPU s/virtual s':>17}{'min in 1 GiB':>14}")
    same = True
    for tracing, window in configs:
        plain, traced = results[tracing, window, False], results[tracing, window, True]
        per, start = slope(plain["rows"])
        per_traced, _ = slope(traced["rows"])
        name = f"tracing {'on ' if tracing else 'off'}, {'window' if window else 'whole log'}"
        cells = "".join(f"{r['orders']:>7,} {r['memory'] / 2**20:>4.0f} MiB" for r in plain["rows"])
        minutes = minutes_in(GIB, per, start)
        print(f"  {name:<26}{cells}{per / 1000:>10.2f}{per_traced / 1000:>17.2f}"
              f"{plain['cpu'] / points[-1]:>17.2f}{minutes:>14.0f}")
        if window:
            kept = plain["rows"][-1]
            print(f"  {'':<26}kept at the end: {kept['log']:,} log entries"
                  + (f", {kept['spans']:,} spans" if kept["spans"] is not None else "")
                  + f" ({plain['dropped']:,} entries let go); the history: {kept['history']:,} operations")
        for result in (plain, traced):
            whole = results[tracing, False, False]["fingerprint"]
            if result["fingerprint"] != whole:
                print(f"  FINGERPRINT DIFFERS (seed {SEED}): {result['fingerprint']} != {whole} (whole log)")
                same = False
    print("  cells: orders placed so far, and the process's RSS after a collection. KB/order: RSS growth per order over")
    print("  the last doubling; traced: the same by tracemalloc (Python's own allocations, exact).")
    print("  CPU: running and the fingerprint at the end. min in 1 GiB: at exactly 1,000 orders/s, from the RSS")
    print("  extrapolated back to no order.")
    print(f"  every run's fingerprint equals the whole log's: {'yes' if same else 'NO'}")
    print()
    return same


# --- 2. where it goes -------------------------------------------------------------------------


def breakdown(point: float, stocked: bool) -> dict[str, Any]:
    """Traced memory freed by letting each part of a world go, per order (tracing on, whole log)."""
    tracemalloc.start()
    world = build(SEED, clients=CLIENTS, orders=ORDERS_EACH, tracing=True, window=False, stocked=stocked)
    world.run(until=order_system.SHOP_OPENS + point)
    orders = placed(world)
    out: dict[str, Any] = {"orders": orders, "log_entries": len(world.recorder), "spans": None}

    def traced() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    def freed(label: str, release: Callable[[], Any]) -> None:
        before = traced()
        release()
        out[label] = (before - traced()) / orders

    # Private parts, poked on purpose: only a benchmark lets a world's parts go one by one.
    freed("event log", world.recorder.log.clear)
    freed("domain events", world._events.clear)
    freed("history", world.history._ops.clear)
    tracing = world.tracing
    assert tracing is not None
    out["spans"] = len(tracing._finished)
    out["spans, as recorded"] = 0.0  # (worked out below; here for its place in the table)
    before = traced()
    world.spans()  # builds every automatic span into an SDK span, which takes its place
    read = traced()
    freed("spans, once read", tracing._finished.clear)
    out["reading the spans adds"] = (read - before) / orders
    out["spans, as recorded"] = out["spans, once read"] - out["reading the spans adds"]
    freed("calls' deadlines", lambda: [node._deadlines.clear() for node in world.nodes.values()
                                      if hasattr(node, "_deadlines")])
    freed("statements seen by the dbs", lambda: [db._seen.clear() for db in world.databases.values()])
    freed("database rows", lambda: [db.store.tables.clear() for db in world.databases.values()])
    freed("broker topics", lambda: [p.clear() for parts in world.broker._topics.values() for p in parts])
    gc.collect()
    out["left"] = tracemalloc.get_traced_memory()[0]
    return out


def where_it_goes(point: float, stocked: bool) -> None:
    parts = in_subprocess("--breakdown", json.dumps({"point": point, "stocked": stocked}))
    orders = parts.pop("orders")
    entries = parts.pop("log_entries")
    spans = parts.pop("spans")
    left = parts.pop("left")
    print(f"2. where it goes (tracemalloc, tracing on, whole log, after {point:g} virtual s: {orders:,} orders, "
          f"{entries / orders:.1f} log entries and {spans / orders:.1f} spans per order)")
    for label, per in parts.items():
        print(f"  {label:<28}{per / 1000:>8.2f} KB/order")
    print(f"  {'what is left (the world)':<28}{left / 2**20:>8.1f} MiB in all")
    print("  (a window bounds the log and the spans; the calls' deadlines stop growing once the first calls time out,")
    print("  5 s in; the history and the statements the databases saw grow with every order)")
    print()


# --- 3. world after world ---------------------------------------------------------------------


def many_worlds(count: int) -> dict[str, Any]:
    """Run ``count`` small worlds one after another; at a few points, RSS (as it is: the sandbox's own periodic
    collection is what must keep it flat), and the objects still alive once collected (what a leak would keep)."""
    rows = []
    marks = {1, 100, count // 2, count}
    alive: deque[weakref.ref] = deque(maxlen=64)  # the last worlds only: a reference per world would grow too
    for seed in range(count):
        world = order_system.build_world(seed, clients=2, orders_per_client=2, faults=False)
        order_system.run_to_completion(world)
        alive.append(weakref.ref(world))
        del world
        if seed + 1 in marks:
            memory = rss()
            waiting = sum(ref() is not None for ref in alive)
            gc.collect()
            rows.append({"worlds": seed + 1, "rss": memory, "waiting": waiting, "objects": len(gc.get_objects()),
                         "kept": sum(ref() is not None for ref in alive),
                         # FastAPI's own cache of endpoint facts, by id(function): a plain dict that never shrinks
                         "fastapi": len(getattr(fastapi.routing, "_endpoint_context_cache", ()))})
    return {"rows": rows}


def world_after_world(count: int) -> None:
    rows = in_subprocess("--many", str(count))["rows"]
    print(f"3. {count:,} small order-system worlds (2 customers x 2 orders, calm) one after another in one process")
    for r in rows:
        print(f"  after {r['worlds']:>5,} worlds: RSS {r['rss'] / 2**20:6.1f} MiB ({r['waiting']} of the last 64 dropped "
              f"worlds waiting for the collector); then collected: {r['kept']} alive, {r['objects']:,} objects; "
              f"{r['fastapi']:,} entries in FastAPI's endpoint cache")
    base, end = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    worlds = max(1, end["worlds"] - base["worlds"])
    print(f"  from world {base['worlds']:,} to world {end['worlds']:,}: {(end['rss'] - base['rss']) / worlds / 1024:+.1f} KiB of RSS, "
          f"{(end['objects'] - base['objects']) / worlds:+.2f} live objects and "
          f"{(end['fastapi'] - base['fastapi']) / worlds:+.1f} FastAPI cache entries per world")
    print()


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2, 4 and 8 virtual seconds; 200 worlds")
    parser.add_argument("--stocked", action="store_true", help="deep shelves: every order goes through")
    parser.add_argument("--worlds", type=int, default=None, help=f"worlds run one after another (default {WORLDS})")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--breakdown", help=argparse.SUPPRESS)
    parser.add_argument("--many", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        o = json.loads(args.one)
        print(json.dumps(one_config(o["tracing"], o["window"], tuple(o["points"]), o["stocked"], o["traced"])))
        return 0
    if args.breakdown:
        o = json.loads(args.breakdown)
        print(json.dumps(breakdown(o["point"], o["stocked"])))
        return 0
    if args.many:
        print(json.dumps(many_worlds(args.many)))
        return 0

    points = POINTS[:3] if args.quick else POINTS
    worlds = args.worlds or (200 if args.quick else WORLDS)
    print(f"Chaos Dojo memory benchmark (seed={SEED}); Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cores")
    print()
    same_world()
    ok = per_order_table(points, args.stocked)
    where_it_goes(points[1], args.stocked)
    world_after_world(worlds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
