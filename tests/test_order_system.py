"""The naive order system: correct on the happy path, broken under concurrency and faults."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

import sandbox
from sandbox.examples import order_system
from sandbox.examples.order_system import Report

SEEDS = range(21)
#: Verified: seed 6 double-charges an order (and has no negative stock).
DOUBLE_CHARGE_SEED = 6
#: Verified: seed 7 oversells a warehouse into negative stock (and charges nobody twice).
NEGATIVE_STOCK_SEED = 7


@pytest.fixture
def ran() -> Iterator[Callable[..., sandbox.World]]:
    """Build and run order-system worlds (``ran(seed, **options)``)."""
    worlds: list[sandbox.World] = []

    def build_and_run(seed: int, **options: object) -> sandbox.World:
        world = order_system.run_to_completion(order_system.build_world(seed, **options))
        worlds.append(world)
        return world

    yield build_and_run


@pytest.fixture(scope="module")
def reports() -> dict[int, Report]:
    """One default run of the order system for every seed in SEEDS."""
    return {seed: order_system.run(seed) for seed in SEEDS}


def test_seed_double_charges_an_order(reports: dict[int, Report]) -> None:
    """A timed-out payment call, retried, charges one order twice (the known seed)."""
    report = reports[DOUBLE_CHARGE_SEED]
    assert report.double_charged, report
    order_id, times = next(iter(report.double_charged.items()))
    amounts = report.charges[order_id]
    assert times == len(amounts) >= 2
    assert len(set(amounts)) == 1  # the same order, charged again for the same amount
    assert order_id in report.orders.ids
    assert any(f.startswith(f"double charge: order {order_id} was charged {times} times") for f in report.facts)


def test_seed_oversells_into_negative_stock(reports: dict[int, Report]) -> None:
    """Concurrent reservations of the last units drive a warehouse below zero (the known seed)."""
    report = reports[NEGATIVE_STOCK_SEED]
    assert report.negative_stock, report
    sku, warehouse, level = report.negative_stock[0]
    assert level < 0
    assert report.stock[sku][warehouse] == level
    assert f"negative stock: warehouse {warehouse} has {level} x {sku}; it sold {-level} more than it had" in report.facts


def test_several_seeds_show_each_violation(reports: dict[int, Report]) -> None:
    """Across seeds 0..20 several runs double-charge and several oversell, but not every run does both."""
    double = [seed for seed, r in reports.items() if r.double_charged]
    negative = [seed for seed, r in reports.items() if r.negative_stock]
    assert len(double) >= 3, double
    assert len(negative) >= 3, negative
    assert DOUBLE_CHARGE_SEED in double and NEGATIVE_STOCK_SEED in negative
    assert set(double) & set(negative) != set(SEEDS)


def test_facts_match_the_state(reports: dict[int, Report]) -> None:
    """Every run states one fact per double-charged order and per negative warehouse, and no others of those kinds."""
    for seed, report in reports.items():
        doubles = [f for f in report.facts if f.startswith("double charge:")]
        negatives = [f for f in report.facts if f.startswith("negative stock:")]
        assert len(doubles) == len(report.double_charged), seed
        assert len(negatives) == len(report.negative_stock), seed


def test_same_seed_same_run(ran: Callable[..., sandbox.World]) -> None:
    """The same seed gives an equal report and the same world fingerprint; another seed does not."""
    first, again = order_system.run(3), order_system.run(3)
    assert first == again
    assert first.fingerprint == again.fingerprint
    assert ran(3).fingerprint() == ran(3).fingerprint() == first.fingerprint
    assert order_system.run(4).fingerprint != first.fingerprint


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_happy_path_has_no_violation(seed: int) -> None:
    """With one customer and a perfect network, nothing goes wrong: every order is charged once and emailed."""
    report = order_system.run(seed, clients=1, faults=False)
    assert report.facts == ()
    assert report.double_charged == {} and report.negative_stock == ()
    assert report.orders.unknown == 0 and report.orders.ok >= 3
    assert len(report.orders.ids) == report.orders.ok == report.emails
    assert sorted(report.charges) == sorted(report.orders.ids)
    assert "Nothing went wrong" in str(report)


def test_happy_path_conserves_stock(ran: Callable[..., sandbox.World]) -> None:
    """Without faults and with one customer, the units gone from the warehouses are the units ordered."""
    world = ran(5, clients=1, faults=False)
    ordered = sum(order["qty"] for order in world.database("orders-db").rows("orders").values())
    opening = sum(sum(levels.values()) for levels in order_system.INITIAL_STOCK.values())
    left = sum(row["qty"] for row in world.database("inventory-db").rows("stock").values())
    assert ordered > 0
    assert opening - left == ordered


def test_shelves_are_stocked_before_the_shop_opens(ran: Callable[..., sandbox.World]) -> None:
    """The clerk's stock levels are all recorded before the first customer arrives."""
    world = ran(0)
    done = [op for op in world.history if op.f == "set-stock" and op.type != "invoke"]
    assert len(done) == sum(len(levels) for levels in order_system.INITIAL_STOCK.values())
    assert all(op.type == "ok" and op.time < order_system.SHOP_OPENS for op in done)


def test_report_text_has_seed_facts_and_replay(reports: dict[int, Report]) -> None:
    """The terminal report prints the seed, every fact, and the command that replays it."""
    report = reports[NEGATIVE_STOCK_SEED]
    text = str(report)
    assert f"seed {NEGATIVE_STOCK_SEED}" in text
    assert f"dojo run order-system --seed {NEGATIVE_STOCK_SEED}" in text
    assert report.facts and all(fact in text for fact in report.facts)


def test_replay_line_keeps_non_default_options() -> None:
    """A run with fewer clients and no faults replays with the same options."""
    report = order_system.run(2, clients=1, faults=False)
    assert report.replay == "dojo run order-system --seed 2 --clients 1 --no-faults"
    assert report.replay in str(report)


def test_replay_without_a_command_line_form_is_a_python_call() -> None:
    """Options the command line lacks make the replay line a Python call instead."""
    report = order_system.run(2, clients=1, orders_per_client=2, faults=False)
    assert report.replay == "order_system.run(seed=2, clients=1, orders_per_client=2, replicas=2, faults=False)"


def test_lost_payment_replies_leave_charges_without_orders() -> None:
    """When no payment reply reaches orders, cards are charged (on every retry), orders fail, and stock stays held."""
    world = order_system.build_world(1, clients=2, orders_per_client=2)
    world.network.partition(["payments"], ["orders"], one_way=True)
    order_system.run_to_completion(world)
    report = order_system.report(world, clients=2, orders_per_client=2, replicas=2, faults=True)
    assert report.orders.ok == 0 and report.orders.ids == ()
    assert report.charges and all(len(a) == order_system.PAYMENT_ATTEMPTS for a in report.charges.values())
    charged_no_order = [f for f in report.facts if f.startswith("charged, no order:")]
    assert len(charged_no_order) == len(report.charges)
    assert any(f.startswith("stock never released:") for f in report.facts)


def test_bad_parameters_are_refused() -> None:
    """A negative seed or zero clients is refused with a message that shows the bad value."""
    with pytest.raises(sandbox.BadSeedError, match="-1"):
        order_system.build_world(-1)
    with pytest.raises(sandbox.InvalidParameterError, match="clients=0"):
        order_system.build_world(0, clients=0)


def test_services_work_in_staging() -> None:
    """Under FastAPI's TestClient, connected in-process, an order is reserved, charged, saved and published."""
    orders = order_system.create_orders_app()
    inventory = order_system.create_inventory_app()
    payments = order_system.create_payments_app()
    sandbox.connect_local(orders, inventory=inventory, payments=payments)
    with TestClient(inventory) as shelf:
        assert shelf.put("/stock/lamp/east", json={"qty": 2}).status_code == 200
    with TestClient(orders) as shop:
        r = shop.post("/orders", json={"customer": "ada", "sku": "lamp", "qty": 1, "card": "4242424242424242"})
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["amount"] == order_system.PRICES["lamp"]
        assert shop.get(f"/orders/{order['id']}").json() == order
    assert [m["topic"] for m in orders.state.chaos_dojo_sent] == ["order-placed"]
    with TestClient(inventory) as shelf:
        assert shelf.get("/stock/lamp").json()["available"] == 1
