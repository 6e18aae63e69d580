"""Lab 05 (races and locks): the flawed code passes staging and fails grading; the fixes pass everything."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from autograder import seed_bank
from autograder.labs import load_module
from sandbox.checkers import Outcome
from sandbox.explore import Counterexample, Passed
from sandbox.faults import Schedule

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "05-concurrency"
INVARIANTS = ("stock_never_negative", "stock_conserved", "orders_backed_by_stock", "no_deadlock_left_unresolved")

lab = load_module(LAB_DIR, "lab", "chaos_dojo_labs.lab05")
MUTANTS = lab.mutants()
ALTERNATIVES = lab.alternatives()
CORRECT = ["solution", *ALTERNATIVES]
STOCK, BACKED, ANSWERED = "stock-never-negative-and-conserved", "orders-backed-by-stock", "no-deadlock-left-unresolved"
#: The partial fixes a learner who half-understood module 05 writes, per step it teaches, with the graded part that
#: catches each (the part that teaches the step).
CLASS: dict[str, dict[str, str]] = {
    "the check and the write are one step, under a lock every replica sees": {
        "in_process_lock": BACKED, "transaction_without_row_lock": STOCK, "check_outside_lock": STOCK},
    "a compare-and-set compares the version that was checked": {"version_read_at_write": STOCK},
    "every path that writes a row takes its lock": {"transfers_read_modify_write": STOCK},
    "never hold a lock across a call to another service": {"lock_held_across_call": ANSWERED},
    "lock waits are bounded, and a lock timeout is answered": {
        "waits_unbounded": ANSWERED, "lock_timeout_unhandled": ANSWERED},
    "a conflict is retried a bounded number of times": {"retries_conflict_forever": ANSWERED},
    "locks in one order, or deadlocks broken and retried": {"transfers_lock_in_request_order": ANSWERED},
}
PART_OF = {f"mutants/{name}": part for step in CLASS.values() for name, part in step.items()}


@pytest.fixture(scope="module")
def generated():
    return lab.load("generated")


@pytest.fixture(scope="module")
def solution():
    return lab.load("solution")


def test_the_lab_declares_its_banks_and_structure():
    """lab.py names its seed bank and sizes, ships mutants, alternatives and adversarial schedules, and its graded
    parts name its invariants."""
    assert lab.LAB == "05-concurrency"
    assert (lab.VISIBLE, lab.HIDDEN) == (5, 30)
    assert len(MUTANTS) >= 3 and len(ALTERNATIVES) >= 2 and len(lab.ADVERSARIAL) >= 3
    assert [i.name.split("(")[0] for i in lab.invariants()] == list(INVARIANTS)
    assert sorted(n for part in lab.PARTS.values() for n in part) == sorted(INVARIANTS)
    assert len(lab.WAREHOUSES) == 3


def test_visible_and_hidden_banks_differ():
    """The self-checks and the grading run disjoint seed banks; a grading secret changes the hidden one."""
    visible = seed_bank(lab.LAB, "visible", lab.VISIBLE)
    hidden = seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    assert not set(visible) & set(hidden)
    assert seed_bank(lab.LAB, "hidden", lab.HIDDEN, secret="s3cret") != hidden


def test_the_nemesis_is_drawn_from_the_seed_and_never_loses_a_request():
    """The same seed gives the same schedule; its faults slow things down or cut lock waits short, and none loses
    a request (so a correct service can answer every client in time)."""
    assert repr(lab.schedules(11)) == repr(lab.schedules(11))
    kinds = {f.action for seed in range(40) for f in lab.schedules(seed)}
    assert kinds == {"delay", "slow", "lock-timeout"}
    assert len({repr(lab.schedules(seed)) for seed in range(40)}) == 40


def test_the_partial_fixes_cover_every_step_the_module_teaches():
    """Every mutant is listed under the step of module 05 it half-understood, and every listed one is shipped."""
    assert sorted(PART_OF) == MUTANTS
    assert set(PART_OF.values()) == set(lab.PARTS)


def test_a_bad_workload_is_refused_with_its_value(solution):
    """build_world says which workload size is wrong and what to give instead."""
    import sandbox

    with pytest.raises(sandbox.InvalidParameterError, match=r"customers=0: use a whole number >= 1"):
        lab.build_world(1, solution.create_app, customers=0)
    with pytest.raises(sandbox.InvalidParameterError, match=r"transfers='6'"):
        lab.build_world(1, solution.create_app, transfers="6")


@pytest.mark.parametrize("name", ["generated", *CORRECT, *MUTANTS])
def test_the_happy_path_passes(name):
    """Works in staging: the happy-path TestClient test passes on every version of the code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lab.happy_path(lab.load(name).create_app)


def test_production_shows_the_race_without_any_fault(generated, solution):
    """The notebook's Production run: the burst alone, no fault, makes the generated code oversell, and the
    counterexample shrinks to a couple of customers; the reference solution passes the same run."""
    found = lab.production(generated.create_app)
    assert isinstance(found, Counterexample)
    assert found.invariant.split("(")[0] in ("stock_never_negative", "stock_conserved")
    assert list(found.schedule) == []
    assert found.workload["customers"] < 6 or found.workload["orders"] < 4
    assert isinstance(lab.production(solution.create_app), Passed)


def test_the_generated_code_fails_the_visible_self_check(generated):
    """The self-check the learner runs finds the race in the assistant's code: stock below zero or not conserved."""
    found = lab.check(generated.create_app, "visible", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant.split("(")[0] in ("stock_never_negative", "stock_conserved")
    assert found.seed in seed_bank(lab.LAB, "visible", lab.VISIBLE)


@pytest.mark.parametrize("name", CORRECT)
def test_the_correct_fixes_pass_the_hidden_bank_and_every_adversarial_schedule(name):
    """The reference solution and each correct alternative pass every seed of the hidden bank and every adversarial
    schedule, with no undecided run (the benchmark sweeps thousands of seeds)."""
    result = lab.check(lab.load(name).create_app, "hidden", shrink=False)
    assert isinstance(result, Passed), str(result)
    assert result.ok, result.undecided
    assert result.runs == lab.HIDDEN + len(lab.ADVERSARIAL)


def test_the_solution_passes_the_visible_self_check(solution):
    """Honest work passes the self-check (other grading secrets: benchmarks/sweep_labs.py)."""
    result = lab.check(solution.create_app, "visible", shrink=False)
    assert isinstance(result, Passed) and result.ok, str(result)


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_the_part_that_teaches_its_step(name):
    """Each partial fix fails, on the hidden bank, the graded part of the step it got wrong."""
    found = lab.check(lab.load(name).create_app, "hidden", shrink=False, only=lab.PARTS[PART_OF[name]])
    assert isinstance(found, Counterexample), f"{name} passed part {PART_OF[name]}"


def _run(name: str, seed: int, schedule: Schedule, *, rebalancers: bool = True, stocktake: bool = True, **workload):
    scenario = lab.scenario(lab.load(name).create_app, rebalancers=rebalancers, stocktake=stocktake)
    return scenario.run(seed, schedule, **workload)


def _verdict(run, invariant: str):
    (verdict,) = [v for v in run.check(lab.invariants()) if v.invariant.startswith(invariant)]
    return verdict


def test_a_slow_fraud_service_catches_a_lock_held_across_the_call():
    """With no stock-take and no transfer, only the fraud service answering late: the lock held across the call
    leaves customers waiting past their patience; the reference, which asks fraud before locking, answers them all."""
    slow_fraud = lab.ADVERSARIAL[0]
    assert [f.target for f in slow_fraud] == [(lab.FRAUD,)]
    seed = seed_bank(lab.LAB, "visible", 1)[0]
    held = _run("mutants/lock_held_across_call", seed, slow_fraud, rebalancers=False, stocktake=False)
    assert _verdict(held, "no_deadlock").outcome is Outcome.FAIL
    assert "got no answer within 2s" in _verdict(held, "no_deadlock").summary
    fine = _run("solution", seed, slow_fraud, rebalancers=False, stocktake=False)
    assert all(v.outcome is Outcome.PASS for v in fine.check(lab.invariants()))


def test_transfers_in_opposite_directions_deadlock_and_the_evidence_says_so():
    """Locks taken in request order deadlock two rebalancers, with no fault at all: the verdict names the deadlock
    the database saw; the same locks with bounded waits (alternative deadlock_retry) deadlock too, but resolve it."""
    seed = seed_bank(lab.LAB, "visible", 1)[0]
    stuck = _run("mutants/transfers_lock_in_request_order", seed, Schedule([]), customers=1, orders=1, stocktake=False)
    verdict = _verdict(stuck, "no_deadlock")
    assert verdict.outcome is Outcome.FAIL and "deadlock" in verdict.summary
    assert any("waits for" in str(e) and "a deadlock" in str(e) for e in verdict.evidence)
    broken = _run("alternatives/deadlock_retry", seed, Schedule([]), customers=1, orders=1, stocktake=False)
    assert lab.deadlocks(broken.world)
    assert _verdict(broken, "no_deadlock").outcome is Outcome.PASS
    ordered = _run("solution", seed, Schedule([]), customers=1, orders=1, stocktake=False)
    assert lab.deadlocks(ordered.world) == []


def test_the_stock_take_catches_a_conflict_retried_for_ever(solution):
    """The stock-take holds a warehouse's rows for 2.5 s: the reference answers 503 within the client's patience
    (and the clients retry), the retry-for-ever mutant keeps its clients waiting."""
    seed = seed_bank(lab.LAB, "visible", 1)[0]
    fine = _run("solution", seed, Schedule([]))
    assert _verdict(fine, "no_deadlock").outcome is Outcome.PASS
    statuses = [a["status"] for op in fine.world.history if op.type != "invoke" and op.f in ("order", "transfer")
                for a in op.value["answers"]]
    assert 503 in statuses
    forever = _run("mutants/retries_conflict_forever", seed, Schedule([]))
    assert _verdict(forever, "no_deadlock").outcome is Outcome.FAIL


def test_the_check_is_deterministic(generated):
    """The same code and bank give the same counterexample: seed, schedule, workload and fingerprint."""
    a = lab.check(generated.create_app, "visible", shrink=False, workers=1)
    b = lab.check(generated.create_app, "visible", shrink=False, workers=1)
    assert (a.seed, repr(a.schedule), a.workload, a.fingerprint) == (b.seed, repr(b.schedule), b.workload, b.fingerprint)


def test_the_lab_invariants_are_unknown_when_nothing_was_answered_or_confirmed(solution):
    """Neither of the lab's own invariants passes a run in which no client got an answer."""
    from sandbox.faults import Partition

    cut = Schedule([Partition(lab.SERVICE, None, start=0.0, duration=30.0)])
    run = lab.scenario(solution.create_app, rebalancers=False).run(3, cut, customers=1, orders=1)
    assert lab.OrdersBackedByStock()(run.world).outcome is Outcome.UNKNOWN
    assert lab.NoDeadlockLeftUnresolved()(run.world).outcome is Outcome.FAIL  # a timeout is no answer
