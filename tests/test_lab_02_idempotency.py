"""Lab 02 (idempotency): the flawed code passes staging and fails grading; the fix passes everything."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

from autograder import seed_bank
from sandbox.checkers import Outcome
from sandbox.explore import Counterexample, Passed

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "02-idempotency"
INVARIANTS = ("exactly_once", "no_double_charge", "idempotency_semantics")


def _load_lab():
    spec = importlib.util.spec_from_file_location("chaos_dojo_labs.lab02.lab", LAB_DIR / "lab.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lab = _load_lab()
MUTANTS = lab.mutants()


@pytest.fixture(scope="module")
def generated():
    return lab.load("generated")


@pytest.fixture(scope="module")
def solution():
    return lab.load("solution")


def _happy(create_app) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lab.happy_path(create_app)


def test_the_lab_declares_its_banks_and_structure():
    """lab.py names its seed bank and sizes, and ships at least three mutants and four adversarial schedules."""
    assert lab.LAB == "02-idempotency"
    assert (lab.VISIBLE, lab.HIDDEN) == (5, 30)
    assert len(MUTANTS) >= 3
    assert len(lab.ADVERSARIAL) >= 4
    assert [i.name.split("(")[0] for i in lab.invariants()] == list(INVARIANTS)


def test_visible_and_hidden_banks_differ():
    """The self-checks and the grading run disjoint seed banks; a grading secret changes the hidden one."""
    visible = seed_bank(lab.LAB, "visible", lab.VISIBLE)
    hidden = seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    assert not set(visible) & set(hidden)
    assert seed_bank(lab.LAB, "hidden", lab.HIDDEN, secret="s3cret") != hidden


def test_the_nemesis_is_drawn_from_the_seed():
    """The same seed gives the same schedule, and the faults are the lab's kinds on its targets."""
    assert repr(lab.schedules(11)) == repr(lab.schedules(11))
    kinds = {f.action for seed in range(40) for f in lab.schedules(seed)}
    assert kinds <= {"delay", "loss", "duplicate", "kill", "rebalance", "redelivery"}
    assert {"kill", "redelivery"} <= kinds


@pytest.mark.parametrize("name", ["generated", "solution", *MUTANTS])
def test_the_happy_path_passes(name):
    """Works in staging: the happy-path TestClient test passes on every version of the code."""
    _happy(lab.load(name).create_app)


def test_a_calm_run_of_the_solution_keeps_every_promise(solution):
    """Without faults the reference solution charges every payment and every event once, with the draft's answers."""
    run = lab.scenario(solution.create_app).run(1)
    verdicts = run.check(lab.invariants())
    assert all(v.outcome is Outcome.PASS for v in verdicts), "\n".join(map(str, verdicts))
    fs = {op.f for op in run.world.history if op.type == "ok" or op.type == "fail"}
    assert {"pay", "pay-twice", "pay-changed", "pay-without-key", "request-payment"} <= fs


def test_the_generated_code_fails_the_hidden_checks(generated):
    """The assistant's code charges twice: the hidden checks return a counterexample naming the broken promise."""
    found = lab.check(generated.create_app, "hidden")
    assert isinstance(found, Counterexample)
    assert found.invariant.startswith("no_double_charge")
    assert "charged twice" in found.verdict.summary
    assert found.seed in seed_bank(lab.LAB, "hidden", lab.HIDDEN)


def test_lost_commits_catch_the_consumer_that_a_calm_run_misses():
    """The undeduplicated consumer (mutant http_only) passes a calm run; the Redelivery schedule breaks it."""
    create_app = lab.load("mutants/http_only").create_app
    seed = seed_bank(lab.LAB, "hidden", 1)[0]
    calm = lab.scenario(create_app).run(seed)
    assert all(v.outcome is Outcome.PASS for v in calm.check(lab.invariants()))
    (redelivery,) = [s for s in lab.ADVERSARIAL if s[0].action == "redelivery"]
    verdict = lab.invariants()[0](lab.scenario(create_app).run(seed, redelivery).world)
    assert verdict.outcome is Outcome.FAIL, str(verdict)
    assert "took effect" in verdict.summary and "never took effect" not in verdict.summary


@pytest.mark.parametrize("bank", ["visible", "hidden"])
def test_the_solution_passes_every_seed_and_schedule(solution, bank):
    """The reference solution passes every seed of the bank and every adversarial schedule, with no undecided run."""
    result = lab.check(solution.create_app, bank, shrink=False)
    assert isinstance(result, Passed), str(result)
    assert result.ok, result.undecided
    size = lab.VISIBLE if bank == "visible" else lab.HIDDEN
    assert result.runs == size + len(lab.ADVERSARIAL)


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_the_hidden_checks(name):
    """Each partial fix breaks one of the lab's invariants somewhere in the hidden checks."""
    found = lab.check(lab.load(name).create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample), f"{name} passed the hidden checks"
    assert found.invariant.split("(")[0] in INVARIANTS


def test_the_check_is_deterministic(generated):
    """The same code and bank give the same counterexample: seed, schedule, workload and fingerprint."""
    a = lab.check(generated.create_app, "visible", shrink=False)
    b = lab.check(generated.create_app, "visible", shrink=False)
    assert (a.seed, repr(a.schedule), a.workload, a.fingerprint) == (b.seed, repr(b.schedule), b.workload, b.fingerprint)


def test_idempotency_semantics_is_unknown_without_answers():
    """The lab's own invariant never passes a run in which no payment got an answer."""
    from sandbox.faults import Partition, Schedule

    solution = lab.load("solution")
    schedule = Schedule([Partition("payments", None, start=0.0, duration=12.0)])
    run = lab.scenario(solution.create_app).run(3, schedule, shoppers=1, payments=1, renewals=1)
    assert lab.idempotency_semantics()(run.world).outcome is Outcome.UNKNOWN


def test_production_shows_the_retry_after_a_timeout(generated, solution):
    """The notebook's Production run: the generated code charges the order once per timed-out attempt (the story is
    the retry, so the late replies must be there); the reference solution passes it."""
    found = lab.production(generated.create_app)
    assert isinstance(found, Counterexample)
    assert found.invariant.startswith("no_double_charge")
    (pay,) = [op for op in found.world.history if op.f == "pay" and op.type == "ok"]
    timeouts = [a for a in pay.value["answers"] if a["status"] is None]
    assert len(timeouts) >= 2 and pay.value["answers"][-1]["status"] == 201
    assert f"charged {len(timeouts) + 2} times" in found.verdict.summary  # each attempt, plus the changed amount
    assert [f.action for f in found.schedule] == ["delay"]
    assert isinstance(lab.production(solution.create_app), Passed)
