"""Lab 01 (CAP): the flawed code passes staging and fails grading; each declared choice is checked for what it promises."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import sandbox
from autograder import seed_bank
from autograder.labs import load_module
from sandbox.checkers import Outcome
from sandbox.explore import Counterexample, Passed, explore
from sandbox.faults import (
    DiskLoss,
    Duplicate,
    Kill,
    Partition,
    Reorder,
    Schedule,
    SplitHalves,
)

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "01-cap"
SOLUTIONS = ("solution_cp", "solution_ap")
INVARIANTS = {"CP": ("linearizable", "majority_available", "no_lost_writes"),
              "AP": ("available", "counted_once", "converged")}


lab = load_module(LAB_DIR, "lab", "chaos_dojo_labs.lab01")
MUTANTS = lab.mutants()
ALTERNATIVES = lab.alternatives()
CORRECT = (*SOLUTIONS, *ALTERNATIVES)

#: Each partial fix a learner who half-understood module 01 would write, by the step it misses, and the
#: invariant (of the graded part that teaches that step) that must catch it.
STEPS = {
    # CP: route through one leader
    "mutants/cp_local_reads": "linearizable",
    # CP: acknowledge once a majority stored it (not one disk, not every replica)
    "mutants/cp_ack_after_own_disk": "no_lost_writes",
    "mutants/cp_all_acks": "majority_available",
    # CP: refuse rather than guess, and only where no majority is reachable
    "mutants/cp_minority_writes": "linearizable",
    "mutants/cp_refuse_everything": "majority_available",
    # CP: a definite refusal (503) only when nothing was applied anywhere
    "mutants/cp_refuse_but_keep": "no_lost_writes",
    "mutants/cp_timeout_as_refusal": "no_lost_writes",
    # CP: recover a lost disk from the others (the leader: from all of them)
    "mutants/cp_no_recovery": "no_lost_writes",
    "mutants/cp_recover_from_one": "no_lost_writes",
    # AP: answer locally
    "mutants/ap_refuses_alone": "available",
    # AP: a state that merges (counted once however often it arrives)
    "mutants/ap_lww": "counted_once",
    "mutants/ap_deltas_resent": "counted_once",
    # AP: resend until every replica has it
    "mutants/ap_no_retry": "converged",
}


def _happy(create_app) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lab.happy_path(create_app)


def _run(name: str, seed: int, schedule: Schedule | None = None, **workload):
    return lab.scenario(lab.load(name).create_app).run(seed, schedule, **workload)


def _verdicts(name: str, run) -> dict[str, Outcome]:
    create_app = lab.load(name).create_app
    checks = lab.invariants(lab.cap_choice(create_app), primary=lab.primary(create_app))
    return {v.invariant.split("(")[0]: v.outcome for v in run.check(checks)}


# --- the lab's shape ---------------------------------------------------------------------


def test_the_lab_declares_its_banks_and_structure():
    """lab.py names its seed bank and sizes, its mutants and alternatives, its adversarial schedules, and checks by
    choice."""
    assert lab.LAB == "01-cap"
    assert (lab.VISIBLE, lab.HIDDEN) == (5, 30)
    assert set(STEPS) == set(MUTANTS), "every mutant names the step it misses (STEPS)"
    assert len(lab.ADVERSARIAL) >= 4
    for choice, names in INVARIANTS.items():
        assert tuple(i.name.split("(")[0] for i in lab.invariants(choice)) == names
        assert len(lab.adversarial(choice)) > len(lab.ADVERSARIAL)


def test_there_are_correct_alternatives_for_each_choice_unlike_the_references():
    """At least two correct alternatives ship in alternatives/, at least one per CAP choice."""
    assert len(ALTERNATIVES) >= 2
    choices = {lab.cap_choice(lab.load(name).create_app) for name in ALTERNATIVES}
    assert choices == {"CP", "AP"}


def test_visible_and_hidden_banks_differ():
    """The self-checks and the grading run disjoint seed banks; a grading secret changes the hidden one."""
    visible = seed_bank(lab.LAB, "visible", lab.VISIBLE)
    hidden = seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    assert not set(visible) & set(hidden)
    assert seed_bank(lab.LAB, "hidden", lab.HIDDEN, secret="s3cret") != hidden


def test_the_nemesis_is_drawn_from_the_seed_and_spares_the_clients():
    """The same seed gives the same schedule; partitions, loss and delay cut only links between replicas."""
    assert repr(lab.schedules(11)) == repr(lab.schedules(11))
    faults = [f for seed in range(40) for f in lab.schedules(seed)]
    assert {f.action for f in faults} == {"partition", "halves", "loss", "delay", "kill"}
    for choice in (None, "CP", "AP"):
        for f in (f for seed in range(40) for f in lab.schedules(seed, choice)):
            assert set(f.target) <= set(lab.REPLICAS)
            if f.family == "NetworkChaos" and f.action != "halves":
                assert f.peer is not None and set(f.peer) <= set(lab.REPLICAS)


def test_each_choice_meets_the_faults_aimed_at_its_promise():
    """CP's nemesis adds a lost disk (at most one per run, the rest as kills); AP's adds duplicated and reordered
    messages; neither meets the other's (CP is not sent duplicate requests, AP loses no disk)."""
    cp = [list(lab.schedules(seed, "CP")) for seed in range(60)]
    ap = [f for seed in range(60) for f in lab.schedules(seed, "AP")]
    assert any(isinstance(f, DiskLoss) for s in cp for f in s)
    assert all(sum(isinstance(f, DiskLoss) for f in s) <= 1 for s in cp)
    assert not any(f.action in ("duplicate", "reorder") for s in cp for f in s)
    assert {"duplicate", "reorder"} <= {f.action for f in ap} and "disk-loss" not in {f.action for f in ap}
    lost = {f.target[0] for s in lab.adversarial("CP") for f in s if isinstance(f, DiskLoss)}
    assert lost == set(lab.REPLICAS), "every replica loses its disk in some adversarial schedule"
    with pytest.raises(sandbox.InvalidParameterError, match="choice='CA'"):
        lab.schedules(1, "CA")


def test_the_declared_choice_is_read_from_the_module():
    """CAP_CHOICE comes from the module of create_app; a missing or invalid one is a clear ConfigError."""
    assert lab.cap_choice(lab.load("generated").create_app) == "CP"
    assert lab.cap_choice(lab.load("solution_ap").create_app) == "AP"
    module = lab.load("solution_cp")
    module.CAP_CHOICE = "both"
    with pytest.raises(sandbox.ConfigError, match="CAP_CHOICE='both'"):
        lab.check(module.create_app)
    del module.CAP_CHOICE
    with pytest.raises(sandbox.ConfigError, match='CAP_CHOICE = "CP"'):
        lab.cap_choice(module.create_app)


def test_the_declared_primary_is_read_from_the_module():
    """PRIMARY comes from the module of create_app (None if absent); one that is not a replica is a ConfigError."""
    assert lab.primary(lab.load("solution_cp").create_app) == "inventory-0"
    assert lab.primary(lab.load("generated").create_app) is None
    module = lab.load("solution_cp")
    module.PRIMARY = "inventory-9"
    with pytest.raises(sandbox.ConfigError, match="PRIMARY='inventory-9'.*inventory-0"):
        lab.check(module.create_app)


@pytest.mark.parametrize("name", ["generated", *CORRECT, *MUTANTS])
def test_the_happy_path_passes(name):
    """Works in staging: the happy-path TestClient test passes on every version of the code."""
    _happy(lab.load(name).create_app)


# --- the workload and the checkers ---------------------------------------------------------


def test_a_503_is_a_definite_failure_and_the_clerk_tries_it_again():
    """An adjustment answered 503 is recorded as fail (not applied) and tried again with the same delta; a 504 is
    recorded as info (unknown)."""
    run = _run("mutants/cp_refuse_everything", 2)
    pairs = [(i, d) for i, d in run.world.history.pairs() if i.f == "adjust"]
    assert pairs and all(d.type == "fail" and d.value["status"] == 503 for _, d in pairs)
    by_client: dict[str, list] = {}
    for i, _ in pairs:
        by_client.setdefault(i.process, []).append(i)
    retried = [(a, b) for ops in by_client.values() for a, b in zip(ops, ops[1:])
               if b.value["delta"] == a.value["delta"] and lab.CLERK_BACKOFF <= b.time - a.time]
    assert retried, "no 503 was tried again"
    run = _run("solution_cp", 2, Schedule([Partition("inventory-0", ["inventory-1", "inventory-2"], start=0.0,
                                                     duration=2.0)]))
    statuses = {d.value["status"]: d.type for i, d in run.world.history.pairs() if i.f == "adjust" and d.type != "ok"}
    assert statuses.get(504) == "info"


def test_the_audit_comes_after_every_client_finished():
    """The auditor reads only once every client is done (a write acknowledged after the audit once failed the
    CP reference under a grading secret: seed 332403706, the replicas split in two)."""
    run = _run("solution_cp", 332403706, Schedule([SplitHalves(list(lab.REPLICAS), start=0.1, duration=1.8)]))
    last_client = max(op.time for op in run.world.history if op.process != "auditor")
    first_audit = min(op.time for op in run.world.history if op.f == "audit")
    assert first_audit >= last_client + lab.QUIET
    assert set(_verdicts("solution_cp", run).values()) == {Outcome.PASS}


def test_no_lost_writes_and_converged_never_pass_a_run_with_no_acknowledged_write():
    """Refusing every write keeps none: no_lost_writes (and converged) answer UNKNOWN, never PASS; the majority
    availability check fails it."""
    run = _run("mutants/cp_refuse_everything", 4)
    assert lab.no_lost_writes()(run.world).outcome is Outcome.UNKNOWN
    assert lab.converged()(run.world).outcome is Outcome.UNKNOWN
    verdict = lab.majority_available()(run.world)
    assert verdict.outcome is Outcome.FAIL
    assert "refuse only where no majority is reachable" in verdict.summary
    assert 'PRIMARY = "inventory-0"' in verdict.summary  # no primary declared: the message says how


def test_a_fixed_primary_may_refuse_only_when_cut_off_from_the_majority():
    """With PRIMARY declared, a majority without the primary may refuse; without it, every connected majority owes
    answers, so the reference's refusals while inventory-0 is cut off fail."""
    run = _run("solution_cp", 5, Schedule([Partition("inventory-0", ["inventory-1", "inventory-2"], start=0.3,
                                                     duration=1.5)]))
    assert lab.majority_available()(run.world).outcome is Outcome.PASS  # declared: PRIMARY = "inventory-0"
    assert lab.majority_available(primary="inventory-0")(run.world).outcome is Outcome.PASS
    undeclared = lab.majority_available(primary=None)(run.world)
    assert undeclared.outcome is Outcome.FAIL
    assert "(a majority) were up and connected" in undeclared.summary and "inventory-0 (a majority)" not in \
        undeclared.summary


def test_a_fault_in_the_first_moments_may_delay_the_first_answers():
    """A CP replica that starts empty may first learn from every other one; a follower killed 2 ms into the run stops
    that until it is back, and a connected majority owes answers only from then on (a 1,000-seed sweep found three
    such seeds failing the reference when the check allowed a fixed 0.1 s at the start)."""
    schedule = Schedule([Kill("inventory-1", start=0.002, restart_after=0.207),
                         SplitHalves(list(lab.REPLICAS), start=1.252, duration=0.514),
                         Partition("inventory-2", ["inventory-0", "inventory-1"], start=1.682, duration=0.649)])
    run = _run("solution_cp", 832, schedule)
    assert any(d.value["status"] == 503 and d.time < 0.3 for i, d in run.world.history.pairs() if i.f == "adjust")
    assert set(_verdicts("solution_cp", run).values()) == {Outcome.PASS}


def test_a_leader_that_lost_its_disk_may_wait_for_every_other_replica():
    """A leader back with an empty disk must hear from every other replica before it serves; if one is killed before
    it could, a connected majority still owes nothing (the operation-log alternative failed under a grading secret
    when the check allowed a calm moment of 0.1 s for that)."""
    schedule = Schedule([DiskLoss("inventory-0", start=0.248, restart_after=0.672),
                         SplitHalves(list(lab.REPLICAS), start=0.394, duration=0.967),
                         Kill("inventory-1", start=1.507, restart_after=0.497)])
    run = _run("alternatives/cp_oplog", 100238853, schedule)
    assert set(_verdicts("alternatives/cp_oplog", run).values()) == {Outcome.PASS}


def test_an_adjustment_sent_to_a_replica_that_was_down_did_not_happen():
    """A request to a crashed replica is recorded as unknown by the client, but no replica ever saw it: the checks
    count it as not applied, so it cannot hide a lost write."""
    run = _run("solution_cp", 6, Schedule([Kill("inventory-1", start=0.0, restart_after=2.0)]))
    unreached = lab._unreached(run.world)
    to_dead = [d for i, d in run.world.history.pairs()
               if i.f == "adjust" and i.value["replica"] == "inventory-1" and i.time < 1.9 and d.type == "info"]
    assert to_dead and {d.index for d in to_dead} <= unreached


def test_counted_once_judges_only_runs_where_no_message_was_lost():
    """counted_once() judges a run with duplicated and reordered messages, and passes without judging one with
    losses."""
    dup = Schedule([Duplicate("inventory-0", peer=["inventory-1", "inventory-2"], probability=0.5, start=0.0,
                              duration=2.0),
                    Reorder("inventory-1", peer=["inventory-0", "inventory-2"], probability=0.5, start=0.0,
                            duration=2.0)])
    judged = lab.counted_once()(_run("generated", 3, dup).world)
    assert judged.outcome is Outcome.FAIL and "no message between replicas was lost" in judged.summary
    lossy = Schedule([Partition("inventory-2", ["inventory-0", "inventory-1"], start=0.2, duration=1.0)])
    assert "not judged" in lab.counted_once()(_run("generated", 3, lossy).world).summary


def test_availability_is_unknown_when_no_client_can_reach_a_replica():
    """available() does not blame the service for a network that cut the clients off, nor pass a run with no answer."""
    create_app = lab.load("solution_ap").create_app
    schedule = Schedule([Partition("inventory", None, start=0.0, duration=8.0)])
    run = lab.scenario(create_app).run(3, schedule, clients=1, requests=1)
    assert lab.available()(run.world).outcome is Outcome.UNKNOWN
    assert "no request got an answer" in lab.available()(run.world).summary


# --- correct fixes pass ----------------------------------------------------------------------


@pytest.mark.parametrize("name", CORRECT)
def test_a_calm_run_of_each_correct_fix_keeps_its_promises(name):
    """Without faults each correct fix keeps what its choice promises, and the clients read and adjusted."""
    run = _run(name, 1)
    assert set(_verdicts(name, run).values()) == {Outcome.PASS}
    assert {op.f for op in run.world.history if op.type == "ok"} == {"read", "adjust", "audit"}


@pytest.mark.parametrize("bank", ["visible", "hidden"])
@pytest.mark.parametrize("name", CORRECT)
def test_each_correct_fix_passes_every_seed_and_schedule(name, bank):
    """Each reference solution and alternative passes every seed of the bank and every adversarial schedule of its
    choice, with no undecided run."""
    create_app = lab.load(name).create_app
    result = lab.check(create_app, bank, shrink=False)
    assert isinstance(result, Passed), str(result)
    assert result.ok, result.undecided
    size = lab.VISIBLE if bank == "visible" else lab.HIDDEN
    assert result.runs == size + len(lab.adversarial(lab.cap_choice(create_app)))


@pytest.mark.parametrize(("name", "secret"), [("solution_cp", "s10"), ("solution_cp", "s13"), ("solution_ap", "s3")])
def test_the_references_pass_under_other_grading_secrets(name, secret):
    """Honest work gets full marks whatever the grading secret: the hidden bank drawn from another secret (s10 and
    s13 failed the CP reference while the audit could start before every clerk had finished; the benchmark sweeps
    fifty secrets)."""
    result = lab.check(lab.load(name).create_app, "hidden", secret=secret, shrink=False)
    assert isinstance(result, Passed) and result.ok, f"secret {secret!r}: {result}"


@pytest.mark.parametrize("name", SOLUTIONS)
def test_each_reference_passes_a_sweep_of_the_nemesis(name):
    """A small sweep: each reference passes its choice's nemesis on 30 more seeds (the long sweeps are benchmarks)."""
    create_app = lab.load(name).create_app
    choice = lab.cap_choice(create_app)
    result = explore(lab.scenario(create_app), lab.invariants(choice), seeds=range(1000, 1030),
                     schedules=lab.schedules_for(choice), shrink=False)
    assert isinstance(result, Passed) and result.ok, str(result)


# --- wrong fixes fail ----------------------------------------------------------------------


def test_the_generated_code_fails_the_hidden_checks():
    """The assistant's code declares CP and reads stale data: the hidden checks find it not linearizable."""
    found = lab.check(lab.load("generated").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant.startswith("linearizable")
    assert "explains it" in found.verdict.summary
    assert found.seed in seed_bank(lab.LAB, "hidden", lab.HIDDEN)


@pytest.mark.parametrize("choice", ["CP", "AP"])
@pytest.mark.parametrize("part", ["during", "after"])
def test_the_generated_code_earns_nothing_whichever_choice_it_declares(choice, part):
    """Declaring CP or AP without the steps that choice needs fails both graded parts (AP: duplicated messages are
    counted twice, lost ones never resent)."""
    found = lab.check(lab.load("generated").create_app, "hidden", choice=choice, shrink=False,
                      only=lab.PROMISES[choice][part])
    assert isinstance(found, Counterexample) or not found.ok


@pytest.mark.parametrize("name", MUTANTS)
def test_every_partial_fix_is_caught_by_the_part_that_teaches_its_step(name):
    """Each partial fix fails, in the hidden checks, the invariant of the step it misses (STEPS)."""
    create_app = lab.load(name).create_app
    found = lab.check(create_app, "hidden", shrink=False, only=(STEPS[name],))
    assert isinstance(found, Counterexample) or not found.ok, f"{name} passed {STEPS[name]}"
    assert STEPS[name] in lab.PROMISES[lab.cap_choice(create_app)]["during"] + \
        lab.PROMISES[lab.cap_choice(create_app)]["after"]


@pytest.mark.parametrize(("name", "part"), [("mutants/ap_no_retry", "during"), ("mutants/cp_all_acks", "after")])
def test_a_half_fix_earns_the_part_whose_step_it_took(name, part):
    """A learner who took one step of the two gets that part's points: a PN-counter sent once still counts each
    adjustment once; waiting for every replica still loses no acknowledged write."""
    result = lab.check(lab.load(name).create_app, "visible", shrink=False,
                       only=lab.PROMISES[lab.cap_choice(lab.load(name).create_app)][part])
    assert isinstance(result, Passed) and result.ok, str(result)


def test_a_correct_ap_solution_declared_cp_fails():
    """The grader checks the declaration: the PN-counter, declared CP, is found not linearizable."""
    found = lab.check(lab.load("solution_ap").create_app, "visible", choice="CP", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant.split("(")[0] in INVARIANTS["CP"]


def test_a_correct_cp_solution_declared_ap_fails_availability():
    """The leader-and-majority solution, declared AP, refuses service on the minority side: not available."""
    found = lab.check(lab.load("solution_cp").create_app, "visible", choice="AP", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant.startswith("available")
    assert "refused service" in found.verdict.summary


def test_the_check_is_deterministic():
    """The same code and bank give the same counterexample: seed, schedule, workload and fingerprint."""
    create_app = lab.load("generated").create_app
    a = lab.check(create_app, "visible", shrink=False)
    b = lab.check(create_app, "visible", shrink=False)
    assert (a.seed, repr(a.schedule), a.workload, a.fingerprint) == (b.seed, repr(b.schedule), b.workload, b.fingerprint)


# --- grading ----------------------------------------------------------------------------------


def test_promise_names_the_invariants_each_declared_choice_owes_per_graded_part():
    """lab.promise maps the declared choice and a graded part ("during", "after") to that choice's invariants."""
    for name, choice in (("generated", "CP"), ("solution_cp", "CP"), ("solution_ap", "AP")):
        create_app = lab.load(name).create_app
        parts = lab.promise(create_app, "during") + lab.promise(create_app, "after")
        assert parts == INVARIANTS[choice]
    with pytest.raises(sandbox.InvalidParameterError, match="part='before'"):
        lab.promise(lab.load("generated").create_app, "before")


def test_a_grade_cell_takes_the_promise_as_it_is(capsys):
    """lab.grade(create_app, lab.promise(create_app, part)) is the grade cell: it accepts the tuple of names and
    fails the generated code with its counterexample."""
    create_app = lab.load("generated").create_app
    with pytest.raises(AssertionError, match="linearizable"):
        lab.grade(create_app, lab.promise(create_app, "during"))
    with pytest.raises(sandbox.UnknownNameError):
        lab.grade(create_app, ("linearizable", "no_such_check"))


def test_the_generated_code_marks_its_fix_regions():
    """generated.py marks three fix regions, each opened and closed once, the first holding CAP_CHOICE."""
    text = (LAB_DIR / "generated.py").read_text()
    for n in (1, 2, 3):
        assert text.count(f"# --- FIX REGION {n}:") == 1 and text.count(f"# --- END FIX REGION {n} ---") == 1
    region1 = text.split("# --- FIX REGION 1:")[1].split("# --- END FIX REGION 1 ---")[0]
    assert 'CAP_CHOICE = "CP"' in region1
