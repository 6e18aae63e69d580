"""Tests of per-node clocks: offset and drift over true virtual time."""

from __future__ import annotations

import datetime as dt
import math
import time
import warnings

import pytest
from fastapi import Depends, FastAPI

import sandbox

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient warns that it prefers httpx2
    from fastapi.testclient import TestClient

#: A perfect clock reads 2026-01-01T00:00:00Z at virtual time 0.
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def clock_app() -> FastAPI:
    """Reports what its machine's clock reads."""
    app = FastAPI()

    @app.get("/time")
    async def read_time(clock: sandbox.Clock = Depends(sandbox.clock)) -> dict:
        return {"time": clock.time(), "monotonic": clock.monotonic()}

    return app


def world_with_service(replicas: int = 1) -> sandbox.World:
    world = sandbox.World(seed=1)
    world.add_service("api", clock_app, replicas=replicas)
    return world


def test_perfect_clock_reads_epoch_plus_virtual_time():
    """A clock with no offset or drift reads 2026-01-01 plus the virtual seconds elapsed."""
    world = world_with_service()
    world.run(until=2.5)
    clock = world.node("api").clock
    assert clock.time() == EPOCH + 2.5
    assert clock.now() == dt.datetime(2026, 1, 1, 0, 0, 2, 500000, tzinfo=dt.timezone.utc)


def test_offset_shifts_clock_time_but_not_world_now():
    """An offset of +2.5 s makes the node's clock read 2.5 s ahead while world.now is unchanged."""
    world = world_with_service()
    world.run(until=1.0)
    clock = world.node("api").clock
    clock.offset = 2.5
    assert clock.time() == EPOCH + 1.0 + 2.5
    assert world.now == 1.0


def test_negative_offset_puts_the_clock_behind():
    """A negative offset makes the clock read behind true time."""
    world = world_with_service()
    clock = world.node("api").clock
    clock.offset = -30
    world.run(until=10.0)
    assert clock.time() == EPOCH - 20.0


def test_drift_accumulates_from_the_moment_it_is_set():
    """A drift set at t=10 adds drift * (t - 10) seconds, nothing for the time before."""
    world = world_with_service()
    clock = world.node("api").clock
    world.run(until=10.0)
    clock.drift = 0.1
    assert clock.time() == pytest.approx(EPOCH + 10.0, abs=1e-6)
    world.run(until=20.0)
    assert clock.time() == pytest.approx(EPOCH + 21.0, abs=1e-6)
    assert world.now == 20.0


def test_changing_drift_keeps_what_was_gained_so_far():
    """A second drift change starts from the time the clock reads then, so gains add up piecewise."""
    world = world_with_service()
    clock = world.node("api").clock
    world.run(until=10.0)
    clock.drift = 0.1  # 10 s at +10%: gains 1 s
    world.run(until=20.0)
    clock.drift = -0.5  # 10 s at -50%: loses 5 s
    world.run(until=30.0)
    assert clock.monotonic() == pytest.approx(10.0 + 11.0 + 5.0, abs=1e-6)


def test_monotonic_does_not_jump_with_offset():
    """Changing the offset moves time() but not monotonic()."""
    world = world_with_service()
    world.run(until=3.0)
    clock = world.node("api").clock
    before = (clock.time(), clock.monotonic())
    clock.offset = 60.0
    assert (clock.time() - before[0], clock.monotonic()) == (60.0, before[1])


def test_each_node_has_its_own_clock():
    """Setting one replica's offset and drift leaves the other replica's clock perfect."""
    world = world_with_service(replicas=2)
    world.node("api-0").clock.offset = 5.0
    world.node("api-0").clock.drift = 0.01
    world.run(until=4.0)
    assert world.node("api-1").clock.time() == EPOCH + 4.0
    assert world.node("api-0").clock.time() == pytest.approx(EPOCH + 4.0 * 1.01 + 5.0, abs=1e-6)


def test_service_clock_dependency_reads_its_own_nodes_clock():
    """Depends(sandbox.clock) in an endpoint reads the clock of the replica serving the request."""
    world = world_with_service(replicas=2)
    world.node("api-1").clock.offset = 100.0
    answers = {}

    async def caller(client: sandbox.Client) -> None:
        for node in ("api-0", "api-1"):
            answers[node] = (await client.http.get(f"http://{node}/time")).json()

    world.add_client("c", caller)
    world.run()
    arrived = {e[2]: e[0] for e in world.recorder.entries("http.request")}
    for node, offset in (("api-0", 0.0), ("api-1", 100.0)):
        assert answers[node]["monotonic"] == pytest.approx(arrived[node], abs=1e-9)
        assert answers[node]["time"] == pytest.approx(EPOCH + arrived[node] + offset, abs=1e-6)


def test_workload_client_has_a_settable_clock_too():
    """A workload client's machine has its own clock, with an offset that does not touch virtual time."""
    world = sandbox.World(seed=1)
    seen = []

    async def reader(client: sandbox.Client) -> None:
        client.clock.offset = -3.0
        await client.sleep(1.0)
        seen.append((client.now, client.clock.time()))

    world.add_client("c", reader)
    world.run()
    assert seen == [(1.0, EPOCH + 1.0 - 3.0)]


def test_time_ns_and_now_agree_with_time():
    """time_ns() and now() describe the same instant as time()."""
    world = world_with_service()
    clock = world.node("api").clock
    clock.offset = 0.75
    world.run(until=1.5)
    assert clock.time_ns() == round((EPOCH + 2.25) * 1e9)
    assert clock.now().timestamp() == clock.time()
    assert clock.now().tzinfo == dt.timezone.utc


def test_clock_dependency_outside_a_world_reads_the_wall_clock():
    """Under TestClient, Depends(sandbox.clock) reads the machine's real clock."""
    with TestClient(clock_app()) as tc:
        body = tc.get("/time").json()
    assert abs(body["time"] - time.time()) < 60


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1", None, True])
def test_bad_offset_raises_showing_the_value(value):
    """An offset that is not a finite number raises InvalidParameterError showing it."""
    clock = world_with_service().node("api").clock
    with pytest.raises(sandbox.InvalidParameterError) as info:
        clock.offset = value
    assert repr(value) in str(info.value)
    assert clock.offset == 0.0


@pytest.mark.parametrize("value", [1, -1, 2.5, math.nan, "0.1", None, True])
def test_bad_drift_raises_showing_the_value(value):
    """A drift that is not a number strictly between -1 and 1 raises InvalidParameterError showing it."""
    clock = world_with_service().node("api").clock
    with pytest.raises(sandbox.InvalidParameterError) as info:
        clock.drift = value
    assert repr(value) in str(info.value)
    assert clock.drift == 0.0
