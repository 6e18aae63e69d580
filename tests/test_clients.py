"""Workload clients: operations recorded Jepsen-style in virtual time, and seeded randomness per client."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, HTTPException

import sandbox


def shop_app() -> FastAPI:
    app = FastAPI()

    @app.post("/orders", status_code=201)
    async def place(order: dict):
        if order["qty"] > 5:
            raise HTTPException(409, "out of stock")
        return {"id": f"o-{order['qty']}"}

    @app.post("/slow")
    async def slow():
        await sandbox.sleep(10)
        return {}

    return app


def new_world(seed: int = 7) -> sandbox.World:
    """A world with the shop behind 10 ms links, so operation times are exact."""
    world = sandbox.World(seed)
    world.network.set_defaults(latency=0.01, jitter=0, distribution="constant")
    world.add_service("shop", shop_app)
    return world


def summary(world: sandbox.World) -> list[tuple]:
    return [(op.time, op.process, op.type, op.f, op.value, op.error) for op in world.history]


# --- recording operations --------------------------------------------------------------


def test_an_operation_is_recorded_as_invoke_then_ok_at_virtual_times():
    """client.operation records an invoke when it starts and an ok with the observed value when it ends."""
    world = new_world()

    async def shopper(client: sandbox.Client) -> None:
        await client.sleep(0.5)
        async with client.operation("place", {"qty": 1}) as op:
            r = await client.http.post("http://shop/orders", json={"qty": 1})
            op.ok(r.json())

    world.add_client("shopper", shopper)
    world.run()
    assert summary(world) == [
        (0.5, "shopper", "invoke", "place", {"qty": 1}, None),
        (pytest.approx(0.52), "shopper", "ok", "place", {"id": "o-1"}, None),
    ]


def test_an_operation_left_without_a_verdict_is_ok_with_the_invoked_value():
    """A block that ends normally without calling ok/fail/info records ok with the value it was invoked with."""
    world = new_world()

    async def shopper(client: sandbox.Client) -> None:
        async with client.operation("place", {"qty": 2}):
            await client.http.post("http://shop/orders", json={"qty": 2})

    world.add_client("shopper", shopper)
    world.run()
    assert [(op.type, op.value) for op in world.history] == [("invoke", {"qty": 2}), ("ok", {"qty": 2})]


def test_fail_and_info_are_recorded_with_their_value_and_error():
    """op.fail and op.info record those completion types, with the given value and error text."""
    world = new_world()

    async def shopper(client: sandbox.Client) -> None:
        async with client.operation("place", {"qty": 9}) as op:
            r = await client.http.post("http://shop/orders", json={"qty": 9})
            op.fail(r.json(), error=f"HTTP {r.status_code}")
        async with client.operation("read") as op:
            op.info("maybe", error="lost reply")

    world.add_client("shopper", shopper)
    world.run()
    assert [(op.type, op.f, op.value, op.error) for op in world.history] == [
        ("invoke", "place", {"qty": 9}, None),
        ("fail", "place", {"detail": "out of stock"}, "HTTP 409"),
        ("invoke", "read", None, None),
        ("info", "read", "maybe", "lost reply"),
    ]


def test_an_http_answer_completes_an_operation_as_jepsen_reads_it():
    """op.answered: a 2xx is ok with its JSON body, a 4xx a fail (refused), a 5xx info (unknown)."""

    def flaky_app() -> FastAPI:
        app = FastAPI()

        @app.post("/boom")
        async def boom():
            raise HTTPException(503, "busy")

        return app

    world = new_world()
    world.add_service("flaky", flaky_app)

    async def shopper(client: sandbox.Client) -> None:
        for url, qty in (("http://shop/orders", 1), ("http://shop/orders", 9), ("http://flaky/boom", 1)):
            async with client.operation("place", {"qty": qty}) as op:
                op.answered(await client.http.post(url, json={"qty": qty}))

    world.add_client("shopper", shopper)
    world.run()
    assert [(op.type, op.value) for op in world.history if op.type != "invoke"] == [
        ("ok", {"id": "o-1"}),
        ("fail", {"status": 409, "detail": '{"detail":"out of stock"}'}),
        ("info", {"status": 503, "detail": '{"detail":"busy"}'}),
    ]

def test_a_timeout_inside_an_operation_is_info_and_does_not_propagate():
    """A RequestTimeout inside client.operation is recorded as info with the error, and the workload goes on."""
    world = new_world()

    async def shopper(client: sandbox.Client) -> None:
        async with client.operation("slow", 1):
            await client.http.post("http://shop/slow", timeout=1.0)
        async with client.operation("place", {"qty": 1}):
            await client.http.post("http://shop/orders", json={"qty": 1})

    world.add_client("shopper", shopper)
    world.run()
    ops = list(world.history)
    assert [(op.type, op.f) for op in ops] == [("invoke", "slow"), ("info", "slow"), ("invoke", "place"), ("ok", "place")]
    assert ops[1].time == pytest.approx(1.0)
    assert ops[1].value is None
    assert ops[1].error.startswith("RequestTimeout: POST http://shop/slow: no response within 1s")
    assert world.errors == []


def test_another_exception_inside_an_operation_is_info_and_reraised():
    """Any other exception is recorded as info, then ends the workload and lands in world.errors."""
    world = new_world()
    reached: list[str] = []

    async def shopper(client: sandbox.Client) -> None:
        async with client.operation("place", {"qty": 1}):
            r = await client.http.post("http://shop/orders", json={"qty": 1})
            raise ValueError(f"unexpected body {r.json()!r}")
        reached.append("after")

    world.add_client("shopper", shopper)
    world.run()
    assert [(op.type, op.error) for op in world.history] == [
        ("invoke", None), ("info", "ValueError: unexpected body {'id': 'o-1'}"),
    ]
    assert reached == []
    (error,) = world.errors
    assert (error.node, error.where, error.type) == ("shopper", "workload", "ValueError")


def test_a_crashed_clients_operation_stays_open():
    """When the client node crashes mid-operation, the invoke has no completion, as in Jepsen."""
    world = new_world()

    async def shopper(client: sandbox.Client) -> None:
        async with client.operation("slow"):
            await client.http.post("http://shop/slow", timeout=30)

    world.add_client("shopper", shopper)
    world.run(until=1)
    world.crash("shopper")
    world.run()
    assert [op.type for op in world.history] == ["invoke"]
    (pair,) = world.history.pairs()
    assert pair[1] is None
    assert world.errors == []


def test_the_history_keeps_processes_apart():
    """Operations of concurrent clients interleave in the history, each paired with its own completion."""
    world = new_world()

    async def shopper(client: sandbox.Client, qty: int) -> None:
        async with client.operation("place", {"qty": qty}) as op:
            op.ok((await client.http.post("http://shop/orders", json={"qty": qty})).json())

    world.add_client("alice", shopper, 1)
    world.add_client("bob", shopper, 2, start=0.005)
    world.run()
    assert [(op.process, op.type) for op in world.history] == [
        ("alice", "invoke"), ("bob", "invoke"), ("alice", "ok"), ("bob", "ok"),
    ]
    assert [(i.process, c.value) for i, c in world.history.pairs()] == [("alice", {"id": "o-1"}), ("bob", {"id": "o-2"})]


def test_the_history_keeps_values_as_they_were_when_recorded():
    """Changing a dict after using it in an operation does not change the operations already in the history."""
    world = new_world()

    async def shopper(client: sandbox.Client) -> None:
        order = {"qty": 1}
        for qty in (1, 2):
            order["qty"] = qty
            async with client.operation("place", order):
                await client.http.post("http://shop/orders", json=order)

    world.add_client("shopper", shopper)
    world.run()
    assert [op.value["qty"] for op in world.history if op.type == "invoke"] == [1, 2]


# --- clients ---------------------------------------------------------------------------


def test_client_now_and_sleep_are_virtual():
    """client.now is virtual time and client.sleep advances it without real waiting."""
    world = new_world()
    seen: list[float] = []

    async def sleeper(client: sandbox.Client) -> None:
        seen.append(client.now)
        await client.sleep(100)
        seen.append(client.now)

    world.add_client("sleeper", sleeper, start=2.0)
    world.run()
    assert seen == [2.0, 102.0]


def _draws(seed: int, *, others: tuple[str, ...] = ()) -> list[float]:
    """Five draws of client 'alice' in a world of ``seed``, after clients ``others`` (who draw too) were added."""
    world = sandbox.World(seed)
    draws: dict[str, list[float]] = {}

    async def draw(client: sandbox.Client) -> None:
        draws[client.name] = [client.random.random() for _ in range(5)]

    for name in others:
        world.add_client(name, draw)
    world.add_client("alice", draw)
    world.run()
    return draws["alice"]


def test_client_random_is_seeded():
    """The same seed gives a client the same random draws; another seed gives others."""
    assert _draws(9) == _draws(9)
    assert _draws(9) != _draws(10)


def test_client_random_does_not_shift_when_clients_are_added():
    """A client's draws depend on its name only: adding other clients that draw too does not change them."""
    assert _draws(9, others=("bob", "carol")) == _draws(9)


def test_each_client_has_its_own_random_stream():
    """Two clients in one world draw different numbers."""
    world = sandbox.World(9)
    draws: dict[str, float] = {}

    async def draw(client: sandbox.Client) -> None:
        draws[client.name] = client.random.random()

    world.add_client("alice", draw)
    world.add_client("bob", draw)
    world.run()
    assert draws["alice"] != draws["bob"]


# --- regressions found in review -------------------------------------------------------


def test_a_restarted_client_records_its_operations_as_a_new_process():
    """A client crashed mid-operation and restarted records as process 'name#1'; the old invoke stays open."""
    world = new_world()

    async def shopper(client: sandbox.Client) -> None:
        for qty in (1, 2):
            async with client.operation("place", {"qty": qty}) as op:
                await client.sleep(1.0)
                op.ok((await client.http.post("http://shop/orders", json={"qty": qty})).json())

    world.add_client("shopper", shopper)
    world.run(until=0.5)
    world.crash("shopper")
    world.restart("shopper")
    world.run()
    assert [(op.process, op.type, op.value) for op in world.history] == [
        ("shopper", "invoke", {"qty": 1}),
        ("shopper#1", "invoke", {"qty": 1}),
        ("shopper#1", "ok", {"id": "o-1"}),
        ("shopper#1", "invoke", {"qty": 2}),
        ("shopper#1", "ok", {"id": "o-2"}),
    ]
    assert [c is None for _, c in world.history.pairs()] == [True, False, False]
    assert world.errors == []
