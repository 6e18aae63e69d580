"""Fault injection: what every fault kind does, the fault and quiet phases of a schedule, coverage, the nemesis."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import pytest
from fastapi import Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

import sandbox
from sandbox.clocks import EPOCH
from sandbox.faults import (
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
    Targets,
    nemesis,
)

DB = "calls-db"
TOPIC = "orders"
GROUP = "billing"

# --- app factories (module level: each replica runs a fresh copy of this module) ------


def echo_app() -> FastAPI:
    """Echoes a number back; says which numbers it saw through ``sometimes`` / ``reachable``."""
    app = FastAPI()

    @app.get("/echo/{n}")
    async def echo(n: int) -> dict:
        sandbox.sometimes(n % 2 == 0, "an even number was echoed")
        sandbox.sometimes(n < 0, "a negative number was echoed")
        sandbox.reachable("an echo was answered")
        return {"n": n}

    @app.post("/upload")
    async def upload(body: bytes = b"") -> dict:
        return {"size": len(body)}

    return app


def peer_app() -> FastAPI:
    """Answers pings, and pings another service when asked to."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    @app.get("/call/{other}")
    async def call_other(other: str, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        try:
            await http.get(f"http://{other}/ping", timeout=0.05)
        except sandbox.RequestTimeout:
            return {"reached": False}
        return {"reached": True}

    return app


def counter_app() -> FastAPI:
    """Counts its calls in memory (lost on a crash) and stores each call in its database and on its disk."""
    app = FastAPI()
    calls = {"n": 0}

    @app.post("/calls/{key}")
    async def count_call(
        key: str,
        db: sandbox.Database = Depends(sandbox.database(DB)),
        disk: sandbox.Database = Depends(sandbox.disk),
    ) -> dict:
        calls["n"] += 1
        await db.put("calls", key, calls["n"])
        await disk.put("calls", key, calls["n"])
        return {"n": calls["n"]}

    return app


def rows_app() -> FastAPI:
    """Writes rows with a short database timeout, and holds or grabs a row lock."""
    app = FastAPI()
    impatient = sandbox.database(DB, timeout=0.1)

    @app.put("/rows/{key}")
    async def put_row(key: str, db: sandbox.Database = Depends(impatient)) -> dict:
        try:
            await db.put("rows", key, {"written": True})
        except sandbox.RequestTimeout:
            return {"timed_out": True}
        return {"timed_out": False}

    @app.put("/patient-rows/{key}")
    async def put_row_patiently(key: str, db: sandbox.Database = Depends(sandbox.database(DB))) -> dict:
        await db.put("rows", key, {"written": True})
        return {"timed_out": False}

    @app.post("/hold/{key}")
    async def hold(key: str, db: sandbox.Database = Depends(sandbox.database(DB))) -> dict:
        async with db.transaction() as tx:
            await tx.get("rows", key, for_update=True)
            await sandbox.sleep(0.5)
            await tx.put("rows", key, {"held": True})
        return {"held": True}

    @app.post("/grab/{key}")
    async def grab(key: str, db: sandbox.Database = Depends(sandbox.database(DB))) -> dict:
        try:
            async with db.transaction() as tx:
                await tx.get("rows", key, for_update=True)
                await tx.put("rows", key, {"grabbed": True})
        except sandbox.LockTimeout:
            return {"error": "LockTimeout"}
        return {"grabbed": True}

    return app


def shop_app() -> FastAPI:
    """Publishes one message to TOPIC per request."""
    app = FastAPI()

    @app.post("/send/{n}")
    async def send(n: int, producer: sandbox.Producer = Depends(sandbox.producer)) -> dict:
        meta = await producer.send(TOPIC, {"n": n}, key=f"k{n}")
        return {"partition": meta.partition, "offset": meta.offset}

    return app


def billing_app() -> FastAPI:
    """Consumes TOPIC in GROUP, taking 30 ms per message."""
    app = FastAPI()

    @sandbox.consumer(app, TOPIC, group=GROUP, poll_interval=0.02)
    async def on_order(message: sandbox.Message) -> None:
        await sandbox.sleep(0.03)

    return app


# --- helpers ----------------------------------------------------------------------------


def steady(world: sandbox.World, name: str, url: str, *, until: float, every: float = 0.01,
           timeout: float = 0.05, method: str = "GET", start: float = 0.0) -> None:
    """Add a client ``name`` that calls ``url`` (``{i}`` filled in) every ``every`` seconds until ``until``,
    recording each call as an operation: ok with the JSON body, or info if it timed out."""

    async def calls(client: sandbox.Client) -> None:
        i = 0
        while client.now < until:
            async with client.operation("call", i) as op:
                r = await client.http.request(method, url.format(i=i), timeout=timeout)
                op.ok(r.json())
            i += 1
            await client.sleep(every)

    world.add_client(name, calls, start=start)


def outcomes(world: sandbox.World, process: str) -> list[tuple[float, str, object]]:
    """``(invoke time, completion type, value)`` of each operation of one client."""
    ops = [op for op in world.history if op.process == process]
    return [(inv.time, done.type, done.value) for inv, done in zip(ops[::2], ops[1::2])]


def entries(world: sandbox.World, kind: str, start: float = 0.0, end: float = float("inf")) -> list[tuple]:
    """The log entries of one kind with start <= time < end."""
    return [e for e in world.recorder.entries(kind) if start <= e[0] < end]


def constant_links(world: sandbox.World, latency: float = 0.001) -> None:
    world.network.set_defaults(latency=latency, jitter=0.0, distribution="constant")


# --- partitions -------------------------------------------------------------------------

WINDOW = (0.3, 0.6)  # when the partition tests cut links
MARGIN = 0.06  # a call takes at most this long (inner timeout 0.05 plus latencies)


def mesh(*names: str, seed: int = 1) -> sandbox.World:
    """Services ``names``; for each ordered pair, a client asking ``src`` to ping ``dst`` every 20 ms until t=0.9."""
    world = sandbox.World(seed=seed)
    for name in names:
        world.add_service(name, peer_app)
    for src in names:
        for dst in names:
            if src != dst:
                steady(world, f"via-{src}-{dst}", f"http://{src}/call/{dst}", until=0.9, every=0.02, timeout=0.2)
    return world


def reached(world: sandbox.World, src: str, dst: str) -> tuple[list[bool], list[bool], list[bool]]:
    """Whether ``src`` reached ``dst``, for the calls made before, well inside, and after WINDOW."""
    start, end = WINDOW
    results = [(t, kind == "ok" and value["reached"]) for t, kind, value in outcomes(world, f"via-{src}-{dst}")]
    before = [r for t, r in results if t < start - MARGIN]
    during = [r for t, r in results if start <= t < end - MARGIN]
    after = [r for t, r in results if t >= end]
    assert before and during and after
    return before, during, after


def cut_pairs(world: sandbox.World) -> set[tuple[str, str]]:
    """The (src, dst) of every message a partition dropped."""
    return {(e[2], e[3]) for e in world.recorder.entries("net.drop") if e[-1] == "partition"}


def test_partition_drops_messages_both_ways_until_healed():
    """A partition a | b stops calls from a to b and from b to a during its window; afterwards both succeed again."""
    world = mesh("a", "b")
    world.inject(Schedule([Partition("a", "b", start=WINDOW[0], duration=WINDOW[1] - WINDOW[0])]))
    world.run()
    for src, dst in (("a", "b"), ("b", "a")):
        before, during, after = reached(world, src, dst)
        assert all(before) and not any(during) and all(after)
    assert cut_pairs(world) == {("a-0", "b-0"), ("b-0", "a-0")}
    assert all(WINDOW[0] <= e[0] < WINDOW[1] for e in world.recorder.entries("net.drop"))


def test_one_way_partition_to_drops_only_target_to_peer():
    """direction="to" drops a's messages to b, while b's requests still arrive at a (a's answers are lost)."""
    world = mesh("a", "b")
    world.inject(Schedule([Partition("a", "b", direction="to", start=WINDOW[0], duration=WINDOW[1] - WINDOW[0])]))
    world.run()
    assert cut_pairs(world) == {("a-0", "b-0")}
    served = entries(world, "http.request", *WINDOW)
    assert [e for e in served if (e[2], e[3]) == ("a-0", "b-0")]  # b's pings reach a
    assert not [e for e in served if (e[2], e[3]) == ("b-0", "a-0")]
    assert not any(reached(world, "b", "a")[1])  # but b never hears back
    assert all(reached(world, "b", "a")[2])


def test_one_way_partition_from_drops_only_peer_to_target():
    """direction="from" drops b's messages to a, while a's requests still arrive at b."""
    world = mesh("a", "b")
    world.inject(Schedule([Partition("a", "b", direction="from", start=WINDOW[0], duration=WINDOW[1] - WINDOW[0])]))
    world.run()
    assert cut_pairs(world) == {("b-0", "a-0")}
    served = entries(world, "http.request", *WINDOW)
    assert [e for e in served if (e[2], e[3]) == ("b-0", "a-0")]  # a's pings reach b
    assert not [e for e in served if (e[2], e[3]) == ("a-0", "b-0")]


def test_partition_from_everyone_cuts_only_incoming_messages():
    """Partition(a, direction="from") with no peer drops the messages of every other node to a, and none from a."""
    world = mesh("a", "b")
    world.inject(Schedule([Partition("a", direction="from", start=WINDOW[0], duration=WINDOW[1] - WINDOW[0])]))
    world.run()
    assert cut_pairs(world) == {("via-a-b", "a-0"), ("b-0", "a-0")}
    assert not any(reached(world, "b", "a")[1]) and all(reached(world, "b", "a")[2])


def test_isolate_cuts_one_node_off_from_all_others():
    """Isolate(b) stops b talking to a and c, and the clients reaching b, while a and c still talk."""
    world = mesh("a", "b", "c")
    world.inject(Schedule([Isolate("b", start=WINDOW[0], duration=WINDOW[1] - WINDOW[0])]))
    world.run()
    assert not any(reached(world, "a", "b")[1]) and not any(reached(world, "c", "b")[1])
    assert all(reached(world, "a", "c")[1]) and all(reached(world, "c", "a")[1])
    start, end = WINDOW
    client_calls = [kind for t, kind, _v in outcomes(world, "via-b-a") if start <= t < end - 0.2]
    assert client_calls and set(client_calls) == {"info"}  # the client cannot reach b either
    assert all("b-0" in pair for pair in cut_pairs(world))
    assert all(reached(world, "a", "b")[2])


def test_split_halves_cuts_between_the_halves_and_not_inside_them():
    """SplitHalves of four services: no call crosses between the two halves, every call inside a half succeeds."""
    names = ("a", "b", "c", "d")
    world = mesh(*names, seed=3)
    world.inject(Schedule([SplitHalves(list(names), start=WINDOW[0], duration=WINDOW[1] - WINDOW[0])]))
    world.run()
    (window,) = world.chaos.windows
    halves = [{n.removesuffix("-0") for n in window.nodes}, {n.removesuffix("-0") for n in window.peers}]
    assert [len(h) for h in halves] == [2, 2] and halves[0] | halves[1] == set(names)
    for src in names:
        for dst in names:
            if src != dst:
                during = reached(world, src, dst)[1]
                same_side = any({src, dst} <= h for h in halves)
                assert all(during) if same_side else not any(during)


def test_bridge_leaves_one_node_talking_to_both_halves():
    """Bridge of five services: the halves cannot talk to each other, but the bridge node talks to all four."""
    names = ("a", "b", "c", "d", "e")
    world = mesh(*names, seed=4)
    world.inject(Schedule([Bridge(list(names), start=WINDOW[0], duration=WINDOW[1] - WINDOW[0])]))
    world.run()
    (window,) = world.chaos.windows
    one, other = {n.removesuffix("-0") for n in window.nodes}, {n.removesuffix("-0") for n in window.peers}
    (middle,) = set(names) - one - other
    assert len(one) == len(other) == 2
    for src in names:
        for dst in names:
            if src != dst:
                during = reached(world, src, dst)[1]
                crosses = (src in one and dst in other) or (src in other and dst in one)
                assert not any(during) if crosses else all(during), (src, dst, middle)


def test_healing_one_partition_leaves_another_on_the_same_link():
    """Two faults cut a | b; when the shorter heals the link stays cut until the longer heals too."""
    world = mesh("a", "b")
    world.inject(Schedule([
        Partition("a", "b", start=0.1, duration=0.2),
        Partition("a", "b", start=0.1, duration=0.5),
    ]))
    world.run(until=0.4)
    assert world.network.link("a", "b").cut and world.network.link("b", "a").cut
    shorter, longer = world.chaos.windows
    assert shorter.end == pytest.approx(0.3) and longer.end is None
    world.run(until=0.7)
    assert not world.network.link("a", "b").cut and not world.network.link("b", "a").cut
    assert world.network.partitions == []


def test_user_partitions_are_not_healed_by_the_schedule():
    """A partition made with world.network.partition stays after the quiet phase begins; only the faults' cuts heal."""
    world = mesh("a", "b", "c")
    world.network.partition(["a"], ["b"])
    world.inject(Schedule([Partition("a", "c", start=0.1, duration=0.2)]))
    world.run(settle=0.1)
    assert world.network.partitions == [(("a-0",), ("b-0",), False)]
    assert world.network.link("a", "b").cut and not world.network.link("a", "c").cut
    assert not any(reached(world, "a", "b")[2])
    assert all(reached(world, "a", "c")[2])


def test_a_manual_heal_leaves_the_schedules_partitions_in_place():
    """world.network.heal() removes the partitions made by hand, not those of a fault still in force."""
    world = mesh("a", "b", "c")
    world.network.partition(["a"], ["b"])
    world.inject(Schedule([Partition("a", "c", start=0.1, duration=0.8)]))
    world.run(until=0.2)
    world.network.heal()
    assert not world.network.link("a", "b").cut
    assert world.network.link("a", "c").cut
    world.run(until=1.0)
    assert not world.network.link("a", "c").cut


def test_partition_from_everyone_also_cuts_nodes_added_during_it():
    """Partition(a, direction="from") with no peer cuts a node that joins while it is in force."""
    world = mesh("a", "b")
    world.inject(Schedule([Partition("a", direction="from", start=0.1, duration=0.5)]))
    world.run(until=0.2)
    steady(world, "late", "http://a/ping", until=0.5, every=0.05, timeout=0.03)
    world.run(until=0.55)
    assert [done for _t, done, _v in outcomes(world, "late")] and all(
        done == "info" for _t, done, _v in outcomes(world, "late")
    )
    assert ("late", "a-0") in cut_pairs(world)


@pytest.mark.parametrize("fault", [Partition("a", "a"), Partition(["a", "b"], "b"), Delay("a", peer="a")])
def test_a_target_overlapping_its_peer_is_refused(fault):
    """A node cannot be on both sides of a link fault: inject() says which nodes overlap."""
    world = mesh("a", "b")
    with pytest.raises(sandbox.InvalidParameterError, match="overlap on"):
        world.inject(Schedule([fault], heal_at=1.0))


# --- link faults ------------------------------------------------------------------------


def sends(world: sandbox.World, src: str, dst: str) -> list[tuple[float, float]]:
    """``(time, delay)`` of every message sent from ``src`` to ``dst``."""
    return [(e[0], e[-1]) for e in world.recorder.entries("net.send") if (e[2], e[3]) == (src, dst)]


def test_delay_adds_latency_on_matched_links_only_during_its_window():
    """Delay(echo, peer=c1, from) adds 100 ms to c1 -> echo in [0.2, 0.4), and nothing to echo -> c1 or c2 -> echo."""
    world = sandbox.World(seed=1)
    constant_links(world)
    world.add_service("echo", echo_app)
    steady(world, "c1", "http://echo/echo/{i}", until=0.6, timeout=0.5)
    steady(world, "c2", "http://echo/echo/{i}", until=0.6, timeout=0.5)
    world.inject(Schedule([Delay("echo", peer="c1", direction="from", latency=0.1, start=0.2, duration=0.2)]))
    world.run()
    inside = [d for t, d in sends(world, "c1", "echo-0") if 0.2 <= t < 0.4]
    outside = [d for t, d in sends(world, "c1", "echo-0") if not 0.2 <= t < 0.4]
    assert inside and inside == [pytest.approx(0.101)] * len(inside)
    assert outside and outside == [0.001] * len(outside)
    assert {d for _t, d in sends(world, "echo-0", "c1") + sends(world, "c2", "echo-0")} == {0.001}
    assert world.chaos.windows[0].fired == len(inside)


def loss_run(seed: int) -> sandbox.World:
    world = sandbox.World(seed=seed)
    world.add_service("echo", echo_app)
    for name in ("c1", "c2", "c3"):
        steady(world, name, "http://echo/echo/{i}", until=1.0, every=0.002, timeout=0.01)
    world.inject(Schedule([Loss("echo", probability=0.3, start=0.1, duration=0.8)]))
    world.run()
    return world


def test_loss_drops_about_its_share_of_messages_reproducibly():
    """Loss(p=0.3) drops roughly 30% of the messages on its links in its window, the same ones on every run."""
    world = loss_run(seed=2)
    lost = [e for e in world.recorder.entries("net.drop") if e[-1] == "loss (fault 0)"]
    carried = [e for e in entries(world, "net.send", 0.1, 0.9) if "echo-0" in (e[2], e[3])]
    share = len(lost) / (len(lost) + len(carried))
    assert len(lost) + len(carried) > 300
    assert 0.22 < share < 0.38
    assert all(0.1 <= e[0] < 0.9 for e in lost)
    assert world.chaos.windows[0].fired == len(lost)
    again = [e for e in loss_run(seed=2).recorder.entries("net.drop") if e[-1] == "loss (fault 0)"]
    assert again == lost


def test_duplicate_delivers_each_message_twice():
    """Duplicate(p=1) on c -> echo makes every request of its window reach the endpoint twice, and no other."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.6)
    world.inject(Schedule([Duplicate("echo", peer="c", direction="from", probability=1.0, start=0.2, duration=0.2)]))
    world.run()
    sent = {e[5]: e[0] for e in world.recorder.entries("net.send") if e[2] == "c"}
    served = Counter(e[4] for e in world.recorder.entries("http.request"))
    doubled = {msg for msg, t in sent.items() if 0.2 <= t < 0.4}
    assert doubled and all(served[msg] == 2 for msg in doubled)
    assert all(served[msg] == 1 for msg in sent.keys() - doubled)
    assert world.chaos.windows[0].fired == len(doubled) == len(world.recorder.entries("net.duplicate"))


def burst(world: sandbox.World, count: int, *, start: float, upload: bytes = b"") -> None:
    """A client that sends ``count`` requests to echo at once at ``start`` (uploads if ``upload``)."""

    async def all_at_once(client: sandbox.Client) -> None:
        if upload:
            calls = [client.http.post("http://echo/upload", content=upload, timeout=5.0) for _ in range(count)]
        else:
            calls = [client.http.get(f"http://echo/echo/{i}", timeout=5.0) for i in range(count)]
        await sandbox.gather(*calls)

    world.add_client("burst", all_at_once, start=start)


def test_reorder_lets_later_messages_overtake_held_ones():
    """Reorder(p=0.5, gap=20 ms): held requests arrive exactly 20 ms late, after requests sent later."""
    world = sandbox.World(seed=1)
    constant_links(world, latency=0.01)
    world.add_service("echo", echo_app)
    burst(world, 20, start=0.1)
    world.inject(Schedule([Reorder("echo", direction="from", probability=0.5, gap=0.02, start=0.05, duration=1.0)]))
    world.run()
    arrived = [(e[0], int(e[6].rsplit("/", 1)[1])) for e in world.recorder.entries("http.request")]
    assert sorted(n for _t, n in arrived) == list(range(20))
    assert {round(t, 6) for t, _n in arrived} == {0.11, 0.13}
    order = [n for _t, n in arrived]
    assert order != sorted(order)  # a later request overtook an earlier one
    held = [n for t, n in arrived if round(t, 6) == 0.13]
    assert world.chaos.windows[0].fired == len(held)


def test_bandwidth_spreads_a_burst_by_size_over_rate():
    """Bandwidth(10 kB/s): five 1000-byte uploads sent at once arrive 0.12 s apart (1200 bytes each on the wire)."""
    world = sandbox.World(seed=1)
    constant_links(world)
    world.add_service("echo", echo_app)
    burst(world, 5, start=0.1, upload=b"x" * 1000)
    world.inject(Schedule([Bandwidth("echo", direction="from", rate=10_000, start=0.05, duration=2.0)]))
    world.run()
    arrivals = [e[0] for e in world.recorder.entries("http.request")]
    assert arrivals == pytest.approx([0.1 + 0.001 + 0.12 * k for k in range(1, 6)])
    assert world.chaos.windows[0].fired == 5


def test_clog_holds_messages_and_delivers_them_all_when_it_heals():
    """Clog on c -> echo for [0.2, 0.5): no request of the window is lost; all reach echo at t=0.5."""
    world = sandbox.World(seed=1)
    constant_links(world)
    world.add_service("echo", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.8, timeout=0.02)
    world.inject(Schedule([Clog("echo", peer="c", direction="from", start=0.2, duration=0.3)]))
    world.run()
    held = {e[5] for e in entries(world, "net.send", 0.2, 0.5) if e[2] == "c"}
    served = {e[4]: e[0] for e in world.recorder.entries("http.request")}
    assert len(held) > 5
    assert {served[msg] for msg in held} == {0.5}
    assert world.recorder.entries("net.drop") == []
    assert world.chaos.windows[0].fired == len(held)


# --- node faults ------------------------------------------------------------------------


def counter_world(seed: int = 1, replicas: int = 1) -> sandbox.World:
    world = sandbox.World(seed=seed)
    world.add_database(DB)
    world.add_service("counter", counter_app, replicas=replicas)
    return world


def test_kill_loses_memory_keeps_storage_and_restarts_after_restart_after():
    """Kill at 0.3 with restart_after=0.2: down until 0.5, its in-memory count starts over, its stored rows survive."""
    world = counter_world()
    steady(world, "c", "http://counter/calls/{i}", until=0.8, every=0.02, method="POST")
    world.inject(Schedule([Kill("counter", start=0.3, restart_after=0.2)]))
    world.run()
    assert [(e[0], e[1]) for e in world.recorder.log if e[1] in ("node.crash", "node.restart")] == [
        (0.3, "node.crash"), (0.5, "node.restart"),
    ]
    results = outcomes(world, "c")
    counts = [v["n"] for _t, kind, v in results if kind == "ok"]
    restart = counts.index(1, 1)
    assert counts == list(range(1, restart + 1)) + list(range(1, len(counts) - restart + 1))
    assert {kind for t, kind, _v in results if 0.3 <= t < 0.45} == {"info"}
    keys = [f"{i}" for i, (_t, kind, _v) in enumerate(results) if kind == "ok"]
    stored_before_crash = [v for t, kind, v in results if kind == "ok" and t < 0.3]
    assert set(keys) <= set(world.database(DB).rows("calls"))
    assert set(keys) <= set(world.disk("counter-0").rows("calls"))
    assert [world.database(DB).read("calls", str(i)) for i in range(len(stored_before_crash))] == [
        v["n"] for v in stored_before_crash
    ]


def test_a_create_app_that_raises_at_a_restart_leaves_that_replica_down_and_says_why():
    """A replica whose create_app() fails when a Kill restarts it stays down, as a process whose start-up fails:
    the run goes on, the other replica serves, the world's errors name the replica, the restart and the error,
    and a later restart tries again. (Before, the error escaped world.run() naming neither, and the replica was
    left marked up with no app.)"""
    builds = {"n": 0}

    def flaky_app() -> FastAPI:
        builds["n"] += 1
        if builds["n"] == 3:  # two replicas build at the start; the first restart fails, the second works
            raise ValueError("settings file missing")
        return counter_app()

    world = sandbox.World(seed=1)
    world.add_database(DB)
    world.add_service("counter", flaky_app, replicas=2, isolate_module=False)
    steady(world, "c", "http://counter/calls/{i}", until=2.0, every=0.02, method="POST")
    world.inject(Schedule([Kill("counter-1", start=0.3, restart_after=0.2)]))
    world.run(until=1.0)
    (error,) = world.errors
    assert (error.time, error.node, error.type, error.message) == (0.5, "counter-1", "ValueError", "settings file missing")
    assert "restart" in error.where and "stays down" in error.where
    assert "flaky_app" in error.traceback
    replica = world.services["counter"].instances[1]
    assert not replica.alive and replica.app is None
    world.restart("counter-1")  # a later restart tries again, and this time the app builds
    world.run()
    lifecycle = [(e[0], e[1]) for e in world.recorder.log if e[1] in ("node.crash", "node.restart") and e[2] == "counter-1"]
    assert lifecycle == [(0.3, "node.crash"), (0.5, "node.restart"), (0.5, "node.crash"), (1.0, "node.restart")]
    assert replica.alive and replica.app is not None
    assert len(world.errors) == 1
    assert {kind for _t, kind, _v in outcomes(world, "c")} <= {"ok", "info"}


def test_disk_loss_restarts_a_replica_with_an_empty_disk_and_keeps_the_database():
    """DiskLoss at 0.3 (restart after 0.2): the replica is down until 0.5 and comes back with nothing on its disk
    from before 0.3, while the database (a node of its own) keeps every row; later writes reach the new disk."""
    world = counter_world()
    steady(world, "c", "http://counter/calls/{i}", until=0.8, every=0.02, method="POST")
    world.inject(Schedule([DiskLoss("counter", start=0.3, restart_after=0.2)]))
    world.run()
    assert [(e[0], e[1]) for e in world.recorder.log if e[1] in ("node.crash", "disk.lost", "node.restart")] == [
        (0.3, "node.crash"), (0.3, "disk.lost"), (0.5, "node.restart"),
    ]
    results = outcomes(world, "c")
    acked = {str(i): t for i, (t, kind, _v) in enumerate(results) if kind == "ok"}
    before = {k for k, t in acked.items() if t < 0.3}
    after = {k for k, t in acked.items() if t > 0.5}
    assert before and after
    assert before | after <= set(world.database(DB).rows("calls"))
    on_disk = set(world.disk("counter-0").rows("calls"))
    assert after <= on_disk and not (before & on_disk)


def test_disk_loss_is_a_kill_in_reports_and_refuses_a_database():
    """DiskLoss is PodChaos like Kill (its repr says the disk is lost); aimed at a database it is refused with the
    name and what to use instead; the nemesis draws it on replicas only."""
    fault = DiskLoss("counter", start=0.3, restart_after=0.2)
    assert (fault.family, fault.action) == ("PodChaos", "disk-loss")
    assert "disk lost" in repr(fault) or "disk lost" in str(Schedule([fault]))
    world = counter_world()
    with pytest.raises(sandbox.InvalidParameterError, match=r"'calls-db' has no local disk to lose.*Kill"):
        world.inject(Schedule([DiskLoss(DB, start=0.1)]))
    drawn = [f for seed in range(60) for f in nemesis(seed, Targets(["counter", DB], databases=[DB]),
                                                      kinds=("disk-loss",), count=1)]
    assert drawn and {f.target for f in drawn} == {("counter",)}


def test_failure_keeps_the_node_down_for_its_duration():
    """Failure(echo) for [0.2, 0.5): echo is down (messages to it dropped) and up again from 0.5."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.8)
    world.inject(Schedule([Failure("echo", start=0.2, duration=0.3)]))
    world.run(until=0.35)
    assert not world.node("echo").alive
    world.run()
    assert world.node("echo").alive
    downs = world.recorder.entries("net.drop")
    assert downs and {e[-1] for e in downs} == {"down"} and all(0.2 <= e[0] < 0.5 for e in downs)
    assert {kind for t, kind, _v in outcomes(world, "c") if t >= 0.55} == {"ok"}
    assert world.chaos.windows[0].fired == 1


def test_pause_freezes_the_node_and_keeps_its_memory():
    """Pause(counter) for [0.2, 0.5): a call made at 0.25 is answered only after 0.5, and its count goes on from 1."""
    world = counter_world()
    answers: list[tuple[float, int]] = []

    async def two_calls(client: sandbox.Client) -> None:
        for key, at in (("first", 0.1), ("second", 0.25)):
            await client.sleep(at - client.now)
            r = await client.http.post(f"http://counter/calls/{key}", timeout=2.0)
            answers.append((client.now, r.json()["n"]))

    world.add_client("c", two_calls)
    world.inject(Schedule([Pause("counter", start=0.2, duration=0.3)]))
    world.run(until=0.4)
    assert world.node("counter").alive and world.node("counter").paused
    world.run()
    assert [n for _t, n in answers] == [1, 2]
    assert 0.5 < answers[1][0] < 0.52
    assert [(e[0], e[1]) for e in world.recorder.log if e[1] in ("node.pause", "node.resume")] == [
        (0.2, "node.pause"), (0.5, "node.resume"),
    ]
    assert world.recorder.entries("node.crash") == []


def chosen(seed: int, *faults) -> list[tuple[str, ...]]:
    """The nodes each fault chose among four replicas of web, in a world of ``seed``."""
    world = sandbox.World(seed=seed)
    world.add_service("web", echo_app, replicas=4, isolate_module=False)
    world.inject(Schedule(list(faults)))
    world.run(until=0.2)
    return [w.nodes for w in sorted(world.chaos.windows, key=lambda w: w.index)]


@pytest.mark.parametrize(("mode", "value", "count"), [
    ("one", None, 1),
    ("all", None, 4),
    ("fixed", 2, 2),
    ("fixed", 9, 4),
    ("percent", 50, 2),
    ("percent", 10, 1),
    ("percent", 100, 4),
])
def test_mode_chooses_how_many_replicas(mode, value, count):
    """Among four replicas, mode one/all/fixed/percent choose 1, 4, value (at most 4), or value% (at least 1)."""
    (nodes,) = chosen(1, Pause("web", mode=mode, value=value, start=0.1, duration=0.5))
    assert len(nodes) == count == len(set(nodes))
    assert set(nodes) <= {"web-0", "web-1", "web-2", "web-3"}


def test_mode_choice_is_deterministic_from_the_seed_and_fault_index():
    """The same seed makes the same choice; other seeds, and another fault of the same schedule, choose otherwise."""
    kill = Kill("web", start=0.1, restart_after=1.0)
    pause = Pause("web", mode="fixed", value=2, start=0.1, duration=1.0)
    assert chosen(5, kill, pause) == chosen(5, kill, pause)
    assert len({tuple(chosen(seed, kill, pause)) for seed in range(8)}) > 1
    twins = [chosen(seed, Pause("web", start=0.1, duration=1.0), Pause("web", start=0.1, duration=1.0))
             for seed in range(8)]
    assert any(first != second for first, second in twins)


def test_kill_on_a_node_already_down_fires_nothing():
    """A Kill that finds its node already crashed does not count as fired, and does not restart it."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    world.inject(Schedule([Kill("echo", start=0.2, restart_after=0.1)]))
    world.run(until=0.1)
    world.crash("echo")
    world.run(until=0.5)
    assert world.chaos.windows[0].fired == 0
    assert not world.node("echo").alive


def downs_and_ups(world: sandbox.World) -> list[tuple[float, str]]:
    """``(time, kind)`` of every crash, restart, pause and resume of the run."""
    kinds = ("node.crash", "node.restart", "node.pause", "node.resume")
    return [(pytest.approx(e[0]), e[1]) for e in world.recorder.log if e[1] in kinds]


def test_overlapping_failures_keep_the_node_down_for_the_union_of_their_windows():
    """Failures of echo for [0.2, 0.5) and [0.4, 0.8) keep it down from 0.2 to 0.8: one crash, one restart."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    world.inject(Schedule([Failure("echo", start=0.2, duration=0.3), Failure("echo", start=0.4, duration=0.4)]))
    world.run(until=0.6)
    assert not world.node("echo").alive
    world.run()
    assert downs_and_ups(world) == [(0.2, "node.crash"), (0.8, "node.restart")]
    assert [w.fired for w in world.chaos.windows] == [1, 1]


def test_a_kill_inside_a_failure_leaves_the_node_down_until_the_failure_ends():
    """A Kill restarting after 0.2 s, inside a Failure of [0.2, 0.8), does not bring the node back before 0.8."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    world.inject(Schedule([Failure("echo", start=0.2, duration=0.6), Kill("echo", start=0.3, restart_after=0.2)]))
    world.run(until=0.6)
    assert not world.node("echo").alive
    world.run()
    assert downs_and_ups(world) == [(0.2, "node.crash"), (0.8, "node.restart")]
    assert [w.fired for w in world.chaos.windows] == [1, 1]


def test_overlapping_pauses_keep_the_node_frozen_until_the_last_ends():
    """Pauses of echo for [0.2, 0.5) and [0.3, 0.7) freeze it once, at 0.2, and resume it once, at 0.7."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    world.inject(Schedule([Pause("echo", start=0.2, duration=0.3), Pause("echo", start=0.3, duration=0.4)]))
    world.run(until=0.6)
    assert world.node("echo").paused
    world.run()
    assert downs_and_ups(world) == [(0.2, "node.pause"), (0.7, "node.resume")]
    assert [w.fired for w in world.chaos.windows] == [1, 1]


def test_kill_takes_duration_as_another_name_for_restart_after():
    """Kill(duration=2) is Kill(restart_after=2), and shows itself as such."""
    kill = Kill("orders", duration=2)
    assert kill == Kill("orders", restart_after=2)
    assert (kill.restart_after, kill.duration) == (2.0, 2.0)
    assert repr(kill) == "Kill('orders', restart_after=2.0)"


def test_kill_replace_changes_restart_after_and_duration_together():
    """Replacing a Kill's restart_after changes its duration, and replacing its duration changes its restart_after."""
    kill = Kill("orders", start=1)
    assert kill.replace(restart_after=2).duration == 2.0
    assert kill.replace(duration=3).restart_after == 3.0
    assert kill.replace(duration=3) == Kill("orders", start=1, restart_after=3)


# --- clock faults -----------------------------------------------------------------------


def clock_world() -> sandbox.World:
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    world.add_service("other", echo_app)
    return world


def wall_error(world: sandbox.World, name: str) -> float:
    """How far ``name``'s wall clock is from true time, in seconds."""
    return world.node(name).clock.time() - EPOCH - world.now


def test_clock_skew_offset_moves_one_clock_and_not_virtual_time():
    """ClockSkew(offset=5) makes echo's clock read 5 s ahead in its window; virtual time and other's clock are untouched."""
    world = clock_world()
    world.inject(Schedule([ClockSkew("echo", offset=5.0, start=0.2, duration=0.3)]))
    world.run(until=0.3)
    assert world.now == 0.3
    assert wall_error(world, "echo") == pytest.approx(5.0, abs=1e-6)
    assert wall_error(world, "other") == pytest.approx(0.0, abs=1e-6)
    world.run(until=0.6)
    assert wall_error(world, "echo") == pytest.approx(0.0, abs=1e-6)


def test_clock_skew_drift_makes_the_clock_gain():
    """ClockSkew(drift=0.1) makes echo's clock gain 0.1 s per second of its window; monotonic time never goes back."""
    world = clock_world()
    world.inject(Schedule([ClockSkew("echo", drift=0.1, start=0.2, duration=0.5)]))
    clock = world.node("echo").clock
    readings = []
    for t in (0.1, 0.2, 0.4, 0.7, 0.8, 1.0):
        world.run(until=t)
        readings.append((clock.monotonic(), wall_error(world, "echo")))
    monotonic = [m for m, _e in readings]
    assert monotonic == sorted(monotonic)
    assert readings[2][1] == pytest.approx(0.02, abs=1e-6)  # 0.2 s into the window
    assert readings[3][0] - readings[1][0] == pytest.approx(0.55)  # 0.5 s of true time read as 0.55
    assert readings[4][1] == pytest.approx(0.0, abs=1e-6) and readings[5][1] == pytest.approx(0.0, abs=1e-6)
    assert readings[5][0] - readings[4][0] == pytest.approx(0.2)  # back to true rate after healing


def test_clock_skew_heals_back_to_the_clocks_own_error():
    """A clock already 1 s ahead and drifting 1 ms/s returns to that error when a skew heals, and keeps its drift."""
    world = clock_world()
    clock = world.node("echo").clock
    clock.offset = 1.0
    clock.drift = 1e-3
    world.inject(Schedule([ClockSkew("echo", offset=-3.0, start=1.0, duration=1.0)]))
    world.run(until=1.0)
    before = wall_error(world, "echo")
    world.run(until=1.5)
    assert wall_error(world, "echo") == pytest.approx(before - 3.0 + 0.5e-3, abs=1e-6)
    assert clock.drift == 1e-3  # an offset-only skew leaves the clock's own rate alone
    world.run(until=2.5)
    assert clock.drift == 1e-3
    assert wall_error(world, "echo") == pytest.approx(before + 0.5e-3, abs=1e-6)


def test_overlapping_clock_skews_add_up_and_end_one_by_one():
    """Skews of echo over [1, 2.5) and [2, 3) add their offsets and drifts; each ending takes away only its own."""
    world = clock_world()
    clock = world.node("echo").clock
    world.inject(Schedule([
        ClockSkew("echo", offset=10.0, drift=0.1, start=1.0, duration=1.5),
        ClockSkew("echo", offset=5.0, drift=0.2, start=2.0, duration=1.0),
    ]))
    readings = []
    for t in (1.5, 2.25, 2.75, 3.5):
        world.run(until=t)
        readings.append((clock.monotonic(), wall_error(world, "echo"), clock.drift))
    errors = [error for _m, error, _d in readings]
    assert errors == pytest.approx([10.05, 10.1 + 5.0 + 0.3 * 0.25, 5.0 + 0.1 + 0.3 * 0.5 + 0.2 * 0.25, 0.0], abs=1e-6)
    assert [drift for _m, _e, drift in readings] == pytest.approx([0.1, 0.3, 0.2, 0.0])
    monotonic = [m for m, _e, _d in readings]
    assert monotonic == sorted(monotonic)


def test_overlapping_clock_skews_healed_together_step_back_to_the_old_error():
    """Two skews of +10 s and +5 s both healed at heal_at leave the clock where it was before them."""
    world = clock_world()
    world.inject(Schedule([ClockSkew("echo", offset=10, start=1), ClockSkew("echo", offset=5, start=2)], heal_at=4))
    world.run(until=3)
    assert wall_error(world, "echo") == pytest.approx(15.0, abs=1e-6)
    world.run(until=5)
    assert wall_error(world, "echo") == pytest.approx(0.0, abs=1e-6)
    assert world.node("echo").clock.drift == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_a_nemesis_of_clock_skews_leaves_every_clock_at_its_old_error(seed):
    """After the quiet phase of four drawn clock skews, every clock reads its error from before the first, at its old rate."""
    world = nemesis_world(seed)
    for i, node in enumerate(world.nodes.values()):
        node.clock.offset = 0.25 * (i + 1)
    before = {name: wall_error(world, name) for name in world.nodes}
    schedule = nemesis(seed, world, kinds=("clock-skew",), count=4, within=1.0, duration=(0.1, 0.6))
    world.inject(schedule)
    world.run(settle=0.5)
    assert {name: wall_error(world, name) for name in world.nodes} == pytest.approx(before, abs=1e-6)
    assert {node.clock.drift for node in world.nodes.values()} == {0.0}


# --- storage faults ---------------------------------------------------------------------


def rows_world(seed: int = 1) -> sandbox.World:
    world = sandbox.World(seed=seed)
    constant_links(world)
    world.add_database(DB, latency=0.0005, jitter=0.0)
    world.add_service("rows", rows_app)
    return world


def timed_puts(world: sandbox.World, *, until: float, path: str = "rows") -> list[tuple[float, float, dict]]:
    """A client writing a row (PUT /path/i) every 20 ms until ``until``; fills with ``(time, elapsed, body)``."""
    out: list = []

    async def writer(client: sandbox.Client) -> None:
        i = 0
        while client.now < until:
            started = client.now
            r = await client.http.put(f"http://rows/{path}/{i}", timeout=1.0)
            out.append((started, r.elapsed, r.json()))
            i += 1
            await client.sleep(0.02)

    world.add_client("writer", writer)
    return out


def test_slow_storage_adds_its_latency_to_every_operation():
    """SlowStorage(latency=0.2) makes a one-write request 0.2 s slower during its window, and only then."""
    world = rows_world()
    out = timed_puts(world, until=1.0, path="patient-rows")
    world.inject(Schedule([SlowStorage(DB, latency=0.2, start=0.3, duration=0.4)]))
    world.run()
    base = 0.004 + 0.0005  # four network hops and the database's own latency
    inside = [elapsed for t, elapsed, _b in out if 0.3 <= t < 0.7 - 0.01]
    outside = [elapsed for t, elapsed, _b in out if t < 0.3 or t >= 0.7]
    assert inside == [pytest.approx(base + 0.2)] * len(inside) and len(inside) >= 2
    assert outside == [pytest.approx(base)] * len(outside)
    assert world.chaos.windows[0].fired == len(inside)


def test_storage_timeout_times_the_caller_out_although_the_write_happened():
    """StorageTimeout(p=1): every write in the window times out at the caller, yet every one of those rows is stored."""
    world = rows_world()
    out = timed_puts(world, until=0.6)
    world.inject(Schedule([StorageTimeout(DB, probability=1.0, start=0.2, duration=0.2)]))
    world.run()
    timed_out = [i for i, (_t, _e, body) in enumerate(out) if body["timed_out"]]
    assert timed_out and all(0.2 <= out[i][0] < 0.4 for i in timed_out)
    assert all(out[i][1] == pytest.approx(0.1 + 0.002, abs=0.002) for i in timed_out)
    stored = world.database(DB).rows("rows")
    assert all(stored[str(i)] == {"written": True} for i in timed_out)
    assert len(world.recorder.entries("db.stalled")) == len(timed_out) == world.chaos.windows[0].fired


def lock_race(*faults) -> tuple[dict, float]:
    """A holder locks row k from 0.1 for 0.5 s; a grabber wants it at 0.2. Returns the grabber's body and wait."""
    world = rows_world()
    world.database(DB).write("rows", "k", {"free": True})
    out: dict = {}

    async def holder(client: sandbox.Client) -> None:
        await client.http.post("http://rows/hold/k", timeout=2.0)

    async def grabber(client: sandbox.Client) -> None:
        r = await client.http.post("http://rows/grab/k", timeout=2.0)
        out["body"], out["elapsed"] = r.json(), r.elapsed

    world.add_client("holder", holder, start=0.1)
    world.add_client("grabber", grabber, start=0.2)
    world.inject(Schedule(list(faults)))
    world.run()
    return out["body"], out["elapsed"]


def test_lock_timeouts_make_a_lock_wait_fail_fast():
    """LockTimeouts(10 ms): a lock wait that would last ~0.4 s fails after 10 ms with LockTimeout instead."""
    body, elapsed = lock_race()
    assert body == {"grabbed": True} and elapsed > 0.35
    body, elapsed = lock_race(LockTimeouts(DB, lock_timeout=0.01, start=0.05, duration=1.0))
    assert body == {"error": "LockTimeout"}
    assert elapsed == pytest.approx(0.01 + 0.008, abs=0.003)  # the wait, plus two round trips


# --- broker faults ----------------------------------------------------------------------


def broker_world(seed: int = 1, messages: int = 20) -> sandbox.World:
    """A shop publishing ``messages`` messages every 20 ms from t=0.1, and one billing consumer."""
    world = sandbox.World(seed=seed)
    world.add_service("shop", shop_app)
    world.add_service("billing", billing_app)
    world.broker.create_topic(TOPIC, partitions=2)

    async def publish(client: sandbox.Client) -> None:
        for n in range(messages):
            await client.http.post(f"http://shop/send/{n}", timeout=1.0)
            await client.sleep(0.02)

    world.add_client("publisher", publish, start=0.1)
    return world


def handled(world: sandbox.World) -> Counter:
    """How often the consumer handled each (partition, offset)."""
    return Counter((e[5], e[6]) for e in world.recorder.entries("consumer.handle"))


def test_without_broker_faults_each_message_is_handled_once():
    """In a calm run every published message is handled exactly once."""
    world = broker_world()
    world.inject(Schedule())
    world.run(settle=1.0)
    counts = handled(world)
    assert len(counts) == 20 and set(counts.values()) == {1}


def test_rebalance_makes_the_group_handle_messages_again():
    """Rebalance every 0.1 s: messages handled but not committed when it strikes are handled again; none is missed."""
    world = broker_world()
    world.inject(Schedule([Rebalance(GROUP, every=0.1, start=0.15, duration=0.4)]))
    world.run(settle=1.0)
    counts = handled(world)
    assert len(counts) == 20
    assert max(counts.values()) > 1
    assert world.chaos.windows[0].fired == len(world.recorder.entries("broker.rebalance")) == 4
    assert world.broker.lag(GROUP, TOPIC) == 0


def test_redelivery_loses_commits_and_the_group_handles_messages_again():
    """Redelivery(p=0.5): lost commits make the group handle messages again; every message is handled, all committed."""
    world = broker_world()
    world.inject(Schedule([Redelivery(GROUP, probability=0.5, start=0.1, duration=0.6)]))
    world.run(settle=1.0)
    counts = handled(world)
    assert len(counts) == 20
    assert max(counts.values()) > 1
    lost = world.recorder.entries("broker.commit_lost")
    assert lost and len(lost) == world.chaos.windows[0].fired
    assert world.broker.lag(GROUP, TOPIC) == 0


@pytest.mark.parametrize("stop", ["crash", "pause"])
def test_rebalance_does_nothing_while_the_broker_is_down_or_paused(stop):
    """A Rebalance whose window falls while the broker is crashed or paused rebalances nothing and fires 0 times."""
    world = broker_world()
    world.inject(Schedule([Rebalance(GROUP, every=0.1, start=0.15, duration=0.4)]))
    world.run(until=0.12)
    getattr(world, stop)(world.broker.name)
    world.run(until=0.7)
    assert world.recorder.entries("broker.rebalance") == []
    assert world.chaos.windows[0].fired == 0


# --- the schedule: fault phase, then quiet phase ----------------------------------------


def test_run_lasts_at_least_until_the_fault_phase_ends_then_settles():
    """With clients done at once, run(settle=0.5) still runs the fault phase (to t=2) and then 0.5 s of quiet."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.05)
    schedule = Schedule([Delay("echo", start=0.5, duration=1.5)])
    assert schedule.fault_phase_end == 2.0
    world.inject(schedule)
    world.run(settle=0.5)
    assert world.now == 2.5
    assert world.chaos.healed


def test_every_fault_is_healed_when_the_fault_phase_ends():
    """At heal_at every fault still in force ends (fault.end, then fault.healed), whatever its duration."""
    world = mesh("a", "b")
    world.inject(Schedule([
        Partition("a", "b", start=0.1),
        Loss("a", start=0.2, duration=5.0),
        Delay("b", start=0.1, duration=0.2),
    ], heal_at=0.5))
    world.run(settle=0.1)
    assert [(w.index, w.start, w.end) for w in world.chaos.windows] == [
        (0, 0.1, 0.5), (2, 0.1, pytest.approx(0.3)), (1, 0.2, 0.5),
    ]
    ends = [(e[0], e[1], *e[2:3]) for e in world.recorder.log if e[1] in ("fault.end", "fault.healed")]
    assert ends == [
        (pytest.approx(0.3), "fault.end", 2), (0.5, "fault.end", 0), (0.5, "fault.end", 1), (0.5, "fault.healed"),
    ]
    assert not world.network.link("a", "b").cut
    assert all(reached(world, "a", "b")[2])


def test_node_faults_outlasting_the_fault_phase_are_undone_when_it_ends():
    """At heal_at a node killed with a long restart_after restarts, and a paused node resumes."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    world.add_service("other", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.1)
    world.inject(Schedule([
        Kill("echo", start=0.2, restart_after=10.0),
        Pause("other", start=0.2, duration=10.0),
    ], heal_at=0.5))
    world.run(until=0.4)
    assert not world.node("echo").alive and world.node("other").paused
    world.run(settle=0.1)
    assert world.node("echo").alive and not world.node("other").paused
    log = [(e[0], e[1], e[2]) for e in world.recorder.log if e[1] in ("node.restart", "node.resume")]
    assert log == [(0.5, "node.restart", "echo-0"), (0.5, "node.resume", "other-0")]
    assert [w.end for w in world.chaos.windows] == [0.5, 0.5]


def test_a_fault_without_duration_lasts_until_the_fault_phase_ends():
    """Partition without a duration cuts its link until heal_at, and not after."""
    world = mesh("a", "b")
    world.inject(Schedule([Partition("a", "b", start=WINDOW[0])], heal_at=WINDOW[1]))
    world.run()
    before, during, after = reached(world, "a", "b")
    assert all(before) and not any(during) and all(after)
    assert world.chaos.windows[0].end == WINDOW[1]


def test_fault_phase_end_without_heal_at_is_the_last_end():
    """Without heal_at, the fault phase ends when the last fault ends."""
    assert Schedule([Loss("a", start=1.0, duration=2.0), Kill("b", start=0.5, restart_after=0.1)]).fault_phase_end == 3.0
    assert Schedule([Kill("b", start=4.0), Loss("a", start=1.0, duration=2.0)]).fault_phase_end == 4.5
    assert Schedule().fault_phase_end == 0.0
    assert Schedule([Loss("a", start=1.0, duration=2.0)], heal_at=1.5).fault_phase_end == 1.5


# --- coverage ---------------------------------------------------------------------------


def test_coverage_reports_fired_and_idle_faults_and_recovery_paths():
    """coverage() lists a fault that acted as fired, one that met no traffic as never fired, and the timeouts and restarts."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    world.add_service("quiet", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.8)
    world.inject(Schedule([
        Loss("echo", probability=0.5, start=0.1, duration=0.2),
        Delay("quiet", start=0.1, duration=0.5),
        Kill("echo", start=0.5, restart_after=0.1),
    ]))
    world.run()
    cov = world.chaos.coverage()
    assert [w.index for w in cov.fired] == [0, 2]
    assert [w.index for w in cov.idle] == [1]
    assert "never fired" in next(line for line in str(cov).splitlines() if line.strip().startswith("#1"))
    assert cov.count("requests timed out") == len(world.recorder.entries("rpc.timeout")) > 0
    assert cov.count("nodes restarted") == 1


def test_coverage_counts_messages_the_broker_delivered_again():
    """After a rebalance, coverage() counts the messages the broker handed out more than once."""
    world = broker_world()
    world.inject(Schedule([Rebalance(GROUP, every=0.1, start=0.15, duration=0.4)]))
    world.run(settle=1.0)
    cov = world.chaos.coverage()
    again = sum(n - 1 for n in Counter(
        (e[2], e[4], e[5], e[6]) for e in world.recorder.entries("broker.deliver")
    ).values())
    assert cov.count("messages delivered again by the broker") == again > 0
    assert cov.count("consumer group rebalances") == 4


def test_coverage_tallies_sometimes_and_reachable():
    """coverage() shows which sometimes/reachable assertions held and lists the one that never did as unexercised."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.1)
    world.inject(Schedule())
    world.run()
    cov = world.chaos.coverage()
    tallies = {a.message: (a.kind, a.held, a.evaluated) for a in cov.assertions}
    calls = len(outcomes(world, "c"))
    assert tallies == {
        "an even number was echoed": ("sometimes", True, calls),
        "a negative number was echoed": ("sometimes", False, calls),
        "an echo was answered": ("reachable", True, calls),
    }
    assert [a.message for a in cov.unexercised] == ["a negative number was echoed"]
    assert "never true" in str(cov)


# --- bad specs --------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "shown"), [
    (lambda: Delay("echo", duration=-1.0), "duration=-1.0"),
    (lambda: Delay("echo", duration=0), "duration=0"),
    (lambda: Loss("echo", start=-0.5), "start=-0.5"),
    (lambda: Loss("echo", probability=1.5), "probability=1.5"),
    (lambda: Duplicate("echo", probability=-0.1), "probability=-0.1"),
    (lambda: StorageTimeout(DB, probability=2), "probability=2"),
    (lambda: Kill("echo", mode="some"), "mode='some'"),
    (lambda: Pause("echo", mode="fixed"), "mode='fixed'"),
    (lambda: Failure("echo", mode="fixed", value=0), "value=0"),
    (lambda: Failure("echo", mode="percent", value=150), "value=150"),
    (lambda: Failure("echo", mode="percent", value=0), "value=0"),
    (lambda: Failure("echo", mode="all", value=2), "value=2"),
    (lambda: Kill("echo", restart_after=0), "restart_after=0"),
    (lambda: Kill("echo", duration=1, restart_after=2), "duration=1.0 and restart_after=2.0"),
    (lambda: Partition("a", "b", direction="sideways"), "direction='sideways'"),
    (lambda: Bandwidth("echo", rate=0), "rate=0"),
    (lambda: ClockSkew("echo"), "offset="),
    (lambda: ClockSkew("echo", drift=2), "drift=2"),
    (lambda: Delay("", latency=0.1), "target=''"),
    (lambda: Delay("echo", distribution="gaussian"), "distribution='gaussian'"),
    (lambda: Schedule([Loss("echo", start=5.0)], heal_at=2.0), "heal_at=2"),
    (lambda: Schedule(["loss"]), "faults[0]='loss'"),
])
def test_a_bad_spec_raises_invalid_parameter_error_showing_the_value(make, shown):
    """A malformed fault or schedule raises InvalidParameterError, a SandboxError, showing the bad value."""
    with pytest.raises(sandbox.InvalidParameterError) as info:
        make()
    assert isinstance(info.value, sandbox.SandboxError)
    assert shown in str(info.value)


@pytest.mark.parametrize("base", [Fault, LinkFault])
def test_a_schedule_refuses_a_base_class_naming_the_faults_to_use(base):
    """Schedule([Fault(...)]) raises InvalidParameterError saying it is a base class and listing every fault class."""
    with pytest.raises(sandbox.InvalidParameterError) as info:
        Schedule([base("echo", duration=1.0)])
    message = str(info.value)
    assert f"{base.__name__} is {'the' if base is Fault else 'a'} base class" in message
    assert all(cls.__name__ in message for cls in KINDS.values())


def test_a_fault_without_duration_needs_heal_at():
    """Schedule refuses a fault without a duration when no heal_at ends it, showing the fault and both remedies."""
    with pytest.raises(sandbox.InvalidParameterError) as info:
        Schedule([Loss("echo", duration=1.0), Partition("a", "b", start=1)])
    message = str(info.value)
    assert "faults[1]=Partition('a', 'b', start=1.0)" in message
    assert "give it duration=" in message and "Schedule(..., heal_at=...)" in message


@dataclass(frozen=True, repr=False)
class Meteor(Fault):
    """A fault kind the injector knows nothing about."""

    action: ClassVar[str] = "meteor"


def test_inject_refuses_a_fault_kind_it_cannot_start():
    """A Fault subclass the injector has no action for is refused by inject(), before the run, listing the kinds."""
    world = small_world()
    with pytest.raises(sandbox.InvalidParameterError, match=r"fault 0 Meteor\('echo', duration=1.0\): Meteor is no fault"):
        world.inject(Schedule([Meteor("echo", duration=1.0)]))
    assert world.chaos is None and world.now == 0.0


def small_world() -> sandbox.World:
    world = sandbox.World(seed=1)
    world.add_database(DB)
    world.add_service("echo", echo_app)
    world.add_service("billing", billing_app)
    return world


@pytest.mark.parametrize(("fault", "shown"), [
    (Kill("nowhere"), ["fault 1 Kill('nowhere')", "'nowhere'", "'echo-0'", "'billing-0'"]),
    (Partition("echo", "nowhere"), ["Partition('echo', 'nowhere')", "'nowhere'", "'echo-0'"]),
    (Delay("echo", peer="nowhere"), ["Delay('echo', peer='nowhere')", "'nowhere'"]),
    (SlowStorage("orders-db"), ["SlowStorage('orders-db')", "'orders-db'", f"['{DB}']"]),
    (Rebalance("nobody"), ["Rebalance('nobody')", "'nobody'", f"['{GROUP}']"]),
])
def test_inject_rejects_unknown_names_before_the_run(fault, shown):
    """inject() raises InvalidParameterError naming the fault and the unknown name and listing valid ones; nothing runs."""
    world = small_world()
    with pytest.raises(sandbox.InvalidParameterError) as info:
        world.inject(Schedule([Loss("echo", start=0.1, duration=0.1), fault], heal_at=1.0))
    for text in shown:
        assert text in str(info.value)
    assert world.chaos is None and world.now == 0.0


def test_inject_rejects_a_fault_starting_in_the_past():
    """A schedule injected at t=1 with a fault starting at 0.5 raises InvalidParameterError showing both times."""
    world = small_world()
    world.run(until=1.0)
    with pytest.raises(sandbox.InvalidParameterError, match=r"t=0\.5, before now \(t=1\)"):
        world.inject(Schedule([Loss("echo", start=0.5, duration=1.0)]))


def test_inject_twice_is_refused():
    """A second inject() raises InvalidParameterError suggesting to combine the schedules."""
    world = small_world()
    world.inject(Schedule([Loss("echo", start=0.1, duration=0.1)]))
    with pytest.raises(sandbox.InvalidParameterError, match=r"schedule_a \+ schedule_b"):
        world.inject(Schedule([Delay("echo", start=0.1, duration=0.1)]))
    assert len(world.chaos.schedule) == 1


def test_inject_into_a_finished_world_is_refused():
    """Injecting into a world that ran to completion raises WorldFinishedError (a SandboxError)."""
    world = sandbox.World(seed=1)
    world.add_service("echo", echo_app)
    steady(world, "c", "http://echo/echo/{i}", until=0.05)
    world.run()
    with pytest.raises(sandbox.WorldFinishedError, match="seed=1"):
        world.inject(Schedule([Loss("echo", start=1.0, duration=1.0)]))
    assert world.chaos is None


def test_inject_refuses_what_is_not_a_schedule():
    """inject() given a bare list raises InvalidParameterError showing how to make a Schedule."""
    world = small_world()
    with pytest.raises(sandbox.InvalidParameterError, match=r"Schedule\(\[Loss"):
        world.inject([Loss("echo")])  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "shown"), [
    ({"kinds": ("meteor",)}, "kind 'meteor'"),
    ({"kinds": ()}, "kinds=()"),
    ({"kinds": ("slow",)}, "needs databases"),
    ({"count": -1}, "count=-1"),
    ({"within": 0}, "within=0"),
    ({"duration": (2.0, 1.0)}, "duration=(2.0, 1.0)"),
    ({"duration": (0.0001, 0.5)}, "duration=(0.0001, 0.5)"),
])
def test_nemesis_rejects_bad_arguments(kwargs, shown):
    """nemesis() with an unknown kind, nothing to act on, or a bad count or range raises InvalidParameterError showing it."""
    with pytest.raises(sandbox.InvalidParameterError) as info:
        nemesis(1, ["echo", "other"], **kwargs)
    assert shown in str(info.value)


# --- the nemesis ------------------------------------------------------------------------


def test_nemesis_is_a_function_of_its_seed():
    """The same seed draws the same schedule (equal repr); different seeds draw different ones."""
    names = ["orders", "payments", "inventory"]
    assert repr(nemesis(7, names)) == repr(nemesis(7, names))
    assert len({repr(nemesis(seed, names)) for seed in range(5)}) == 5


def test_nemesis_respects_kinds_count_within_and_duration():
    """nemesis draws count faults of the given kinds, starting in [0, within], lasting within the duration range."""
    names = ["orders", "payments", "inventory"]
    schedule = nemesis(3, names, kinds=("delay", "partition", "kill"), count=12, within=3.0, duration=(0.5, 1.0))
    assert len(schedule) == 12
    assert {f.action for f in schedule} <= {"delay", "partition", "kill"}
    assert len({f.action for f in schedule}) == 3
    assert all(0.0 <= f.start <= 3.0 for f in schedule)
    assert [f.start for f in schedule] == sorted(f.start for f in schedule)
    for f in schedule:
        assert 0.5 <= f.duration <= 1.0 if f.action != "kill" else 0.1 <= f.duration <= 1.0
        assert set(f.target) <= set(names)


def test_nemesis_draws_targets_from_a_world():
    """Given a world, nemesis aims node faults at its services, storage faults at its databases, broker faults at its groups."""
    world = small_world()
    schedule = nemesis(1, world, kinds=("loss", "slow", "rebalance"), count=15)
    by_kind = {f.action: set(f.target) for f in schedule}
    assert set(by_kind) == {"loss", "slow", "rebalance"}
    assert by_kind["loss"] <= {"echo", "billing"}
    assert by_kind["slow"] == {DB}
    assert by_kind["rebalance"] == {GROUP}


@pytest.mark.parametrize("seed", range(4))
def test_a_schedule_repr_evaluates_to_an_equal_schedule(seed):
    """eval(repr(schedule)) over sandbox.faults gives back an equal schedule, for drawn faults of every kind."""
    world = small_world()
    kinds = tuple(k for k in KINDS if k != "bridge")
    schedule = nemesis(seed, world, kinds=kinds, count=30) + Schedule([Kill("echo", duration=2)], heal_at=12.0)
    assert eval(repr(schedule), vars(sandbox.faults)) == schedule


NEMESIS_KINDS = tuple(k for k in KINDS if k not in ("rebalance", "redelivery", "bridge"))


def nemesis_world(seed: int) -> sandbox.World:
    """A small world whose clients call echo and other; the services run the imported module (no fresh copy)."""
    world = sandbox.World(seed=seed)
    world.add_database(DB)
    world.add_service("echo", echo_app, isolate_module=False)
    world.add_service("rows", rows_app, isolate_module=False)
    steady(world, "c1", "http://echo/echo/{i}", until=1.5, every=0.05, timeout=0.1)
    steady(world, "c2", "http://rows/rows/{i}", until=1.5, every=0.05, timeout=0.2, method="PUT")
    return world


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_any_nemesis_schedule_runs_and_replays(seed):
    """For any seed, a nemesis schedule over every node and storage fault kind runs, and replays to one fingerprint."""

    def run_once() -> tuple[str, list]:
        world = nemesis_world(seed)
        schedule = nemesis(seed, world, kinds=NEMESIS_KINDS, count=4, within=1.0, duration=(0.1, 0.6))
        world.inject(schedule)
        world.run(settle=0.5)
        assert world.chaos.healed and len(world.chaos.windows) == 4
        assert all(w.end is not None and w.end <= schedule.fault_phase_end for w in world.chaos.windows)
        return world.fingerprint(), [str(w) for w in world.chaos.windows]

    assert run_once() == run_once()


# --- determinism ------------------------------------------------------------------------


def faulty_run(seed: int) -> str:
    world = counter_world(seed=seed, replicas=2)
    steady(world, "c", "http://counter/calls/{i}", until=0.6, every=0.01, method="POST")
    world.inject(Schedule([
        Loss("counter", probability=0.3, start=0.1, duration=0.3),
        Kill("counter", start=0.2, restart_after=0.1),
        Duplicate(DB, probability=0.5, start=0.1, duration=0.4),
    ]))
    world.run(settle=0.2)
    return world.fingerprint()


def test_the_same_schedule_and_seed_give_the_same_fingerprint():
    """One schedule and one seed replay to the same fingerprint; another seed gives another."""
    assert faulty_run(4) == faulty_run(4)
    assert faulty_run(4) != faulty_run(5)
