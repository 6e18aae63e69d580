"""Tests of the simulated network: latency, jitter, loss, duplication, reordering, partitions."""

from __future__ import annotations

import math

import pytest
from fastapi import Depends, FastAPI

import sandbox

# --- app factories (module level: each replica runs a fresh copy of this module) ------


def counter_app() -> FastAPI:
    app = FastAPI()
    calls = {"n": 0}

    @app.post("/calls")
    async def count_call() -> dict:
        calls["n"] += 1
        return {"n": calls["n"]}

    @app.get("/calls")
    async def read_calls() -> dict:
        return {"n": calls["n"]}

    return app


def peer_app() -> FastAPI:
    """Answers pings, and pings another service on request."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    @app.get("/call/{other}")
    async def call_other(other: str, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        try:
            await http.get(f"http://{other}/ping", timeout=0.5)
        except sandbox.RequestTimeout:
            return {"reached": False}
        return {"reached": True}

    return app


# --- helpers ----------------------------------------------------------------------------


def get_all(world: sandbox.World, name: str, urls: list[str], *, timeout: float = 1.0, start: float = 0.0) -> list:
    """Add a client ``name`` that GETs each URL in turn; its list fills with JSON bodies or "timeout"."""
    out: list = []

    async def caller(client: sandbox.Client) -> None:
        for url in urls:
            try:
                r = await client.http.get(url, timeout=timeout)
                out.append(r.json())
            except sandbox.RequestTimeout:
                out.append("timeout")

    world.add_client(name, caller, start=start)
    return out


def delays(world: sandbox.World, src: str, dst: str) -> list[float]:
    return [e[-1] for e in world.recorder.entries("net.send") if e[2] == src and e[3] == dst]


# --- latency and jitter -----------------------------------------------------------------


def test_constant_latency_link_gives_exact_arrival_times():
    """With constant 0.25 s links, a request arrives at exactly 0.25 and its reply at exactly 0.5."""
    world = sandbox.World(seed=1)
    world.network.set_defaults(latency=0.25, distribution="constant")
    world.add_service("api", counter_app)
    times = []

    async def caller(client: sandbox.Client) -> None:
        r = await client.http.post("http://api/calls")
        times.append((client.now, r.elapsed))

    world.add_client("c", caller)
    world.run()
    assert [e[0] for e in world.recorder.entries("http.request")] == [0.25]
    assert times == [(0.5, 0.5)]


def test_zero_jitter_is_constant_whatever_the_distribution():
    """A link with jitter 0 delays every message by exactly its latency."""
    world = sandbox.World(seed=1)
    world.network.set_defaults(latency=0.125, jitter=0.0, distribution="normal")
    world.add_service("api", counter_app)
    get_all(world, "c", ["http://api/calls"] * 5)
    world.run()
    assert delays(world, "c", "api-0") == [0.125] * 5


def test_uniform_jitter_spreads_delays_within_its_bounds():
    """Uniform jitter j around latency L gives delays in [L - j, L + j], not all the same."""
    world = sandbox.World(seed=2)
    world.network.set_defaults(latency=0.5, jitter=0.1, distribution="uniform")
    world.add_service("api", counter_app)
    get_all(world, "c", ["http://api/calls"] * 20, timeout=5.0)
    world.run()
    sent = delays(world, "c", "api-0")
    assert len(sent) == 20
    assert all(0.4 <= d <= 0.6 for d in sent)
    assert len(set(sent)) == 20


def test_jittered_delay_is_never_negative():
    """A normal jitter much larger than the latency is clipped at zero delay."""
    world = sandbox.World(seed=3)
    world.network.set_defaults(latency=0.0001, jitter=0.05, distribution="normal")
    world.add_service("api", counter_app)
    get_all(world, "c", ["http://api/calls"] * 20)
    world.run()
    sent = delays(world, "c", "api-0") + delays(world, "api-0", "c")
    assert len(sent) == 40
    assert min(sent) == 0.0
    assert max(sent) > 0.0001


def test_set_defaults_changes_existing_links_too():
    """network.set_defaults changes links that already exist as well as new ones."""
    world = sandbox.World(seed=1)
    world.add_service("api", counter_app)
    world.add_service("other", counter_app)
    existing = world.network.link("api", "other")
    world.network.set_defaults(latency=0.3)
    assert existing.latency == 0.3
    assert world.network.link("other", "api").latency == 0.3


def test_link_settings_are_per_direction():
    """Changing the link src->dst leaves dst->src as it was."""
    world = sandbox.World(seed=1)
    world.add_service("api", counter_app)
    world.add_service("other", counter_app)
    world.network.link("api", "other").latency = 0.7
    assert world.network.link("api", "other").latency == 0.7
    assert world.network.link("other", "api").latency == world.network.defaults.latency


# --- loss, duplication, reordering ------------------------------------------------------


def test_loss_one_drops_every_message_and_the_caller_times_out():
    """With loss=1.0 no request arrives: the endpoint never runs and the caller times out."""
    world = sandbox.World(seed=1)
    world.network.set_defaults(loss=1.0)
    world.add_service("api", counter_app)
    out = get_all(world, "c", ["http://api/calls"] * 3)
    world.run()
    assert out == ["timeout"] * 3
    assert world.recorder.entries("http.request") == []
    assert [e[-1] for e in world.recorder.entries("net.drop")] == ["loss"] * 3


def test_duplicate_one_delivers_a_request_twice():
    """With duplicate=1.0 one POST reaches the endpoint twice, so a call counter reads 2."""
    world = sandbox.World(seed=1)
    world.network.set_defaults(duplicate=1.0)
    world.add_service("api", counter_app)

    async def poster(client: sandbox.Client) -> None:
        await client.http.post("http://api/calls")

    world.add_client("poster", poster)
    world.run(until=1.0)
    world.network.set_defaults(duplicate=0.0)
    out = get_all(world, "reader", ["http://api/calls"])
    world.run()
    assert out == [{"n": 2}]
    assert [e[5] for e in world.recorder.entries("http.request")] == ["POST", "POST", "GET"]


def test_reorder_holds_a_message_back_by_reorder_delay():
    """With reorder=1.0 every message arrives reorder_delay seconds after its latency."""
    world = sandbox.World(seed=1)
    world.network.set_defaults(latency=0.25, distribution="constant", reorder=1.0, reorder_delay=0.125)
    world.add_service("api", counter_app)
    get_all(world, "c", ["http://api/calls"])
    world.run()
    assert [e[0] for e in world.recorder.entries("http.request")] == [0.375]


# --- partitions -------------------------------------------------------------------------


def peers(seed: int = 1) -> sandbox.World:
    world = sandbox.World(seed=seed)
    world.add_service("a", peer_app)
    world.add_service("b", peer_app)
    return world


def test_partition_cuts_both_directions():
    """A partition between a and b stops calls from a to b and from b to a."""
    world = peers()
    world.network.partition(["a"], ["b"])
    out = get_all(world, "c", ["http://a/call/b", "http://b/call/a"], timeout=2.0)
    world.run()
    assert out == [{"reached": False}, {"reached": False}]
    assert world.network.link("a", "b").cut and world.network.link("b", "a").cut


def test_partition_leaves_other_links_alone():
    """A partition between a and b does not stop a workload client from reaching either."""
    world = peers()
    world.network.partition(["a"], ["b"])
    out = get_all(world, "c", ["http://a/ping", "http://b/ping"])
    world.run()
    assert out == [{"pong": True}, {"pong": True}]


def test_heal_ends_a_partition():
    """After heal() calls across a former partition succeed again."""
    world = peers()
    world.network.partition(["a"], ["b"])
    before = get_all(world, "before", ["http://a/call/b", "http://b/call/a"], timeout=2.0)
    world.run(until=3.0)
    world.network.heal()
    after = get_all(world, "after", ["http://a/call/b", "http://b/call/a"], timeout=2.0)
    world.run()
    assert before == [{"reached": False}, {"reached": False}]
    assert after == [{"reached": True}, {"reached": True}]
    assert world.network.partitions == []


def test_heal_keeps_other_link_settings():
    """heal() uncuts links but leaves their latency as set."""
    world = peers()
    world.network.link("a", "b").latency = 0.4
    world.network.partition(["a"], ["b"])
    world.network.heal()
    state = world.network.link("a", "b")
    assert (state.cut, state.latency) == (False, 0.4)


def test_one_way_partition_cuts_only_one_direction():
    """A one-way partition a->b drops a's messages to b but still delivers b's messages to a."""
    world = peers()
    world.network.partition(["a"], ["b"], one_way=True)
    out = get_all(world, "c", ["http://a/call/b", "http://b/call/a"], timeout=2.0)
    world.run()
    # b's request reaches a, but a's reply to b is cut: b times out all the same.
    assert out == [{"reached": False}, {"reached": False}]
    served = [(e[2], e[3], e[6]) for e in world.recorder.entries("http.request")]
    assert ("a-0", "b-0", "/ping") in served
    assert ("b-0", "a-0", "/ping") not in served
    assert world.network.link("a", "b").cut is True
    assert world.network.link("b", "a").cut is False


def test_partitions_lists_the_partitions_in_force():
    """network.partitions shows each partition's sides (as node names) and direction."""
    world = peers()
    world.network.partition(["a"], ["b"], one_way=True)
    assert world.network.partitions == [(("a-0",), ("b-0",), True)]


def test_partition_sides_must_not_overlap():
    """A partition whose two sides share a node raises InvalidParameterError naming it."""
    world = peers()
    with pytest.raises(sandbox.InvalidParameterError, match="'a-0'"):
        world.network.partition(["a"], ["a", "b"])


def test_message_in_flight_is_dropped_when_a_partition_starts():
    """A request already on the wire when its link is cut never arrives."""
    world = sandbox.World(seed=1)
    world.network.set_defaults(latency=0.25, distribution="constant")
    world.add_service("api", counter_app)
    out = get_all(world, "c", ["http://api/calls"])
    world.run(until=0.1)
    world.network.partition(["c"], ["api"])
    world.run()
    assert out == ["timeout"]
    assert [(e[0], e[-1]) for e in world.recorder.entries("net.drop")] == [(0.25, "partition")]


def test_isolate_cuts_a_node_off_from_every_other():
    """isolate(api) stops traffic between api and every other node, until heal()."""
    world = sandbox.World(seed=1)
    world.add_service("api", counter_app)
    world.add_service("other", counter_app)
    during = get_all(world, "during", ["http://api/calls", "http://other/calls"], start=0.1)
    world.network.isolate("api")
    world.run(until=3.0)
    world.network.heal()
    after = get_all(world, "after", ["http://api/calls"])
    world.run()
    assert during == ["timeout", {"n": 0}]
    assert after == [{"n": 0}]


def test_isolate_cuts_every_link_of_the_node_both_ways():
    """After isolate(api) every link from and to api is cut, and no other link is."""
    world = sandbox.World(seed=1)
    world.add_service("api", counter_app)
    world.add_service("other", counter_app)
    world.add_database("db")
    world.network.isolate("api")
    link = world.network.link
    assert [link("api", n).cut for n in ("other", "db")] == [True, True]
    assert [link(n, "api").cut for n in ("other", "db")] == [True, True]
    assert [link("other", "db").cut, link("db", "other").cut] == [False, False]


def test_isolate_also_cuts_off_nodes_added_later():
    """A node added after isolate(api) cannot reach api either: api is cut off from every other node."""
    world = sandbox.World(seed=1)
    world.add_service("api", counter_app)
    world.network.isolate("api")
    out = get_all(world, "late-client", ["http://api/calls"])
    world.run()
    assert out == ["timeout"]


# --- independent random streams ---------------------------------------------------------


def latencies_on_one_link(with_neighbours: bool) -> list[float]:
    world = sandbox.World(seed=9)
    world.network.set_defaults(latency=0.01, jitter=0.004, distribution="normal", loss=0.1)
    if with_neighbours:
        world.add_service("other", counter_app)
        get_all(world, "d", ["http://other/calls"] * 15, timeout=0.5)
    world.add_service("api", counter_app)
    get_all(world, "c", ["http://api/calls"] * 15, timeout=0.5)
    world.run()
    return delays(world, "c", "api-0") + delays(world, "api-0", "c")


def test_new_service_and_traffic_do_not_shift_draws_on_an_existing_link():
    """Each link draws from its own stream: adding an unrelated service and its traffic leaves c->api's delays as they were."""
    alone = latencies_on_one_link(with_neighbours=False)
    crowded = latencies_on_one_link(with_neighbours=True)
    assert len(alone) >= 20
    assert alone == crowded


# --- bad settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latency", -0.001),
        ("latency", math.inf),
        ("jitter", "fast"),
        ("loss", 1.5),
        ("loss", -0.1),
        ("duplicate", True),
        ("reorder", None),
        ("reorder_delay", math.nan),
        ("distribution", "gaussian"),
    ],
)
def test_bad_link_setting_raises_showing_the_value(field, value):
    """Setting a link field to a value out of its range raises InvalidParameterError showing that value."""
    world = peers()
    link = world.network.link("a", "b")
    with pytest.raises(sandbox.InvalidParameterError) as info:
        setattr(link, field, value)
    assert repr(value) in str(info.value)


def test_bad_default_setting_raises_showing_the_value():
    """set_defaults with a bad value raises InvalidParameterError showing it."""
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidParameterError, match="loss=2"):
        world.network.set_defaults(loss=2)


def test_unknown_link_field_raises_naming_the_known_ones():
    """set_defaults with a field links do not have raises InvalidParameterError listing the real fields."""
    world = sandbox.World(seed=1)
    with pytest.raises(sandbox.InvalidParameterError) as info:
        world.network.set_defaults(latncy=0.1)
    assert "latncy=0.1" in str(info.value)
    assert "latency" in str(info.value).split(":", 1)[1]


def test_link_to_an_unknown_node_raises():
    """network.link with a name that is no node raises UnknownNameError showing it."""
    world = peers()
    with pytest.raises(sandbox.UnknownNameError, match="'nowhere'"):
        world.network.link("a", "nowhere")


def test_set_links_changes_every_replica_link_between_two_services():
    """set_links expands service names to their replicas and can set both directions at once."""
    world = sandbox.World(seed=2)
    world.add_service("a", counter_app, replicas=2)
    world.add_service("b", counter_app, replicas=3)
    world.network.set_links("a", "b", both_ways=True, latency=0.05, loss=0.5)
    for x in ("a-0", "a-1"):
        for y in ("b-0", "b-1", "b-2"):
            assert world.network.link(x, y).latency == 0.05 and world.network.link(y, x).loss == 0.5
    assert world.network.link("b-0", "b-1").latency == world.network.defaults.latency


def test_set_links_rejects_unknown_fields_showing_them():
    """An unknown link field raises InvalidParameterError naming it."""
    world = sandbox.World(seed=2)
    world.add_service("a", counter_app)
    with pytest.raises(sandbox.InvalidParameterError, match="lateness=0.1"):
        world.network.set_links("a", "a", lateness=0.1)
