"""Lab 03 (sagas): the generated orchestrator works in staging and breaks under faults; the
reference solution and the correct alternatives hold on every seed and adversarial schedule, under
other grading secrets too; every mutant (a partial fix) is caught."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fastapi import FastAPI

from autograder import seed_bank
from sandbox.explore import Counterexample, Passed, explore
from sandbox.faults import Partition

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "03-sagas"
SAGA = "saga_completed_or_compensated(steps=('reserve', 'charge', 'ship'))"


def _load_lab() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab_03_sagas_lab", LAB_DIR / "lab.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lab = _load_lab()
MUTANTS = [name.split("/", 1)[1] for name in lab.mutants()]
ALTERNATIVES = lab.alternatives()


def load(name: str) -> ModuleType:
    """A module of the lab by its path inside the lab folder (``"solution"``, ``"mutants/no_recovery"``)."""
    return lab.load(name)


def test_there_are_at_least_three_mutants_each_with_a_docstring():
    """The lab ships three or more partial fixes, each saying what it gets wrong."""
    assert len(MUTANTS) >= 3, MUTANTS
    for name in MUTANTS:
        module = load(f"mutants/{name}")
        assert callable(module.create_app) and len(module.__doc__ or "") > 100, name


def test_there_are_at_least_two_correct_alternatives_each_with_a_docstring():
    """The lab ships two or more correct fixes written unlike the reference, each saying how it differs."""
    assert len(ALTERNATIVES) >= 2 and all(a.startswith("alternatives/") for a in ALTERNATIVES), ALTERNATIVES
    for name in ALTERNATIVES:
        module = load(name)
        assert callable(module.create_app) and len(module.__doc__ or "") > 300, name


@pytest.mark.parametrize("name", ["generated", "solution", *ALTERNATIVES, *(f"mutants/{m}" for m in MUTANTS)])
def test_the_happy_path_passes(name: str):
    """One order on a calm TestClient setup goes through: generated code, solutions and mutants all work in staging."""
    lab.happy_path(load(name).create_app)


def test_the_happy_path_catches_an_orchestrator_that_skips_a_step():
    """The staging test is no formality: an orchestrator that never books shipping fails it."""

    def no_shipping() -> FastAPI:
        app = load("generated").create_app()
        app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != "/orders"]

        @app.post("/orders", status_code=201)
        async def place(body: dict) -> dict:
            return {"id": "ord-1", "sku": body["sku"], "qty": body["qty"]}

        return app

    with pytest.raises(AssertionError):
        lab.happy_path(no_shipping)


def test_the_generated_code_fails_the_hidden_bank():
    """The generated orchestrator leaves sagas half done (no compensation): a counterexample names the saga checker."""
    found = lab.check(load("generated").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant == SAGA
    assert "then stopped" in found.verdict.summary


def test_the_counterexample_of_the_generated_code_shrinks_and_replays():
    """On the visible bank the generated code's counterexample shrinks to a smaller workload and replays exactly."""
    found = lab.check(load("generated").create_app, "visible")
    assert isinstance(found, Counterexample)
    assert sum(found.workload.values()) < sum(found.original_workload.values())
    assert found.replay().fingerprint == found.fingerprint


@pytest.mark.parametrize("bank", ["visible", "hidden"])
def test_the_solution_passes_every_seed_and_adversarial_schedule(bank: str):
    """The reference solution holds every invariant on every seed of the bank and every ADVERSARIAL schedule."""
    result = lab.check(load("solution").create_app, bank, shrink=False)
    assert isinstance(result, Passed), result
    assert result.ok, result.undecided[:3]
    size = lab.VISIBLE if bank == "visible" else lab.HIDDEN
    assert result.runs == size + len(lab.ADVERSARIAL)


def test_the_solution_passes_a_hidden_bank_drawn_from_a_grading_secret():
    """With a grading secret the hidden bank is a different one, and the solution still passes it."""
    result = lab.check(load("solution").create_app, "hidden", secret="lab-03-test-secret", shrink=False)
    assert isinstance(result, Passed) and result.ok, result


@pytest.mark.parametrize("name", ALTERNATIVES)
def test_each_correct_alternative_passes_a_hidden_bank_and_every_adversarial_schedule(name: str):
    """A fix written unlike the reference (another shape of saga log, of recovery) passes as the reference does,
    on a hidden bank drawn from a grading secret."""
    result = lab.check(load(name).create_app, "hidden", secret="lab-03-alternatives", shrink=False)
    assert isinstance(result, Passed) and result.ok, result
    assert result.runs == lab.HIDDEN + len(lab.ADVERSARIAL)


def test_the_solution_holds_over_a_sweep_of_nemesis_seeds():
    """Beyond the banks: forty more seeds of the lab's nemesis (long reply losses on about half of them), and
    the reference solution fails none and leaves none undecided."""
    result = explore(lab.scenario(load("solution").create_app), lab.invariants(), seeds=range(7_000, 7_040),
                     schedules=lab.schedules, shrink=False, workers=1)
    assert isinstance(result, Passed) and result.ok, result


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_the_hidden_checks(name: str):
    """Each partial fix breaks an invariant on the hidden bank (or an adversarial schedule)."""
    found = lab.check(load(f"mutants/{name}").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample), f"mutant {name} was not caught"
    assert found.invariant in {i.name for i in lab.invariants()}


#: The partial fixes that one adversarial schedule is aimed at (by its index), and what it must see.
AIMED = [
    (4, "gives_up_and_compensates", {SAGA, "money_conserved", "orders_settled"}),
    (4, "refuses_while_still_running", {"customers_told_the_truth"}),
    (5, "recovers_only_at_startup", {SAGA, "orders_settled"}),
    (5, "recovery_dies_on_db_error", {SAGA, "orders_settled"}),
    (6, "resumes_only_running", {SAGA, "orders_settled"}),
    (7, "resumes_only_running", {SAGA, "orders_settled"}),
]


@pytest.mark.parametrize(("index", "name", "seen_by"), AIMED, ids=[f"{i}-{n}" for i, n, _ in AIMED])
def test_an_adversarial_schedule_catches_the_partial_fix_it_is_aimed_at_whatever_the_seed(
    index: int, name: str, seen_by: set[str]
):
    """A grading secret pairs each adversarial schedule with another seed: the schedule must catch its partial fix
    on any of them, and the invariants named must all see the harm."""
    scenario = lab.scenario(load(f"mutants/{name}").create_app)
    for seed in (11, 12, 13):
        world = scenario.run(seed, lab.ADVERSARIAL[index]).world
        failing = {inv.name for inv in lab.invariants() if inv(world).outcome.name == "FAIL"}
        assert seen_by <= failing, f"seed {seed}: {name} broke only {failing or 'nothing'} under {index}"


def test_a_step_in_doubt_is_never_compensated_whatever_the_retry_budget():
    """Shipping's replies lost for eight seconds: an orchestrator with a retry budget refunds and releases orders
    whose parcels were booked (caught, with the money kept at zero for a shipped order), while the reference keeps
    asking with the same id and completes them once the replies get through."""
    schedule = lab.ADVERSARIAL[4]
    assert [(f.target, f.peer, f.direction, f.duration) for f in schedule] == [
        (("shipping",), ("orders",), "to", 8.0)]
    mutant = lab.scenario(load("mutants/gives_up_and_compensates").create_app).run(11, schedule).world
    verdict = lab.MoneyConserved()(mutant)
    assert not verdict and "0.00 kept for a" in verdict.summary, verdict
    reference = lab.scenario(load("solution").create_app).run(11, schedule).world
    assert all(inv(reference) for inv in lab.invariants())
    shipped = {s["order_id"] for s in reference.database("shipping-db").rows("shipments").values()}
    assert any(r["status"] == "completed" for r in reference.database("orders-db").rows("sagas").values()
               if r["id"] in shipped)


def test_the_nemesis_loses_a_participants_replies_for_seconds_on_about_half_the_seeds():
    """Besides its short faults, the nemesis cuts the replies of one participant to the orchestrator (requests
    still arrive) for three to eight seconds on about half the seeds: longer than any fixed retry budget."""
    seeds = seed_bank(lab.LAB, "hidden", lab.HIDDEN, secret="lab-03-nemesis")
    long_ones = [f for seed in seeds for f in lab.schedules(seed) if f.duration and f.duration >= 3.0]
    assert 0.25 * len(seeds) <= len(long_ones) <= 0.75 * len(seeds), len(long_ones)
    for fault in long_ones:
        assert isinstance(fault, Partition) and fault.direction == "to" and fault.peer == ("orders",), fault
        assert fault.target[0] in lab.PARTICIPANTS and 3.0 <= fault.duration <= 8.0, fault
    assert {f.target[0] for f in long_ones} >= {"shipping", "payments"}


def test_the_checks_cannot_be_passed_by_reporting_nothing():
    """The participants report the saga steps, so an orchestrator that confirms orders without doing them is caught."""

    def liar() -> FastAPI:
        app = FastAPI()

        @app.post("/orders", status_code=201)
        async def place(body: dict) -> dict:
            return {"id": "ord-lie", **body}

        return app

    found = lab.check(liar, "visible", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant in (SAGA, "customers_told_the_truth")


def test_each_adversarial_schedule_acts_on_the_orchestrator():
    """Every hand-written schedule aims at the orchestrator or its links to the participants."""
    assert len(lab.ADVERSARIAL) >= 3
    for schedule in lab.ADVERSARIAL:
        assert all("orders" in f.target or "orders" in (getattr(f, "peer", None) or ()) for f in schedule), schedule


def test_the_nemesis_never_kills_a_participant():
    """The lab's nemesis kills and pauses only the orchestrator, and every link fault touches it."""
    for seed in seed_bank(lab.LAB, "hidden", lab.HIDDEN):
        for fault in lab.schedules(seed):
            assert "orders" in fault.target or "orders" in (getattr(fault, "peer", None) or ()), fault


def test_visible_and_hidden_banks_differ():
    """The self-check seeds and the grading seeds share nothing."""
    visible = seed_bank(lab.LAB, "visible", lab.VISIBLE)
    hidden = seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    assert len(visible) == lab.VISIBLE and len(hidden) == lab.HIDDEN
    assert not set(visible) & set(hidden)


def test_the_happy_path_does_not_depend_on_the_global_random_state():
    """Staging is the same on every run: whatever Python's global random state, the happy path passes."""
    import random

    state = random.getstate()
    try:
        for seed in range(40):
            random.seed(seed)
            lab.happy_path(load("generated").create_app)
    finally:
        random.setstate(state)
