"""Lab 06 (resilience): the flawed checkout passes staging and fails grading; the fix passes everything."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import sandbox
from autograder import seed_bank
from autograder.labs import load_module
from sandbox.checkers import Outcome
from sandbox.explore import Counterexample, Passed
from sandbox.viz import dashboard

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "06-resilience"
INVARIANTS = ("answered_gracefully", "retry_amplification", "outage_contained", "breaker_transitions_legal",
              "recovered", "refused_means_not_charged", "no_double_charge")


lab = load_module(LAB_DIR, "lab", "chaos_dojo_labs.lab06")
MUTANTS = lab.mutants()
CORRECT = ["solution", *lab.alternatives()]
#: The partial fixes a learner who half-understood module 06 writes, by the step it teaches, with the invariant
#: that must catch each (the part that teaches that step).
CAUGHT_BY = {
    "a timeout on every call, a deadline on the order": {"no_timeout": ("answered_gracefully",)},
    "backoff, and a retry budget": {"retry_at_once": ("retry_amplification",), "no_budget": ("retry_amplification",)},
    "a circuit breaker that opens, stays shut, half-opens": {
        "no_breaker": ("outage_contained",), "never_half_opens": ("recovered",),
        "open_but_calls": ("outage_contained", "breaker_transitions_legal")},
    "an honest answer: 503 with Retry-After, or 202 pending": {
        "no_retry_after": ("answered_gracefully",), "refuse_after_charge_timeout": ("refused_means_not_charged",),
        "confirm_without_reserving": ("refused_means_not_charged",), "charge_without_key": ("no_double_charge",),
        "accepted_never_sent": ("refused_means_not_charged",)},
}
EXPECTED = {f"mutants/{name}": invs for step in CAUGHT_BY.values() for name, invs in step.items()}


def _short(invariant: str) -> str:
    return invariant.split("(")[0]


def test_the_lab_declares_its_banks_and_structure():
    """lab.py names its bank sizes, its invariants in order, and ships mutants and adversarial schedules."""
    assert lab.LAB == "06-resilience"
    assert (lab.VISIBLE, lab.HIDDEN) == (4, 12)
    assert len(lab.ADVERSARIAL) >= 5
    assert [_short(i.name) for i in lab.invariants()] == list(INVARIANTS)
    assert sorted(p for parts in lab.PARTS.values() for p in parts) == sorted(INVARIANTS)


def test_visible_and_hidden_banks_differ():
    """The self-checks and the grading run disjoint seed banks; a grading secret changes the hidden one."""
    visible, hidden = seed_bank(lab.LAB, "visible", lab.VISIBLE), seed_bank(lab.LAB, "hidden", lab.HIDDEN)
    assert not set(visible) & set(hidden)
    assert seed_bank(lab.LAB, "hidden", lab.HIDDEN, secret="s3cret") != hidden


def test_the_nemesis_takes_inventory_down_for_more_than_three_seconds_once():
    """Each seed's schedule is the same every time, and holds exactly one inventory outage longer than 3 s (cut off,
    killed or slow), short blips before it, a brownout and slow payments, all healed four seconds before the end."""
    assert repr(lab.schedules(11)) == repr(lab.schedules(11))
    kinds = set()
    for seed in range(30):
        schedule = lab.schedules(seed)
        long = [f for f in schedule if f.action != "loss" and f.duration > lab.OUTAGE]
        assert len(long) == 1, schedule
        kinds.add(long[0].action)
        assert all(f.start + f.duration <= lab.ORDERS_FOR - lab.RECOVERY - 0.9 for f in schedule), schedule
        assert {"loss", "delay"} <= {f.action for f in schedule}
    assert kinds == {"partition", "kill", "delay"}


def test_the_partial_fixes_cover_every_step_the_module_teaches():
    """Every mutant is listed under the step of module 06 it half-understood, and every listed one is shipped."""
    assert sorted(EXPECTED) == MUTANTS


@pytest.mark.parametrize("name", ["generated", *CORRECT, *MUTANTS])
def test_the_happy_path_passes(name):
    """Works in staging: two orders confirmed through FastAPI's TestClient, on every version of the code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lab.happy_path(lab.load(name).create_app)


def test_the_generated_code_fails_the_hidden_checks():
    """The assistant's checkout keeps shoppers waiting through the outage: the hidden checks say so."""
    found = lab.check(lab.load("generated").create_app, "hidden", shrink=False)
    assert isinstance(found, Counterexample)
    assert _short(found.invariant) == "answered_gracefully", str(found)
    assert "more than 3.5 s" in found.verdict.summary or "no answer" in found.verdict.summary
    assert found.seed in seed_bank(lab.LAB, "hidden", lab.HIDDEN)


@pytest.mark.parametrize("bank", ["hidden"])
@pytest.mark.parametrize("name", CORRECT)
def test_the_correct_fixes_pass_every_seed_and_schedule(name, bank):
    """The reference solution passes every seed of the bank and every adversarial schedule, none undecided."""
    result = lab.check(lab.load(name).create_app, bank, shrink=False)
    assert isinstance(result, Passed), str(result)
    assert result.ok, result.undecided
    assert result.runs == (lab.VISIBLE if bank == "visible" else lab.HIDDEN) + len(lab.ADVERSARIAL)


@pytest.mark.parametrize("name", MUTANTS)
def test_every_mutant_is_caught_by_the_part_that_teaches_its_step(name):
    """Each partial fix breaks, on the hidden checks, the invariant of the step it half-understood."""
    found = lab.check(lab.load(name).create_app, "hidden", shrink=False, only=EXPECTED[name])
    assert isinstance(found, Counterexample), f"{name} passed the hidden checks"
    assert _short(found.invariant) in EXPECTED[name], str(found)


#: The partial fixes issue 12 names ("timeouts but no backoff, retries but no budget, a breaker that never half-opens").
NAMED_BY_THE_ISSUE = ("mutants/retry_at_once", "mutants/no_budget", "mutants/never_half_opens")


@pytest.mark.parametrize("name", NAMED_BY_THE_ISSUE)
def test_the_self_check_already_shows_the_partial_fixes_the_issue_names(name):
    """The visible bank (the notebook's self-check) catches each of them with the graded part of its step, so a
    learner sees the failure before grading does."""
    part = next(p for p, invariants in lab.PARTS.items() if set(EXPECTED[name]) <= set(invariants))
    found = lab.check(lab.load(name).create_app, "visible", shrink=False, only=lab.PARTS[part])
    assert isinstance(found, Counterexample), f"{name} passed the self-check of part {part!r}"
    assert _short(found.invariant) in EXPECTED[name], str(found)
    assert found.seed in seed_bank(lab.LAB, "visible", lab.VISIBLE)


def test_a_calm_run_of_the_solution_confirms_every_order():
    """Without faults every order is confirmed, at once, with one charge; the outage checks have nothing to say."""
    run = lab.scenario(lab.load("solution").create_app).run(1, shoppers=10)
    statuses = {d.value["status"] for i, d in run.world.history.pairs() if i.f == "order"}
    assert statuses == {201}
    verdicts = {_short(v.invariant): v.outcome for v in run.check(lab.invariants())}
    assert verdicts["answered_gracefully"] is verdicts["refused_means_not_charged"] is Outcome.PASS
    assert verdicts["outage_contained"] is verdicts["recovered"] is Outcome.UNKNOWN


def test_an_order_accepted_for_later_is_reserved_and_charged_once_inventory_is_back():
    """The accept-for-later fix answers 202 while inventory is cut off, and its relay sees every such order through
    once inventory is back (reserved, charged once); the one whose relay never runs is caught for it."""
    seed = seed_bank(lab.LAB, "visible", 1)[0]
    honest = [i for i in lab.invariants() if _short(i.name) in ("refused_means_not_charged", "no_double_charge")]
    verdicts = {}
    for name in ("alternatives/accept_for_later", "mutants/accepted_never_sent"):
        world = lab.scenario(lab.load(name).create_app).run(seed, lab.ADVERSARIAL[0]).world
        accepted = [i.value["order_id"] for i, d in world.history.pairs()
                    if i.f == "order" and d is not None and d.value["status"] == 202]
        reserved = world.database(lab.INVENTORY_DB).rows(lab.RESERVATIONS)
        verdicts[name] = ([v(world).outcome for v in honest], len(accepted), sum(o in reserved for o in accepted))
    outcomes, accepted, reserved = verdicts["alternatives/accept_for_later"]
    assert outcomes == [Outcome.PASS, Outcome.PASS] and accepted >= 20 and reserved == accepted, verdicts
    outcomes, accepted, reserved = verdicts["mutants/accepted_never_sent"]
    assert outcomes[0] is Outcome.FAIL and accepted >= 20 and reserved == 0, verdicts


def test_the_fix_built_on_libraries_may_be_handed_in_and_is_installed():
    """The alternative built on tenacity and purgatory passes the grader's policy (a learner may write it in the
    notebook) and both libraries are dependencies of the course (pyproject.toml), so the grader has them."""
    import tomllib

    from autograder import policy

    source = (LAB_DIR / "alternatives" / "libraries.py").read_text()
    assert policy.check(source) is None
    assert "import pybreaker" in policy.check("import tenacity\nimport purgatory\nimport pybreaker")
    meta = tomllib.loads((LAB_DIR.parent.parent / "pyproject.toml").read_text())
    declared = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in meta["project"]["dependencies"]}
    assert {"tenacity", "purgatory"} <= declared


def test_the_check_is_deterministic():
    """The same code and bank give the same counterexample: seed, schedule, workload and fingerprint."""
    create_app = lab.load("generated").create_app
    a = lab.check(create_app, "visible", shrink=False, workers=1)
    b = lab.check(create_app, "visible", shrink=False, workers=1)
    assert (a.seed, repr(a.schedule), a.workload, a.fingerprint) == (b.seed, repr(b.schedule), b.workload, b.fingerprint)


def test_production_shows_the_outage_on_the_dashboard():
    """The notebook's Production run: the generated code leaves orders unanswered for seconds while inventory is cut
    off; its world has metrics, and the dashboard draws them with the fault shaded. The solution passes it."""
    found = lab.production(lab.load("generated").create_app)
    assert isinstance(found, Counterexample) and _short(found.invariant) == "answered_gracefully"
    figure = dashboard(found.world, lab.SERVICE)
    assert any(a.get_gid() and a.get_gid().startswith("fault:") for ax in figure.axes for a in ax.patches)
    assert isinstance(lab.production(lab.load("solution").create_app), Passed)


def test_a_bad_workload_is_refused_with_the_value():
    """build_world refuses a number of shoppers that is not a whole number >= 1, showing it."""
    with pytest.raises(sandbox.InvalidParameterError, match=r"shoppers=0: use a whole number >= 1"):
        lab.build_world(1, lab.load("solution").create_app, shoppers=0)


def test_the_dashboard_shows_the_outage_contained_only_when_it_is():
    """contained() reads the dashboard's metrics: the generated code's pile-up and the breakerless fix's calls fail
    it, the reference solution's run passes it."""
    seed = seed_bank(lab.LAB, "visible", 1)[0]
    verdicts = {name: lab.contained(lab.scenario(lab.load(name).create_app, metrics=True).run(seed, lab.ADVERSARIAL[0])
                                    .world) for name in ("generated", "solution", "mutants/no_breaker")}
    assert verdicts["generated"].outcome is Outcome.FAIL and "pile up" in verdicts["generated"].summary
    assert verdicts["mutants/no_breaker"].outcome is Outcome.FAIL and "probes/s" in verdicts["mutants/no_breaker"].summary
    assert verdicts["solution"].outcome is Outcome.PASS, str(verdicts["solution"])
    assert lab.contained(lab.scenario(lab.load("solution").create_app).run(seed, lab.ADVERSARIAL[0]).world).outcome \
        is Outcome.UNKNOWN


def test_the_metrics_to_watch_hold_for_the_fix_and_name_what_the_generated_code_never_shows():
    """watch() names six metrics of the outage run, each with its panel and PromQL query: for the reference solution
    every "sometimes" held, with the values its run showed; the generated code never opened a breaker, refused fast,
    answered within the bound while inventory was down, or retried on a budget (its calls to inventory stalled while
    nothing was answered: not probes), and only its orders after the outage went through."""
    solution, generated = (lab.watch(lab.outage(lab.load(name).create_app)) for name in ("solution", "generated"))
    assert [w.held for w in solution] == [True] * 6, "\n".join(map(str, solution))
    assert [w.held for w in generated] == [False, False, False, False, False, True], "\n".join(map(str, generated))
    assert [w.panel for w in solution][:4] == ["circuit breaker", "calls made", "requests / s by status", "latency"]
    assert 'circuit_breaker_state{service="checkout", dependency="inventory"}' in solution[0].query
    assert "first at t=" in solution[0].seen and "open" in solution[0].seen
    assert "sets no circuit_breaker_state gauge" in generated[0].seen
    assert str(solution[0]).startswith("ok sometimes: ") and str(generated[0]).startswith("-- sometimes: ")


def test_watching_a_world_without_metrics_says_how_to_get_one():
    """watch() of a world built without metrics raises ConfigError naming lab.outage."""
    with pytest.raises(sandbox.ConfigError, match=r"no metrics.*lab\.outage\(create_app\)"):
        lab.watch(lab.build_world(1, lab.load("solution").create_app))
