"""The invariant library: each checker on small worlds that keep and break its promise, and on the order system."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI, HTTPException
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import sandbox
from sandbox.checkers import (
    Invariant,
    Outcome,
    Verdict,
    breaker_transitions_legal,
    check,
    connected_traces,
    conserved,
    exactly_once,
    money_conserved,
    no_double_charge,
    retries_within_budget,
    saga_completed_or_compensated,
    stock_conserved,
    stock_never_negative,
)
from sandbox.examples import order_system
from sandbox.faults import Isolate, Schedule

# --- service code under test -----------------------------------------------------------


def payments_app() -> FastAPI:
    """Charges and refunds, recorded as rows; a refund may also delete the charge row."""
    app = FastAPI()
    payments_db = sandbox.database("payments-db")

    @app.post("/charges", status_code=201)
    async def charge(body: dict, db: sandbox.Database = Depends(payments_db)) -> dict:
        row = {"order_id": body["order_id"], "amount": body["amount"]}
        await db.put("charges", body["charge_id"], row)
        return row

    @app.post("/refunds", status_code=201)
    async def refund(body: dict, db: sandbox.Database = Depends(payments_db)) -> dict:
        row = {"order_id": body["order_id"], "amount": body["amount"]}
        await db.put("refunds", body["refund_id"], row)
        if body.get("delete_charge"):
            await db.delete("charges", body["delete_charge"])
        return row

    @app.post("/slow")
    async def slow() -> dict:
        await sandbox.sleep(0.1)
        return {"ok": True}

    return app


def inventory_app() -> FastAPI:
    """Check-then-act stock: reads the level, thinks a little, reads it again and writes it minus one."""
    app = FastAPI()
    inventory_db = sandbox.database("inventory-db")

    @app.post("/take/{sku}")
    async def take(sku: str, body: dict, db: sandbox.Database = Depends(inventory_db)) -> dict:
        row = await db.get("stock", sku)
        if row is None or row["qty"] < 1:
            raise HTTPException(409, "out of stock")
        await sandbox.sleep(body.get("think", 0.01))
        row = await db.get("stock", sku)
        row["qty"] -= 1
        await db.put("stock", sku, row)
        return row

    return app


def jobs_app() -> FastAPI:
    """Publishes jobs, and consumes them: each handled job writes an effect row (not idempotently)."""
    app = FastAPI()
    work_db = sandbox.database("work-db")

    @app.post("/jobs")
    async def publish(body: dict, producer: sandbox.Producer = Depends(sandbox.producer)) -> dict:
        headers: dict[str, str] = {}
        if body.get("propagate"):
            TraceContextTextMapPropagator().inject(headers)
        for job in body["jobs"]:
            await producer.send("jobs", job, key=job["id"], headers=headers)
        return {"sent": len(body["jobs"])}

    @sandbox.consumer(app, "jobs", group="workers", retry_backoff=0.05)
    async def work(message: sandbox.Message, db: sandbox.Database = Depends(work_db)) -> None:
        job = message.value
        if job.get("skip"):
            return
        attempt = await db.get("attempts", job["id"], 0) + 1
        await db.put("attempts", job["id"], attempt)
        effect_key = job["id"] if job.get("idempotent") else f"{job['id']}#{attempt}"
        await db.put("effects", effect_key, {"job": job["id"]})
        if job.get("fail_first") and attempt == 1:
            raise HTTPException(500, "the worker failed after writing its effect")

    return app


def orders_app() -> FastAPI:
    """Calls payments with a short timeout, retrying as often as the request says; reports sagas and breakers."""
    app = FastAPI()

    @app.post("/pay")
    async def pay(body: dict, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        for attempt in range(1, body["attempts"] + 1):
            try:
                r = await http.post("http://payments/slow", json={}, timeout=body.get("timeout", 0.05))
                return {"status": r.status_code, "attempts": attempt}
            except sandbox.RequestTimeout:
                continue
        return {"status": None, "attempts": body["attempts"]}

    @app.post("/charge")
    async def charge(body: dict, http: sandbox.HttpClient = Depends(sandbox.http_client)) -> dict:
        r = await http.post("http://payments/charges", json=body)
        return r.json()

    @app.post("/audit")
    async def audit(tracer=Depends(sandbox.tracer)) -> dict:
        with tracer.start_as_current_span("audit", context=otel_context.Context()):
            pass  # a fresh context: this span starts a trace of its own
        return {}

    @app.post("/leak")
    async def leak(tracer=Depends(sandbox.tracer)) -> dict:
        from opentelemetry import trace

        parent = tracer.start_span("never-ended")  # never ended: never recorded
        with tracer.start_as_current_span("child", context=trace.set_span_in_context(parent)):
            pass
        return {}

    @app.post("/saga")
    async def saga(body: dict) -> dict:
        done = []
        for step in ("reserve", "charge", "ship"):
            if step == body.get("fail_at"):
                for undo in reversed(done):
                    sandbox.event("saga", saga=body["id"], step=undo, action="undo")
                return {"compensated": done}
            await sandbox.sleep(0.01)
            sandbox.event("saga", saga=body["id"], step=step, action="do")
            done.append(step)
            if step == body.get("stop_after"):
                return {"stopped": done}  # the orchestrator forgets the saga half-way
        return {"completed": done}

    @app.post("/breaker")
    async def breaker(body: dict) -> dict:
        sandbox.event("breaker", name="payments", before=body["before"], after=body["after"])
        return {}

    return app


# --- helpers ---------------------------------------------------------------------------


def new_world(seed: int = 1, *, tracing: bool = False, services: tuple[str, ...] = ()) -> sandbox.World:
    """A world with the four databases and the named services (one replica each)."""
    world = sandbox.World(seed, tracing=tracing)
    for db in ("payments-db", "inventory-db", "orders-db", "work-db"):
        world.add_database(db, latency=0.001, jitter=0.0)
    factories = {"payments": payments_app, "inventory": inventory_app, "jobs": jobs_app, "orders": orders_app}
    for name in services:
        world.add_service(name, factories[name], isolate_module=False)
    return world


def calls(world: sandbox.World, name: str, requests: list[tuple[str, dict]], *, start: float = 0.0, gap: float = 0.1) -> None:
    """A workload client that POSTs each ``(url, body)`` in turn, ``gap`` seconds apart, as one operation each."""

    async def workload(client: sandbox.Client) -> None:
        for url, body in requests:
            async with client.operation(url.rsplit("/", 1)[-1], body) as op:
                r = await client.http.post(url, json=body, timeout=2.0)
                op.ok(r.status_code) if r.status_code < 300 else op.fail(r.status_code)
            await client.sleep(gap)

    world.add_client(name, workload, start=start)


def emit(world: sandbox.World, kind: str, events: list[dict], *, name: str = "emitter", gap: float = 0.1) -> None:
    """A workload client that reports ``events`` with ``sandbox.event(kind, ...)``, ``gap`` seconds apart."""

    async def workload(client: sandbox.Client) -> None:
        for fields in events:
            await client.sleep(gap)
            sandbox.event(kind, **fields)

    world.add_client(name, workload)


def write_at(world: sandbox.World, t: float, db: str, table: str, key: str, value: object) -> None:
    """Write a row directly at virtual time ``t``."""
    if t > world.now:
        world.run(until=t)
    world.database(db).write(table, key, value)


def charge(order: str, charge_id: str, amount: int = 2500) -> tuple[str, dict]:
    return ("http://payments/charges", {"order_id": order, "charge_id": charge_id, "amount": amount})


def first_write(world: sandbox.World, table: str, key: str) -> float:
    """When row ``key`` of ``table`` was first written."""
    return next(e[0] for e in world.recorder.log if e[1] == "db.write" and e[3] == table and e[4] == key)


def saga(id: str, *steps: tuple[str, str]) -> list[dict]:
    return [{"saga": id, "step": step, "action": action} for step, action in steps]


def moves(*pairs: tuple[str, str], name: str = "payments") -> list[dict]:
    return [{"name": name, "before": before, "after": after} for before, after in pairs]


# --- the Invariant protocol and check() -------------------------------------------------


def test_invariants_name_themselves_as_the_call_that_built_them():
    """An invariant's name and repr show its factory and the arguments that differ from the defaults."""
    invariant = no_double_charge(db="pay-db", refunds_table="refunds")
    assert invariant.name == "no_double_charge(db='pay-db', refunds_table='refunds')"
    assert repr(invariant) == invariant.name
    assert stock_never_negative().name == "stock_never_negative()"
    assert isinstance(invariant, Invariant)


def test_check_runs_every_invariant_and_keeps_their_order():
    """check() returns one verdict per invariant, in the order given."""
    world = new_world()
    write_at(world, 0.5, "inventory-db", "stock", "lamp", {"qty": 1})
    verdicts = check(world, [stock_never_negative(), no_double_charge()])
    assert [v.invariant for v in verdicts] == ["stock_never_negative()", "no_double_charge()"]
    assert [v.outcome for v in verdicts] == [Outcome.PASS, Outcome.UNKNOWN]


def test_check_turns_a_checker_that_raises_into_unknown():
    """A checker that raises gives UNKNOWN with the error in its summary; the next checker still runs."""

    def broken(world: sandbox.World) -> Verdict:
        raise KeyError("qty")

    world = new_world()
    write_at(world, 0.5, "inventory-db", "stock", "lamp", {"level": 1})
    verdicts = check(world, [broken, stock_never_negative(), stock_never_negative(field="level")])
    assert verdicts[0].outcome is Outcome.UNKNOWN
    assert verdicts[0].invariant.endswith("broken")
    assert "KeyError" in verdicts[0].summary
    assert verdicts[1].outcome is Outcome.UNKNOWN  # rows have no 'qty': the parameters do not fit
    assert "has no field 'qty'" in verdicts[1].summary
    assert verdicts[2].passed


def test_check_gives_unknown_for_a_checker_that_returns_no_verdict():
    """A checker returning True instead of a Verdict is UNKNOWN: only a Verdict can pass."""
    (verdict,) = check(new_world(), [lambda world: True])
    assert verdict.outcome is Outcome.UNKNOWN
    assert verdict.summary == "the checker returned True, not a Verdict"


def test_the_public_names_are_exported_once_each():
    """sandbox.checkers.__all__ lists every invariant of the library once, and each name resolves."""
    import sandbox.checkers as checkers
    import sandbox.checkers.invariants as library

    assert len(checkers.__all__) == len(set(checkers.__all__))
    assert set(library.__all__) <= set(checkers.__all__)
    assert all(getattr(checkers, name) is getattr(library, name) for name in library.__all__)


def test_check_refuses_a_factory_in_place_of_an_invariant():
    """Passing no_double_charge instead of no_double_charge() says to call it."""
    with pytest.raises(sandbox.InvalidParameterError, match=r"no_double_charge\(\)"):
        check(new_world(), [stock_never_negative(), no_double_charge])


def test_check_refuses_a_lone_invariant():
    """check() takes a list; a single invariant is refused with the call to write instead."""
    with pytest.raises(sandbox.InvalidParameterError, match=r"check\(world, \[no_double_charge\(\)\]\)"):
        check(new_world(), no_double_charge())  # type: ignore[arg-type]


def test_passing_the_world_to_a_factory_says_how_to_call_it():
    """no_double_charge(world) is a slip for no_double_charge()(world), and the error says so."""
    with pytest.raises(sandbox.InvalidParameterError, match=r"no_double_charge\(\)\(world\)"):
        no_double_charge(new_world())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "shown"),
    [
        (lambda: no_double_charge(table=""), "table=''"),
        (lambda: stock_never_negative(field=3), "field=3"),
        (lambda: stock_conserved(initial=[("lamp", 3)]), "initial=[('lamp', 3)]"),
        (lambda: conserved("units", 17, 17), "measure=17"),
        (lambda: conserved("units", len, 1, tolerance=-1), "tolerance=-1"),
        (lambda: money_conserved(succeeded="confirmed"), "succeeded='confirmed'"),
        (lambda: exactly_once("work-db", None), "table=None"),
        (lambda: saga_completed_or_compensated("reserve"), "steps='reserve'"),
        (lambda: saga_completed_or_compensated(("a", "a")), "steps=('a', 'a')"),
        (lambda: saga_completed_or_compensated(("a", "b"), no_undo=("c",)), "'c'"),
        (lambda: breaker_transitions_legal(min_open=-1.0), "min_open=-1.0"),
        (lambda: retries_within_budget("orders", "payments", max_attempts=0), "max_attempts=0"),
        (lambda: retries_within_budget("orders", "payments", ratio=float("nan")), "ratio=nan"),
        (lambda: connected_traces(entry_points="scheduler"), "entry_points='scheduler'"),
    ],
)
def test_bad_parameters_raise_invalid_parameter_error_showing_the_value(build, shown):
    """Every factory refuses a bad parameter at once, showing the bad value."""
    with pytest.raises(sandbox.InvalidParameterError) as error:
        build()
    assert shown in str(error.value)


# --- no_double_charge ------------------------------------------------------------------


def test_no_double_charge_passes_when_each_order_is_charged_once():
    """Two orders, one charge each: PASS."""
    world = new_world(services=("payments",))
    calls(world, "shopper", [charge("ord-1", "ch-1"), charge("ord-2", "ch-2")])
    verdict = no_double_charge()(world.run())
    assert verdict.passed, verdict
    assert verdict.summary == "2 orders charged, none more than once"


def test_no_double_charge_fails_naming_the_order_its_charges_and_their_times():
    """An order charged twice FAILS; the summary names it with amounts and times, the evidence lists both charges."""
    world = new_world(services=("payments",))
    calls(world, "shopper", [charge("ord-1", "ch-1"), charge("ord-2", "ch-2"), charge("ord-2", "ch-3")])
    verdict = no_double_charge()(world.run())
    assert verdict.outcome is Outcome.FAIL
    t2, t3 = first_write(world, "charges", "ch-2"), first_write(world, "charges", "ch-3")
    assert verdict.summary == f"order ord-2 was charged twice: $25.00 at t={t2:.4f} + $25.00 at t={t3:.4f}"
    assert verdict.evidence[:2] == (
        f"t={t2:.4f} payments-db/charges ch-2: order ord-2, $25.00",
        f"t={t3:.4f} payments-db/charges ch-3: order ord-2, $25.00",
    )
    # then the client operations that mention the order, for the pictures to point at
    ops = verdict.evidence[2:]
    assert ops and all(isinstance(op, sandbox.Op) and "ord-2" in repr(op.value) for op in ops)


def test_no_double_charge_counts_a_charge_whose_row_was_deleted():
    """A charge row deleted later still was a charge: the final table shows one row, the checker two charges."""
    world = new_world(services=("payments",))
    refund = ("http://payments/refunds", {"order_id": "ord-1", "refund_id": "rf-1", "amount": 2500, "delete_charge": "ch-1"})
    calls(world, "shopper", [charge("ord-1", "ch-1"), refund, charge("ord-1", "ch-2")])
    world.run()
    assert list(world.database("payments-db").rows("charges")) == ["ch-2"]
    verdict = no_double_charge()(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith("order ord-1 was charged twice")


def test_no_double_charge_lets_a_refund_reverse_a_charge():
    """With refunds_table, a refund for the order cancels one of its charges; without it, the order is double charged."""
    world = new_world(services=("payments",))
    refund = ("http://payments/refunds", {"order_id": "ord-1", "refund_id": "rf-1", "amount": 2500})
    calls(world, "shopper", [charge("ord-1", "ch-1"), charge("ord-1", "ch-2"), refund])
    world.run()
    with_refunds = no_double_charge(refunds_table="refunds")(world)
    assert with_refunds.passed, with_refunds
    assert "1 charge refunded" in with_refunds.summary
    assert not no_double_charge()(world)


def test_no_double_charge_is_unknown_when_nothing_was_charged():
    """No charges table: the run charged nobody, so it proves nothing (UNKNOWN, not PASS)."""
    verdict = no_double_charge()(new_world().run(until=1))
    assert verdict.outcome is Outcome.UNKNOWN
    assert "nothing was charged" in verdict.summary
    assert not verdict


def test_no_double_charge_names_an_unknown_database():
    """A database the world does not have raises UnknownNameError listing the ones it has."""
    with pytest.raises(sandbox.UnknownNameError, match="payments-db"):
        no_double_charge(db="billing-db")(new_world())


# --- stock_never_negative --------------------------------------------------------------


def test_stock_never_negative_passes_when_levels_stay_at_or_above_zero():
    """Levels 3, 2, 0: PASS, with every write checked."""
    world = new_world()
    for t, qty in ((0.1, 3), (0.2, 2), (0.3, 0)):
        write_at(world, t, "inventory-db", "stock", "lamp", {"qty": qty})
    verdict = stock_never_negative()(world)
    assert verdict.passed
    assert verdict.summary == "no level went below zero (3 writes checked)"


def test_stock_never_negative_catches_a_dip_that_was_restocked():
    """Two customers take the last lamp at once and the level goes to -1; a restock hides it from the rows, not the checker."""
    world = new_world(services=("inventory",))
    write_at(world, 0.001, "inventory-db", "stock", "lamp", {"qty": 1})
    calls(world, "alice", [("http://inventory/take/lamp", {"think": 0.01})], start=0.1)
    calls(world, "bob", [("http://inventory/take/lamp", {"think": 0.05})], start=0.1)  # checks early, writes late
    world.run()
    world.database("inventory-db").write("stock", "lamp", {"qty": 5})  # the clerk restocks
    assert world.database("inventory-db").rows("stock") == {"lamp": {"qty": 5}}
    verdict = stock_never_negative()(world)
    assert verdict.outcome is Outcome.FAIL
    (t,) = [e[0] for e in world.recorder.log if e[1] == "db.write" and e[6] == {"qty": -1}]
    assert verdict.summary == f"inventory-db/stock lamp went to qty -1 at t={t:.4f}"
    assert verdict.evidence[0] == f"t={t:.4f} inventory-db/stock lamp: qty = -1"
    in_flight = [item for item in verdict.evidence if isinstance(item, sandbox.Op)]
    assert in_flight and {op.f for op in in_flight} == {"lamp"}
    assert all(op.time <= t for op in in_flight)


def test_stock_never_negative_reads_plain_numbers_with_field_none():
    """With field=None a row is the level itself."""
    world = new_world()
    write_at(world, 0.1, "inventory-db", "levels", "kettle", 2)
    write_at(world, 0.2, "inventory-db", "levels", "kettle", -2)
    verdict = stock_never_negative(table="levels", field=None)(world)
    assert verdict.summary == "inventory-db/levels kettle went to level -2 at t=0.2000"


def test_stock_never_negative_is_unknown_when_no_stock_was_written():
    """No stock table: nothing was ever stocked, so nothing is proven."""
    verdict = stock_never_negative()(new_world().run(until=1))
    assert verdict.outcome is Outcome.UNKNOWN
    assert verdict.summary == "inventory-db has no table 'stock': no stock was ever written"


def test_stock_never_negative_says_when_the_field_is_not_a_number():
    """A level that is not a number raises InvalidParameterError naming the row and the field."""
    world = new_world()
    write_at(world, 0.1, "inventory-db", "stock", "lamp", {"qty": "three"})
    with pytest.raises(sandbox.InvalidParameterError, match=r"inventory-db/stock lamp field 'qty' is 'three'"):
        stock_never_negative()(world)


# --- conservation ----------------------------------------------------------------------


def row_count(world: sandbox.World) -> int:
    return len(world.database("inventory-db").rows("stock"))


def test_conserved_passes_when_the_measure_matches():
    """A measure equal to the expected number passes."""
    world = new_world()
    write_at(world, 0.1, "inventory-db", "stock", "lamp", {"qty": 1})
    write_at(world, 0.2, "inventory-db", "stock", "desk", {"qty": 1})
    verdict = conserved("rows", row_count, 2)(world)
    assert verdict.passed
    assert verdict.invariant == "rows"
    assert repr(conserved("rows", row_count, 2)) == "conserved('rows', row_count, 2, tolerance=0)"


def test_conserved_fails_with_the_difference():
    """A measure off by one fails, saying how far off."""
    world = new_world()
    write_at(world, 0.1, "inventory-db", "stock", "lamp", {"qty": 1})
    verdict = conserved("rows", row_count, 2)(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary == "measured 1, expected 2 (-1)"


def test_conserved_compares_dicts_key_by_key_within_the_tolerance():
    """Dict measures are compared per key (a missing key counts as 0), each within the tolerance."""
    world = new_world()

    def levels(w: sandbox.World) -> dict:
        return {"lamp": 5.0, "desk": 2.05}

    assert conserved("levels", levels, {"lamp": 5, "desk": 2}, tolerance=0.1)(world).passed
    verdict = conserved("levels", levels, lambda w: {"lamp": 5, "desk": 2, "kettle": 1})(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.evidence == ("desk: 2.05, expected 2 (+0.05)", "kettle: 0, expected 1 (-1)")


def test_conserved_is_unknown_when_the_measure_gives_none():
    """A measure that returns None (the run cannot tell) gives UNKNOWN."""
    verdict = conserved("units", lambda w: None, 3)(new_world())
    assert verdict.outcome is Outcome.UNKNOWN


def test_stock_conserved_passes_when_every_unit_taken_is_held():
    """5 lamps, 2 taken and held by a reservation: 3 left + 2 held = 5."""
    world = new_world()
    write_at(world, 0.1, "inventory-db", "stock", "lamp/central", {"sku": "lamp", "warehouse": "central", "qty": 5})
    write_at(world, 0.2, "inventory-db", "stock", "lamp/central", {"sku": "lamp", "warehouse": "central", "qty": 3})
    write_at(world, 0.2, "inventory-db", "reservations", "ord-1", {"sku": "lamp", "qty": 2})
    verdict = stock_conserved()(world)
    assert verdict.passed, verdict
    assert verdict.summary == "stock left + held = opening stock for all 1 SKU"


def test_stock_conserved_fails_on_a_lost_update():
    """Two reservations of one lamp each, but the level fell by one only: one unit more than there ever was."""
    world = new_world()
    for warehouse, qty in (("central", 2), ("east", 1)):
        row = {"sku": "lamp", "warehouse": warehouse, "qty": qty}
        write_at(world, 0.1, "inventory-db", "stock", f"lamp/{warehouse}", row)
    write_at(world, 0.2, "inventory-db", "stock", "lamp/central", {"sku": "lamp", "warehouse": "central", "qty": 1})
    write_at(world, 0.2, "inventory-db", "reservations", "ord-1", {"sku": "lamp", "qty": 1})
    write_at(world, 0.3, "inventory-db", "reservations", "ord-2", {"sku": "lamp", "qty": 1})
    verdict = stock_conserved()(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.evidence == (
        "lamp: 2 left + 2 held = 4, but 3 at the start; 1 unit more than there ever was: two orders took the "
        "same units (a lost update?)",
    )


def test_stock_conserved_takes_the_opening_stock_per_warehouse():
    """initial= accepts sku -> {warehouse: units}, as order_system.INITIAL_STOCK is written."""
    world = new_world()
    write_at(world, 0.1, "inventory-db", "stock", "lamp/central", {"sku": "lamp", "warehouse": "central", "qty": 1})
    verdict = stock_conserved(initial={"lamp": {"central": 2, "east": 1}})(world)
    assert verdict.outcome is Outcome.FAIL
    assert "2 units vanished" in verdict.summary


def test_money_conserved_passes_when_each_order_paid_its_value():
    """One $25.00 order, one $25.00 charge: PASS."""
    world = new_world()
    write_at(world, 0.1, "payments-db", "charges", "ch-1", {"order_id": "ord-1", "amount": 2500})
    write_at(world, 0.2, "orders-db", "orders", "ord-1", {"amount": 2500, "status": "confirmed"})
    verdict = money_conserved()(world)
    assert verdict.passed
    assert verdict.summary == ("every order paid exactly what it is worth (charged $25.00 - refunded $0.00, "
                               "orders worth $25.00)")


def test_money_conserved_fails_on_a_double_charge_and_on_money_kept_for_a_failed_order():
    """A double charge and a charge for an order that never succeeded each break the balance, order by order."""
    world = new_world()
    write_at(world, 0.1, "payments-db", "charges", "ch-1", {"order_id": "ord-1", "amount": 2500})
    write_at(world, 0.2, "payments-db", "charges", "ch-2", {"order_id": "ord-1", "amount": 2500})
    write_at(world, 0.3, "payments-db", "charges", "ch-3", {"order_id": "ord-2", "amount": 3900})
    write_at(world, 0.4, "orders-db", "orders", "ord-1", {"amount": 2500, "status": "confirmed"})
    write_at(world, 0.4, "orders-db", "orders", "ord-2", {"amount": 3900, "status": "failed"})
    verdict = money_conserved(succeeded=lambda order: order["status"] == "confirmed")(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.evidence == (
        "order ord-1: charged $50.00, refunded $0.00 for a $25.00 order: $25.00 too much",
        "order ord-2: charged $39.00, refunded $0.00, but no such order succeeded: $39.00 kept for nothing",
    )


def test_money_conserved_balances_a_refunded_charge():
    """A charge for a failed order, refunded: the money balances."""
    world = new_world()
    write_at(world, 0.1, "payments-db", "charges", "ch-1", {"order_id": "ord-1", "amount": 2500})
    write_at(world, 0.2, "payments-db", "refunds", "rf-1", {"order_id": "ord-1", "amount": 2500})
    assert money_conserved(refunds_table="refunds")(world).passed
    assert not money_conserved()(world)


# --- exactly_once ----------------------------------------------------------------------


def run_jobs(jobs: list[dict], **options: object) -> sandbox.World:
    world = new_world(services=("jobs",), **options)  # type: ignore[arg-type]
    calls(world, "producer", [("http://jobs/jobs", {"jobs": jobs, "propagate": options.get("tracing", False)})])
    return world.run(settle=1.0)


def test_exactly_once_passes_when_each_message_has_one_effect():
    """Three jobs, each handled once: PASS."""
    world = run_jobs([{"id": "j1"}, {"id": "j2"}, {"id": "j3"}])
    verdict = exactly_once("work-db", "effects", "job", topic="jobs")(world)
    assert verdict.passed, verdict
    assert verdict.summary == "all 3 messages took effect exactly once"


def test_exactly_once_fails_on_a_redelivered_message_that_took_effect_twice():
    """A handler that fails after writing gets the message again and writes a second effect; deliveries are counted."""
    world = run_jobs([{"id": "j1"}, {"id": "j2", "fail_first": True}])
    verdict = exactly_once("work-db", "effects", "job", topic="jobs")(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith("1 of 2 messages did not take effect exactly once: message j2 took effect twice")
    assert "delivered twice, handled twice" in verdict.summary
    assert [item.strip().split(" ", 1)[1] for item in verdict.evidence[1:]] == [
        "work-db/effects j2#1 created", "work-db/effects j2#2 created",
    ]


def test_exactly_once_accepts_an_idempotent_handler_under_redelivery():
    """The same redelivery, but the effect is keyed by the message: one effect, PASS."""
    world = run_jobs([{"id": "j1", "fail_first": True, "idempotent": True}])
    assert world.recorder.counts()["consumer.handle"] == 2
    assert exactly_once("work-db", "effects", "job", topic="jobs")(world).passed


def test_exactly_once_fails_on_a_message_that_never_took_effect():
    """A message handled without writing its effect is a lost message."""
    world = run_jobs([{"id": "j1"}, {"id": "j2", "skip": True}])
    verdict = exactly_once("work-db", "effects", "job", topic="jobs")(world)
    assert verdict.outcome is Outcome.FAIL
    assert "message j2 never took effect" in verdict.summary
    assert "delivered once, handled once" in verdict.summary


def test_exactly_once_counts_the_deliveries_of_the_named_group_only():
    """With group=, the evidence counts deliveries to that consumer group only."""
    world = run_jobs([{"id": "j1", "fail_first": True}])
    workers = exactly_once("work-db", "effects", "job", topic="jobs", group="workers")(world)
    audit = exactly_once("work-db", "effects", "job", topic="jobs", group="audit")(world)
    assert "delivered twice, handled twice" in workers.summary
    assert "delivered 0 times, handled 0 times" in audit.summary


def test_exactly_once_without_a_topic_counts_effects_per_id():
    """Without topic=, two effects for one id fail, and one effect per id passes."""
    world = run_jobs([{"id": "j1", "fail_first": True}])
    assert not exactly_once("work-db", "effects", "job")(world)
    assert exactly_once("work-db", "attempts")(world).passed  # the attempts row is created once per job


def isolated_jobs() -> sandbox.World:
    """Two jobs sent just before their worker is cut off for 30 s; the run stops at t=20, before the cut heals."""
    world = new_world(services=("jobs",))
    calls(world, "producer", [("http://jobs/jobs", {"jobs": [{"id": "j1"}, {"id": "j2"}]})])
    world.inject(Schedule([Isolate("jobs", start=0.005, duration=30)]))
    return world.run(until=20)


def test_exactly_once_is_unknown_when_the_run_stopped_before_its_quiet_phase():
    """Messages without an effect while a fault is still in force may yet take effect: UNKNOWN, not FAIL."""
    world = isolated_jobs()
    assert world.clients_done and not world.chaos.healed
    verdict = exactly_once("work-db", "effects", "job", topic="jobs")(world)
    assert verdict.outcome is Outcome.UNKNOWN
    assert "before its quiet phase" in verdict.summary
    assert "message j1 never took effect" in verdict.summary


def test_exactly_once_decides_once_the_run_reaches_its_quiet_phase():
    """The same run carried on past the healing of its fault and settled: both messages took effect, PASS."""
    world = isolated_jobs()
    world.run(settle=10.0)
    assert world.chaos.healed
    verdict = exactly_once("work-db", "effects", "job", topic="jobs")(world)
    assert verdict.passed, verdict


def test_exactly_once_fails_a_second_effect_even_before_the_quiet_phase():
    """A message that already took effect twice FAILS while the client is still working: no later event undoes it."""
    world = new_world(services=("jobs",))
    calls(world, "producer", [("http://jobs/jobs", {"jobs": [{"id": "j1", "fail_first": True}, {"id": "j2"}]})])
    world.run(until=0.09)
    assert not world.clients_done
    verdict = exactly_once("work-db", "effects", "job", topic="jobs")(world)
    assert verdict.outcome is Outcome.FAIL
    assert "message j1 took effect twice" in verdict.summary


def test_exactly_once_is_unknown_for_a_topic_nobody_sent_to():
    """A topic without messages proves nothing: UNKNOWN, listing the topics there are."""
    world = run_jobs([{"id": "j1"}])
    verdict = exactly_once("work-db", "effects", "job", topic="job")(world)
    assert verdict.outcome is Outcome.UNKNOWN
    assert "(topics: ['jobs'])" in verdict.summary


# --- saga_completed_or_compensated -----------------------------------------------------

STEPS = ("reserve", "charge", "ship")


def run_sagas(*bodies: dict) -> sandbox.World:
    world = new_world(services=("orders",))
    calls(world, "shopper", [("http://orders/saga", body) for body in bodies])
    return world.run()


def test_saga_passes_when_sagas_complete_or_compensate():
    """One saga that completes and one that fails at shipping and undoes charge then reserve: PASS."""
    world = run_sagas({"id": "s1"}, {"id": "s2", "fail_at": "ship"})
    verdict = saga_completed_or_compensated(STEPS)(world)
    assert verdict.passed, verdict
    assert verdict.summary == "2 sagas: 1 completed, 1 compensated"


def test_saga_left_half_done_fails_with_its_events():
    """A saga that stops after charging, neither finished nor undone, FAILS at the end of the run, with its events."""
    world = run_sagas({"id": "s1"}, {"id": "s2", "stop_after": "charge"})
    verdict = saga_completed_or_compensated(STEPS)(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary == ("saga s2 did reserve, charge, then stopped: it should have done ship, "
                               "or undone charge, reserve")
    events = [item for item in verdict.evidence if isinstance(item, sandbox.Event)]
    assert [(e["saga"], e["step"]) for e in events] == [("s2", "reserve"), ("s2", "charge")]


def test_saga_half_done_when_the_run_stopped_early_is_unknown():
    """If the run stopped before its clients finished, a half-done saga may still finish: UNKNOWN, not FAIL."""
    world = new_world(services=("orders",))
    calls(world, "shopper", [("http://orders/saga", {"id": "s1"})])
    world.run(until=0.015)
    verdict = saga_completed_or_compensated(STEPS)(world)
    assert verdict.outcome is Outcome.UNKNOWN
    assert "before its quiet phase" in verdict.summary


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        (saga("s1", ("reserve", "do"), ("charge", "do"), ("reserve", "undo"), ("charge", "undo")),
         "saga s1 undid 'reserve' before 'charge': compensations run in reverse order"),
        (saga("s1", ("reserve", "do"), ("reserve", "undo"), ("charge", "do")),
         "saga s1 did 'charge' at t=0.3000, after its compensation began at t=0.2000"),
        (saga("s1", ("reserve", "do"), ("charge", "undo")), "saga s1 undid 'charge' at t=0.2000, which it never did"),
        (saga("s1", ("charge", "do")), "saga s1 did 'charge' before 'reserve'"),
        (saga("s1", ("reserve", "do"), ("pack", "do")), "saga s1 step 'pack' at t=0.2000 is not one of steps="),
        (saga("s1", ("reserve", "redo")), "saga s1 action 'redo' at t=0.1000: report 'do' or 'undo'"),
        (saga("s1", ("reserve", "do"), ("charge", "do"), ("ship", "do"), ("charge", "undo"), ("reserve", "undo")),
         "saga s1 undid 'charge' at t=0.4000, after the saga completed ('ship' done at t=0.3000): a completed saga "
         "is never compensated"),
    ],
)
def test_saga_breaking_the_order_of_steps_fails(events, problem):
    """Undoing out of order, doing after compensating, undoing what was never done: each FAILS, named."""
    world = new_world()
    emit(world, "saga", events)
    verdict = saga_completed_or_compensated(STEPS)(world.run())
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith(problem), verdict.summary


def test_saga_steps_without_compensation_are_skipped_when_undoing():
    """A step in no_undo (a read) needs no undo: undoing charge alone compensates reserve-check-charge."""
    world = new_world()
    emit(world, "saga", saga("s1", ("check", "do"), ("charge", "do"), ("charge", "undo")))
    world.run()
    assert saga_completed_or_compensated(("check", "charge", "ship"), no_undo=("check",))(world).passed
    assert not saga_completed_or_compensated(("check", "charge", "ship"))(world)


def test_saga_is_unknown_when_no_saga_ran():
    """No saga event at all: UNKNOWN, never a pass."""
    verdict = saga_completed_or_compensated(STEPS)(new_world().run(until=1))
    assert verdict.outcome is Outcome.UNKNOWN
    assert verdict.summary == "no saga ran: no sandbox.event('saga', ...) was recorded"


# --- breaker_transitions_legal ---------------------------------------------------------


def test_breaker_passes_a_legal_cycle():
    """closed -> open -> half_open -> open -> half_open -> closed is legal."""
    world = new_world()
    emit(world, "breaker", moves(("closed", "open"), ("open", "half_open"), ("half_open", "open"),
                                 ("open", "half-open"), ("half_open", "closed")))
    verdict = breaker_transitions_legal(min_open=0.1)(world.run())
    assert verdict.passed, verdict
    assert verdict.summary == "5 transitions of 1 breaker, all legal"


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [
        ((("closed", "half_open"),), "breaker 'payments' on emitter went closed -> half_open: the legal moves are"),
        ((("closed", "open"), ("closed", "open")),
         "breaker 'payments' on emitter said it went from closed but it was open (since t=0.1000)"),
        ((("closed", "tripped"),),
         "breaker 'payments' on emitter: states are closed, open, half_open, not 'closed' -> 'tripped'"),
    ],
)
def test_breaker_illegal_transitions_fail(pairs, problem):
    """A move outside the state machine, or a before that is not the state the breaker was in, FAILS."""
    world = new_world()
    emit(world, "breaker", moves(*pairs))
    verdict = breaker_transitions_legal()(world.run())
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith(problem), verdict.summary
    assert isinstance(verdict.evidence[1], sandbox.Event)


def test_breaker_reopening_too_soon_fails_with_min_open():
    """A breaker that half-opens 0.1 s after opening breaks min_open=1.0."""
    world = new_world()
    emit(world, "breaker", moves(("closed", "open"), ("open", "half_open")))
    world.run()
    verdict = breaker_transitions_legal(min_open=1.0)(world)
    assert verdict.summary == "breaker 'payments' on emitter tried again 0.1000s after opening, before min_open=1s"
    assert breaker_transitions_legal()(world).passed


def test_breaker_that_lets_a_request_through_while_open_fails():
    """With callee=, a request sent to the callee while the breaker is open FAILS, naming it and when."""
    world = new_world(services=("payments",))

    async def leaky(client: sandbox.Client) -> None:
        sandbox.event("breaker", name="payments", before="closed", after="open")
        await client.sleep(0.1)
        await client.http.post("http://payments/charges", json={"order_id": "o", "charge_id": "c", "amount": 1})
        await client.sleep(1.0)
        sandbox.event("breaker", name="payments", before="open", after="half_open")
        await client.http.post("http://payments/charges", json={"order_id": "o", "charge_id": "d", "amount": 1})

    world.add_client("orders-client", leaky)
    world.run()
    verdict = breaker_transitions_legal(callee="payments")(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary == ("orders-client sent POST /charges to payments-0 at t=0.1000 while breaker 'payments' "
                               "was open (since t=0.0000)")
    assert breaker_transitions_legal()(world).passed


def opened_twice(*, restart: bool) -> sandbox.World:
    """The orders replica reports closed -> open twice, crashing and restarting in between if ``restart``."""
    world = new_world(services=("orders",))
    calls(world, "first", [("http://orders/breaker", {"before": "closed", "after": "open"})])
    calls(world, "second", [("http://orders/breaker", {"before": "closed", "after": "open"})], start=1.0)
    world.run(until=0.5)
    if restart:
        world.crash("orders")
        world.restart("orders")
    return world.run()


def test_breaker_of_a_restarted_replica_starts_closed_again():
    """A replica that crashed with its breaker open comes back closed, so closed -> open again is legal (and only then)."""
    verdict = breaker_transitions_legal()(opened_twice(restart=True))
    assert verdict.passed, verdict
    assert not breaker_transitions_legal()(opened_twice(restart=False))


def test_breaker_is_unknown_when_no_breaker_changed_state():
    """No breaker event: its transitions went untested, UNKNOWN."""
    verdict = breaker_transitions_legal()(new_world().run(until=1))
    assert verdict.outcome is Outcome.UNKNOWN


# --- retries_within_budget -------------------------------------------------------------


def run_payments(*attempts: int, tracing: bool = True) -> sandbox.World:
    """orders calls the slow payments endpoint once per request, retrying up to ``attempts`` times."""
    world = new_world(tracing=tracing, services=("orders", "payments"))
    calls(world, "shopper", [("http://orders/pay", {"attempts": n}) for n in attempts])
    return world.run()


def test_retries_within_budget_passes_when_attempts_stay_under_the_limit():
    """One call with 3 attempts is within max_attempts=3."""
    verdict = retries_within_budget("orders", "payments", max_attempts=3)(run_payments(3))
    assert verdict.passed, verdict
    assert verdict.summary == "1 call from orders to payments, at most 3 attempts each; 2 retries"


def test_retries_within_budget_fails_on_a_call_tried_too_often():
    """A call tried 4 times breaks max_attempts=3; the evidence lists each attempt and how it ended."""
    world = run_payments(4)
    verdict = retries_within_budget("orders", "payments")(world)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary.startswith("orders tried POST http://payments/slow 4 times in one call (trace ")
    assert len(verdict.evidence) == 4
    assert all("-> RequestTimeout" in line for line in verdict.evidence)
    assert verdict.evidence[0].split(" ")[1:4] == ["orders-0", "attempt", "1:"]


def test_retries_within_budget_fails_when_retries_exceed_the_ratio():
    """Two calls with 2 retries in all exceed a budget of 0.5 retries per call."""
    verdict = retries_within_budget("orders", "payments", ratio=0.5)(run_payments(1, 3))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.summary == ("orders retried 2 times over 2 calls to payments: above the budget of 0.5 retries "
                               "per call (1 allowed)")


def test_retries_within_budget_is_unknown_without_tracing():
    """Without tracing, one call's retries cannot be told from concurrent calls: UNKNOWN."""
    verdict = retries_within_budget("orders", "payments")(run_payments(4, tracing=False))
    assert verdict.outcome is Outcome.UNKNOWN
    assert "tracing=True" in verdict.summary


def test_retries_within_budget_names_an_unknown_service():
    """A caller that is no service raises UnknownServiceError listing the services."""
    with pytest.raises(sandbox.UnknownServiceError, match=r"caller='order'.*\['orders', 'payments'\]"):
        retries_within_budget("order", "payments")(new_world(services=("orders", "payments")))


# --- connected_traces ------------------------------------------------------------------


def test_connected_traces_passes_a_request_through_two_services():
    """client -> orders -> payments is one trace, rooted at the client's request."""
    world = new_world(tracing=True, services=("orders", "payments"))
    calls(world, "shopper", [("http://orders/charge", {"order_id": "o", "charge_id": "c", "amount": 1})])
    verdict = connected_traces()(world.run())
    assert verdict.passed, verdict
    assert verdict.summary.startswith("1 trace, 5 spans")


def test_connected_traces_fails_on_a_consumer_that_starts_its_own_trace():
    """A message sent without a traceparent header makes the consumer start a trace of its own."""
    world = new_world(tracing=True, services=("jobs",))
    calls(world, "producer", [("http://jobs/jobs", {"jobs": [{"id": "j1"}], "propagate": False})])
    verdict = connected_traces()(world.run(settle=1.0))
    assert verdict.outcome is Outcome.FAIL
    assert "CONSUMER span 'process jobs' on jobs-0 starts a trace of its own" in verdict.summary
    assert "traceparent" in verdict.summary
    assert verdict.evidence[0].endswith("root of a trace of its own")


def test_connected_traces_passes_when_the_producer_propagates_the_context():
    """The same message with a traceparent header continues the producer's trace."""
    world = run_jobs([{"id": "j1"}], tracing=True)
    assert connected_traces()(world).passed


def test_connected_traces_fails_on_a_span_started_in_a_fresh_context_unless_it_is_an_entry_point():
    """A span started with an empty context is a second root; entry_points allows such roots on named services."""
    world = new_world(tracing=True, services=("orders",))
    calls(world, "shopper", [("http://orders/audit", {})])
    world.run()
    verdict = connected_traces()(world)
    assert verdict.outcome is Outcome.FAIL
    assert "INTERNAL span 'audit' on orders-0 starts a trace of its own" in verdict.summary
    assert connected_traces(entry_points=("orders",))(world).passed


def test_connected_traces_fails_on_an_orphan_whose_parent_never_ended():
    """A child of a span that was never ended is an orphan: its parent is not in the trace."""
    world = new_world(tracing=True, services=("orders",))
    calls(world, "shopper", [("http://orders/leak", {})])
    verdict = connected_traces()(world.run())
    assert verdict.outcome is Outcome.FAIL
    assert "INTERNAL span 'child' on orders-0 is an orphan: its local parent span" in verdict.summary


def test_connected_traces_excuses_a_parent_lost_in_a_crash():
    """A payments span whose caller crashed mid-request lost its parent to the crash: excused, and said."""
    world = new_world(tracing=True, services=("orders", "payments"))
    calls(world, "shopper", [("http://orders/pay", {"attempts": 1, "timeout": 1.0})])
    world.run(until=0.05)
    world.crash("orders")
    verdict = connected_traces()(world.run())
    assert verdict.passed, verdict
    assert "1 span lost its parent to a node crash" in verdict.summary


def test_connected_traces_excuses_a_request_that_outlived_its_crashed_sender():
    """A request still on the wire when its sender crashed arrives later; its server span's parent died
    with the sender before the server span began: excused too."""
    world = new_world(tracing=True, services=("orders", "payments"))
    world.network.set_links("orders", "payments", latency=0.2, jitter=0.0)
    calls(world, "shopper", [("http://orders/pay", {"attempts": 1, "timeout": 1.0})])
    world.run(until=0.1)
    assert world.recorder.entries("net.send") and not world.recorder.entries("http.request")[1:]
    world.crash("orders")
    verdict = connected_traces()(world.run())
    assert verdict.passed, verdict
    assert "lost its parent to a node crash" in verdict.summary


def test_connected_traces_excuses_a_consumer_whose_producer_died_on_the_same_replica():
    """A replica that sent messages and crashed before its request's span ended consumes them again after its
    restart (a new process under the same name): their CONSUMER spans' parent died in that crash, excused."""
    world = new_world(tracing=True, services=("jobs",))
    calls(world, "producer", [("http://jobs/jobs", {"jobs": [{"id": f"j{i}"} for i in range(20)], "propagate": True})])
    world.run(until=0.02)
    world.crash("jobs")
    world.run(until=0.5)
    world.restart("jobs")
    verdict = connected_traces()(world.run(settle=2.0))
    assert verdict.passed, verdict
    assert "lost their parent to a node crash" in verdict.summary


def test_connected_traces_does_not_excuse_a_never_ended_parent_for_another_node_s_crash():
    """A message sent in the context of a span that is never ended: its consumer is an orphan, and a crash of
    some other node, which never held that span, excuses nothing."""

    def leaky_app() -> FastAPI:
        app = FastAPI()

        @app.post("/jobs")
        async def publish(body: dict, producer: sandbox.Producer = Depends(sandbox.producer),
                          tracer=Depends(sandbox.tracer)) -> dict:
            from opentelemetry import trace

            span = tracer.start_span("publish")  # never ended
            with trace.use_span(span, end_on_exit=False):
                headers: dict[str, str] = {}
                TraceContextTextMapPropagator().inject(headers)
                await producer.send("jobs", body, key="j", headers=headers)
            return {}

        @sandbox.consumer(app, "jobs", group="workers")
        async def work(message: sandbox.Message) -> None:
            pass

        return app

    world = new_world(tracing=True, services=("payments",))
    world.add_service("jobs", leaky_app, isolate_module=False)
    calls(world, "producer", [("http://jobs/jobs", {"id": "j1"})])
    world.run(until=0.5)
    world.crash("payments")
    verdict = connected_traces()(world.run(settle=1.0))
    assert verdict.outcome is Outcome.FAIL, verdict
    assert [e for e in verdict.evidence if "jobs-0 CONSUMER 'process jobs'" in e and "orphan" in e], verdict


def test_connected_traces_is_unknown_when_tracing_was_off():
    """Without tracing there are no spans to check: UNKNOWN."""
    world = new_world(services=("orders",))
    calls(world, "shopper", [("http://orders/audit", {})])
    verdict = connected_traces()(world.run())
    assert verdict.outcome is Outcome.UNKNOWN
    assert "World(seed, tracing=True)" in verdict.summary


# --- the order system ------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_shop() -> sandbox.World:
    """Seed 2 of the order system with faults: it double charges and oversells."""
    return order_system.run_to_completion(order_system.build_world(2))


def test_order_system_seed_2_double_charges_and_oversells(broken_shop):
    """no_double_charge and stock_never_negative FAIL on seed 2, naming what the report names."""
    report = order_system.report(broken_shop, clients=8, orders_per_client=5, replicas=2, faults=True)
    double, negative = check(broken_shop, [no_double_charge(), stock_never_negative()])
    assert double.outcome is Outcome.FAIL and negative.outcome is Outcome.FAIL
    (order,) = report.double_charged
    assert double.summary.startswith(f"order {order} was charged twice")
    first_sku, first_warehouse, _level = report.negative_stock[0]
    assert f"inventory-db/stock {first_sku}/{first_warehouse} went to qty -1" in negative.summary
    assert money_conserved()(broken_shop).outcome is Outcome.FAIL


def test_order_system_without_faults_and_one_customer_keeps_every_promise():
    """With one customer on a calm network, the naive system keeps its promises."""
    world = order_system.run_to_completion(order_system.build_world(2, faults=False, clients=1))
    verdicts = check(world, [
        no_double_charge(),
        stock_never_negative(),
        stock_conserved(initial=order_system.INITIAL_STOCK),
        money_conserved(),
        exactly_once("notifications-db", "emails", "order_id", topic="order-placed"),
    ])
    assert all(verdicts), "\n".join(map(str, verdicts))
