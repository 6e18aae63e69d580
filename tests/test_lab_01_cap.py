"""Lab 01 (CAP): the flawed code passes staging and fails grading; each declared choice is checked for what it promises."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

import sandbox
from autograder import seed_bank
from sandbox.checkers import Outcome
from sandbox.explore import Counterexample, Passed

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "01-cap"
SOLUTIONS = ("solution_cp", "solution_ap")
INVARIANTS = {"CP": ("linearizable", "no_lost_writes"), "AP": ("available", "converged")}


def _load_lab():
    spec = importlib.util.spec_from_file_location("chaos_dojo_labs.lab01.lab", LAB_DIR / "lab.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lab = _load_lab()
MUTANTS = lab.mutants()


def _happy(create_app) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lab.happy_path(create_app)


def test_the_lab_declares_its_banks_and_structure():
    """lab.py names its seed bank and sizes, ships at least three mutants and four adversarial schedules, and checks by choice."""
    assert lab.LAB == "01-cap"
    assert (lab.VISIBLE, lab.HIDDEN) == (5, 30)
    assert len(MUTANTS) >= 3
    assert len(lab.ADVERSARIAL) >= 4
    for choice, names in INVARIANTS.items():
        assert tuple(i.name.split("(")[0] for i in lab.invariants(choice)) == names


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
    for f in faults:
        assert set(f.target) <= set(lab.REPLICAS)
        if f.action in ("partition", "loss", "delay"):
            assert f.peer is not None and set(f.peer) <= set(lab.REPLICAS)


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


@pytest.mark.parametrize("name", ["generated", *SOLUTIONS, *MUTANTS])
def test_the_happy_path_passes(name):
    """Works in staging: the happy-path TestClient test passes on every version of the code."""
    _happy(lab.load(name).create_app)


@pytest.mark.parametrize("name", SOLUTIONS)
def test_a_calm_run_of_each_solution_keeps_its_promises(name):
    """Without faults each reference solution keeps what its choice promises, and the clients read and adjusted."""
    create_app = lab.load(name).create_app
    run = lab.scenario(create_app).run(1)
    verdicts = run.check(lab.invariants(lab.cap_choice(create_app)))
    assert all(v.outcome is Outcome.PASS for v in verdicts), "\n".join(map(str, verdicts))
    assert {op.f for op in run.world.history if op.type == "ok"} == {"read", "adjust", "audit"}


def test_the_generated_code_fails_the_hidden_checks():
    """The assistant's code declares CP and reads stale data: the hidden checks find it not linearizable."""
    found = lab.check(lab.load("generated").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample)
    assert found.invariant.startswith("linearizable")
    assert "explains it" in found.verdict.summary
    assert found.seed in seed_bank(lab.LAB, "hidden", lab.HIDDEN)


@pytest.mark.parametrize("bank", ["visible", "hidden"])
@pytest.mark.parametrize("name", SOLUTIONS)
def test_each_solution_passes_every_seed_and_schedule(name, bank):
    """Each reference solution passes every seed of the bank and every adversarial schedule, with no undecided run."""
    result = lab.check(lab.load(name).create_app, bank, shrink=False)
    assert isinstance(result, Passed), str(result)
    assert result.ok, result.undecided
    size = lab.VISIBLE if bank == "visible" else lab.HIDDEN
    assert result.runs == size + len(lab.ADVERSARIAL)


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_the_hidden_checks(name):
    """Each partial fix breaks one of the invariants of the choice it declares somewhere in the hidden checks."""
    create_app = lab.load(name).create_app
    found = lab.check(create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample), f"{name} passed the hidden checks"
    assert found.invariant.split("(")[0] in INVARIANTS[lab.cap_choice(create_app)]


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


def test_availability_is_unknown_when_no_client_can_reach_a_replica():
    """available() does not blame the service for a network that cut the clients off, nor pass a run with no answer."""
    from sandbox.faults import Partition, Schedule

    create_app = lab.load("solution_ap").create_app
    schedule = Schedule([Partition("inventory", None, start=0.0, duration=8.0)])
    run = lab.scenario(create_app).run(3, schedule, clients=1, requests=1)
    assert lab.available()(run.world).outcome is Outcome.UNKNOWN
    assert "no request got an answer" in lab.available()(run.world).summary


def test_promise_names_the_invariant_each_declared_choice_owes_per_graded_part():
    """lab.promise maps the declared choice and a graded part ("during", "after") to one invariant of that choice."""
    for name, choice in (("generated", "CP"), ("solution_cp", "CP"), ("solution_ap", "AP")):
        create_app = lab.load(name).create_app
        parts = [lab.promise(create_app, part) for part in ("during", "after")]
        assert tuple(parts) == INVARIANTS[choice]
    with pytest.raises(sandbox.InvalidParameterError, match="part='before'"):
        lab.promise(lab.load("generated").create_app, "before")


def test_the_generated_code_marks_its_fix_regions():
    """generated.py marks three fix regions, each opened and closed once, the first holding CAP_CHOICE."""
    text = (LAB_DIR / "generated.py").read_text()
    for n in (1, 2, 3):
        assert text.count(f"# --- FIX REGION {n}:") == 1 and text.count(f"# --- END FIX REGION {n} ---") == 1
    region1 = text.split("# --- FIX REGION 1:")[1].split("# --- END FIX REGION 1 ---")[0]
    assert 'CAP_CHOICE = "CP"' in region1
