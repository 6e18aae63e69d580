"""Lab 03 (sagas): the generated orchestrator works in staging and breaks under faults; the
reference solution holds on every seed and adversarial schedule; every mutant is caught."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fastapi import FastAPI

from autograder import seed_bank
from sandbox.explore import Counterexample, Passed

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "03-sagas"
MUTANTS = sorted(p.stem for p in (LAB_DIR / "mutants").glob("*.py"))
SAGA = "saga_completed_or_compensated(steps=('reserve', 'charge', 'ship'))"


def load(name: str) -> ModuleType:
    """A module of the lab by its path inside the lab folder (``"lab"``, ``"mutants/no_recovery"``)."""
    module_name = "lab_03_sagas_" + name.replace("/", "_")
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LAB_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


lab = load("lab")


def test_there_are_at_least_three_mutants_each_with_a_docstring():
    """The lab ships three or more partial fixes, each saying what it gets wrong."""
    assert len(MUTANTS) >= 3, MUTANTS
    for name in MUTANTS:
        module = load(f"mutants/{name}")
        assert callable(module.create_app) and len(module.__doc__ or "") > 100, name


@pytest.mark.parametrize("name", ["generated", "solution", *(f"mutants/{m}" for m in MUTANTS)])
def test_the_happy_path_passes(name: str):
    """One order on a calm TestClient setup goes through: generated code, solution and mutants all work in staging."""
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


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_the_hidden_checks(name: str):
    """Each partial fix breaks an invariant on the hidden bank (or an adversarial schedule)."""
    found = lab.check(load(f"mutants/{name}").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample), f"mutant {name} was not caught"
    assert found.invariant in {i.name for i in lab.invariants()}


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
