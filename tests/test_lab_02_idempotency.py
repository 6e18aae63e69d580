"""Lab 02 (idempotency): the flawed code passes staging and fails grading; the fix passes everything."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from autograder import seed_bank
from autograder.labs import load_module
from sandbox.checkers import Outcome
from sandbox.explore import Counterexample, Passed, explore
from sandbox.history import History

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "02-idempotency"
INVARIANTS = ("exactly_once", "no_double_charge", "idempotency_semantics")

lab = load_module(LAB_DIR, "lab", "chaos_dojo_labs.lab02")
MUTANTS = lab.mutants()
ALTERNATIVES = lab.alternatives()
CORRECT = ["solution", *ALTERNATIVES]
#: The partial fixes a learner who half-understood module 02 writes, one or more per step it teaches.
CLASS = {
    "the key is required (400)": ["key_optional"],
    "the keys live in the database, not in memory": ["memory_keys"],
    "the key is claimed atomically, before the charge": ["check_then_insert", "claim_with_put"],
    "the response is stored with the charge and replayed": ["duplicate_is_409", "mark_done_separately"],
    "409 while in flight": ["in_flight_202"],
    "a lost answer is not 'nothing happened'": ["release_claim_on_error"],
    "422 on a changed payload, by a fingerprint every replica computes alike": [
        "no_payload_check", "partial_fingerprint", "fingerprint_with_hash"],
    "the claim is a lease, fenced": ["claim_forever", "lease_without_fencing"],
    "the consumer deduplicates by the business id, in the effect's transaction": [
        "http_only", "dedupe_by_offset", "consumer_check_then_charge", "consumer_marks_before_charging"],
}


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
    assert len(MUTANTS) >= 3 and len(ALTERNATIVES) >= 2
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
    assert kinds <= {"delay", "loss", "duplicate", "kill", "timeout", "rebalance", "redelivery"}
    assert {"kill", "timeout", "redelivery"} <= kinds


def test_every_schedule_has_one_fault_between_the_billing_job_and_billing():
    """Each nemesis schedule holds one fault on billing's links (drawn from the seed, while the billing job works),
    besides three on payments, payments-db and the consumer group."""
    for seed in range(40):
        schedule = lab.schedules(seed)
        billing = [f for f in schedule if f.target == ("billing",)]
        assert billing == [lab.billing_fault(seed)] and len(schedule) == 4
        assert billing[0].action in lab.BILLING_KINDS and billing[0].start < 1.0
    assert len({repr(lab.billing_fault(seed)) for seed in range(40)}) == 40


def test_the_partial_fixes_cover_every_step_the_module_teaches():
    """Every mutant is listed under the step of module 02 it half-understood, and every listed one is shipped."""
    listed = sorted(f"mutants/{name}" for names in CLASS.values() for name in names)
    assert listed == MUTANTS


@pytest.mark.parametrize("name", ["generated", *CORRECT, *MUTANTS])
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
    assert found.invariant.split("(")[0] in ("exactly_once", "no_double_charge")
    assert re.search(r"(charged|took effect) (twice|\d+ times)", found.verdict.summary), found.verdict.summary
    assert found.seed in seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    part_a = lab.check(generated.create_app, "hidden", only=("no_double_charge",))
    assert isinstance(part_a, Counterexample) and re.search(r"charged (twice|\d+ times)", part_a.verdict.summary)


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
@pytest.mark.parametrize("name", CORRECT)
def test_the_correct_fixes_pass_every_seed_and_schedule(name, bank):
    """The reference solution and each correct alternative pass every seed of the bank and every adversarial
    schedule, with no undecided run."""
    result = lab.check(lab.load(name).create_app, bank, shrink=False)
    assert isinstance(result, Passed), str(result)
    assert result.ok, result.undecided
    size = lab.VISIBLE if bank == "visible" else lab.HIDDEN
    assert result.runs == size + len(lab.ADVERSARIAL)


@pytest.mark.parametrize(("name", "secrets"), [("solution", ("s1", "s5", "s12")), *((a, ("s3",)) for a in ALTERNATIVES)])
def test_the_correct_fixes_pass_under_other_grading_secrets(name, secrets):
    """Honest work gets full marks whatever the grading secret: each correct fix passes the hidden bank drawn from
    other secrets (the benchmark sweeps fifty)."""
    create_app = lab.load(name).create_app
    for secret in secrets:
        result = lab.check(create_app, "hidden", secret=secret, shrink=False)
        assert isinstance(result, Passed) and result.ok, f"secret {secret!r}: {result}"


@pytest.mark.parametrize(("name", "seeds"), [("solution", range(150)), *((a, range(150, 200)) for a in ALTERNATIVES)])
def test_the_correct_fixes_pass_a_sweep_of_nemesis_seeds(name, seeds):
    """No seed of a sweep breaks a correct fix (each seed under its nemesis schedule: the benchmark runs 5,000)."""
    found = explore(lab.scenario(lab.load(name).create_app), lab.invariants(), seeds=seeds, schedules=lab.schedules,
                    shrink=False, workers=1)
    assert not found.found, str(found)
    assert found.ok, found.undecided


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
    schedule = Schedule([Partition("payments", None, start=0.0, duration=30.0)])  # the app's resend too
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
    # each attempt, the changed amount, and the app's resend seconds later
    assert f"charged {len(timeouts) + 3} times" in found.verdict.summary
    assert [f.action for f in found.schedule] == ["delay"]
    assert isinstance(lab.production(solution.create_app), Passed)


# --- the holes of issue 9, each with what now catches it ------------------------------------------------------


def _adversarial(what: str):
    (schedule,) = [s for s in lab.ADVERSARIAL if what in repr(s)]
    return schedule


def _run(name: str, seed: int, schedule=None):
    return lab.scenario(lab.load(name).create_app).run(seed, schedule)


def _verdict(run, invariant: str):
    (verdict,) = [v for v in run.check(lab.invariants()) if v.invariant.startswith(invariant)]
    return verdict


def test_billing_publishes_a_request_twice_and_only_the_offset_consumer_charges_it_twice():
    """A late answer makes the billing job ask again, and billing publishes one payment request twice, at two offsets;
    exactly_once counts them as one message (by the payment's business id, not its place in the log): the reference
    charges it once, the consumer that deduplicates by topic/partition/offset (mutant dedupe_by_offset) twice."""
    schedule = _adversarial("Delay('billing'")
    seed = seed_bank(lab.LAB, "hidden", 1)[0]
    reference = _run("solution", seed, schedule)
    offsets: dict[str, list[int]] = {}
    for message in reference.world.broker.messages(lab.TOPIC):
        offsets.setdefault(message.value["payment_id"], []).append(message.offset)
    twice = [places for places in offsets.values() if len(places) > 1]
    assert twice and all(len(set(places)) == len(places) for places in twice)
    assert _verdict(reference, "exactly_once").outcome is Outcome.PASS
    wrong = _run("mutants/dedupe_by_offset", seed, schedule)
    verdict = _verdict(wrong, "exactly_once")
    assert verdict.outcome is Outcome.FAIL and re.search(r"took effect (twice|\d+ times)", verdict.summary), str(verdict)
    assert "," in verdict.summary.split("sent as ")[1].split(";")[0]  # two places in the log, one message
    assert _verdict(wrong, "no_double_charge").outcome is Outcome.FAIL


def test_the_nemesis_makes_billing_publish_twice_in_many_runs():
    """Without any adversarial schedule, the nemesis's billing fault makes billing publish one payment request twice
    in a good share of the hidden bank's runs (what lets the bank, not only one schedule, catch an offset consumer)."""
    seeds = seed_bank(lab.LAB, "hidden", 12)
    twice = 0
    for seed in seeds:
        world = _run("solution", seed, lab.schedules(seed)).world
        ids = [m.value["payment_id"] for m in world.broker.messages(lab.TOPIC)]
        twice += len(ids) > len(set(ids))
    assert twice >= len(seeds) // 3, f"{twice} of {len(seeds)} runs published a payment request twice"


def test_a_fingerprint_made_with_hash_gets_422_when_a_retry_reaches_another_replica():
    """Python's hash() is salted per process, and per replica incarnation in the sandbox: the fingerprint_with_hash
    mutant tells a retry, a double-click's twin or the app's resend that reaches another replica (or a restarted one)
    than the one that claimed the key that its own payload is a different payment (422), on every seed tried."""
    create_app = lab.load("mutants/fingerprint_with_hash").create_app
    for seed in seed_bank(lab.LAB, "hidden", 8):
        verdict = lab.idempotency_semantics()(lab.scenario(create_app).run(seed, lab.schedules(seed)).world)
        assert verdict.outcome is Outcome.FAIL, f"seed {seed}: {verdict}"
        assert "got 422, expected 201 or 409" in verdict.summary, str(verdict)


def test_lost_database_answers_catch_a_claim_released_on_error():
    """payments-db loses the answers of statements that took effect (the StorageTimeout schedule): the mutant that
    deletes its claim on any error deletes the key of a payment it did charge, and the app's resend, seconds later,
    is charged again; the reference passes the same run."""
    schedule = _adversarial("StorageTimeout")
    seed = seed_bank(lab.LAB, "hidden", 1)[0]
    reference = _run("solution", seed, schedule)
    assert any(e[1] == "db.stalled" for e in reference.world.recorder.log)
    assert all(v.outcome is Outcome.PASS for v in reference.check(lab.invariants()))
    wrong = _run("mutants/release_claim_on_error", seed, schedule)
    verdict = _verdict(wrong, "no_double_charge")
    assert verdict.outcome is Outcome.FAIL, str(verdict)
    late = float(verdict.summary.split(" + ")[-1].split("t=")[1].split()[0].rstrip(")"))
    assert late > lab.RESEND_AFTER  # the second charge is the resend's
    assert "two different successful responses" in _verdict(wrong, "idempotency_semantics").summary


@pytest.mark.parametrize("name", ["dedupe_by_offset", "release_claim_on_error", "fingerprint_with_hash"])
def test_the_nemesis_alone_catches_the_holes_of_issue_9(name):
    """Not only a hand-written schedule: the hidden bank's nemesis schedules catch each of these partial fixes."""
    seeds = seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    found = explore(lab.scenario(lab.load(f"mutants/{name}").create_app), lab.invariants(), seeds=seeds,
                    schedules=lab.schedules, shrink=False, workers=1)
    assert found.found, f"{name} passed every nemesis seed of the hidden bank"


def _world_of(ops: list[dict]) -> SimpleNamespace:
    return SimpleNamespace(history=History.from_ops(ops))


def _payment(f: str, t: float, kind: str, statuses: list) -> list[dict]:
    key = "k-1"
    answers = [{"status": s, "body": {"id": "pay-1"} if s == 201 else {"detail": "..."}} for s in statuses]
    return [{"process": "shopper-0", "type": "invoke", "f": f, "value": {"key": key}, "time": t},
            {"process": "shopper-0", "type": kind, "f": f, "value": {"key": key, "answers": answers}, "time": t + 4}]


def test_a_shopper_giving_up_on_409_fails_only_if_the_key_never_completes():
    """A payment whose shopper gave up hearing 409 (its first request's answer lost, the lease not yet run out) is no
    failure when the app's resend, after every fault healed, gets the stored response; it is one when the resend
    still hears 409 until it gives up: then nothing will ever finish that payment."""
    check = lab.idempotency_semantics()
    recovered = _payment("pay", 0.0, "info", [None, 409, 409]) + _payment("pay-again", 10.0, "ok", [201])
    assert check(_world_of(recovered)).outcome is Outcome.PASS
    stuck = _payment("pay", 0.0, "info", [None, 409, 409]) + _payment("pay-again", 10.0, "info", [409, 409])
    verdict = check(_world_of(stuck))
    assert verdict.outcome is Outcome.FAIL and "pay-again" in verdict.summary and "in flight" in verdict.summary
