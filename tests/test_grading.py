"""Tests of isolated grading's plumbing (autograder.grading, autograder.runner): a submission's runs in a locked-down
process give the evidence on which the grader's checkers judge exactly as on the runs made in its own process."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autograder import seed_bank
from autograder.grading import run_submission
from autograder.isolation import Limits, best_mechanism
from autograder.labs import load_module
from sandbox.checkers import check

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="isolated grading runs on Linux")

LAB_DIR = Path(__file__).resolve().parent.parent / "labs" / "02-idempotency"
lab = load_module(LAB_DIR, "lab", "chaos_dojo_labs.grading_test")


def runs(n: int = 2) -> list:
    return [(seed, lab.schedules(seed), {}) for seed in seed_bank(lab.LAB, "visible", n)]


def verdicts(world) -> list[tuple]:
    return [(v.invariant, v.outcome, v.summary, v.evidence) for v in check(world, lab.invariants())]


@pytest.mark.parametrize("name", ["solution", "generated"])
def test_the_evidence_of_an_isolated_run_is_judged_as_the_run_itself(name):
    """The reference and the generated code, run isolated on two seeds under the nemesis: every invariant's verdict
    on the evidence equals its verdict on the same run made here (the generated code's failures included)."""
    source = (LAB_DIR / f"{name}.py").read_text()
    batch = run_submission(LAB_DIR, source, runs())
    assert batch.outcome.ok, batch.outcome.stderr[-2000:]
    module = load_module(LAB_DIR, name, f"chaos_dojo_labs.grading_test_{name}")
    for result in batch.results:
        assert result.error is None and result.evidence is not None
        here = lab.scenario(module.create_app).run(result.seed, result.schedule).world
        assert verdicts(result.evidence) == verdicts(here)
        assert result.evidence.fingerprint() == here.fingerprint()


def test_a_service_that_fails_at_import_gives_every_run_an_error_and_no_evidence():
    batch = run_submission(LAB_DIR, "import nonexistent_module_xyz\n", runs())
    assert [r.evidence for r in batch.results] == [None, None]
    assert all("ModuleNotFoundError" in r.error and "service.py line 1" in r.error for r in batch.results)


@pytest.mark.skipif(best_mechanism() != "bubblewrap" and not os.environ.get("CHAOS_DOJO_REQUIRE_BWRAP"),
                    reason="hiding the grader's files needs bubblewrap (apt install bubblewrap)")
def test_the_service_cannot_read_the_reference_solution_nor_the_secret(monkeypatch):
    """The learner's process sees the lab's lab.py but not its solution, nor the grader's environment."""
    monkeypatch.setenv("CHAOS_DOJO_GRADING_SECRET", "hunter2")
    source = (LAB_DIR / "generated.py").read_text() + textwrap.dedent(f'''
        import os
        try:
            SOLUTION = open({str(LAB_DIR / "solution.py")!r}).read()[:20]
        except OSError as exc:
            SOLUTION = type(exc).__name__
        SECRET = os.environ.get("CHAOS_DOJO_GRADING_SECRET")
        LAB_VISIBLE = os.path.exists({str(LAB_DIR / "lab.py")!r})
    ''')
    batch = run_submission(LAB_DIR, source, runs(1), report=("SOLUTION", "SECRET", "LAB_VISIBLE", "nothing"))
    assert batch.declared == {"SOLUTION": "FileNotFoundError", "SECRET": None, "LAB_VISIBLE": True}


def test_a_process_that_runs_out_of_time_leaves_the_runs_it_did_not_finish_without_evidence():
    """A service whose import never ends: the whole batch is stopped at its wall-clock limit, and every run says
    so in one line."""
    started = time.monotonic()
    batch = run_submission(LAB_DIR, "while True:\n    pass\n", runs(), limits=Limits(wall=3.0))
    assert time.monotonic() - started < 20
    assert batch.outcome.timed_out
    assert all(r.evidence is None and "wall-clock limit" in r.error for r in batch.results)


def test_what_the_service_prints_stays_in_the_process_output():
    source = "print('hello from the service')\n" + (LAB_DIR / "solution.py").read_text()
    batch = run_submission(LAB_DIR, source, runs(1))
    assert "hello from the service" in batch.outcome.stdout and batch.results[0].evidence is not None


def test_a_folder_without_lab_py_is_refused(tmp_path):
    from sandbox.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError) as info:
        run_submission(tmp_path, "", [])
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(("lab_name", "name"), [("01-cap", "solution_cp"), ("03-sagas", "solution"),
                                                ("04-tracing", "solution"), ("05-concurrency", "solution"),
                                                ("06-resilience", "solution")])
def test_every_lab_runs_isolated_and_is_judged_alike(lab_name, name):
    """Each other lab's reference, one seed under its nemesis, isolated: the same verdicts as here. Lab 01 reports
    the CAP choice (CAP_CHOICE) and the primary the service declares, which its invariants take."""
    folder = LAB_DIR.parent / lab_name
    other = load_module(folder, "lab", f"chaos_dojo_labs.grading_{lab_name.replace('-', '_')}")
    module = load_module(folder, name, f"chaos_dojo_labs.grading_{lab_name.replace('-', '_')}_{name}")
    seed = seed_bank(other.LAB, "visible", 1)[0]
    if lab_name == "01-cap":
        choice = other.cap_choice(module.create_app)
        schedule, report = other.schedules(seed, choice), ("CAP_CHOICE", "PRIMARY")
    else:
        schedule, report = other.schedules(seed), ()
    batch = run_submission(folder, (folder / f"{name}.py").read_text(), [(seed, schedule, {})], report=report)
    [result] = batch.results
    assert result.evidence is not None, (result.error, batch.outcome.stderr[-2000:])
    if lab_name == "01-cap":
        assert batch.declared == {"CAP_CHOICE": choice, "PRIMARY": other.primary(module.create_app)}
        invariants = other.invariants(choice, primary=batch.declared["PRIMARY"])
    else:
        invariants = other.invariants()
    here = other.scenario(module.create_app).run(seed, schedule).world

    def judged(world):
        return [(v.invariant, v.outcome, v.summary) for v in check(world, invariants)]

    assert judged(result.evidence) == judged(here)


@pytest.mark.parametrize("name", ["solution", "generated", "mutants/dedupe_by_offset"])
def test_an_isolated_grade_gives_each_part_the_verdict_the_in_process_check_gives(name):
    """Lab 02's parts judged in the grader on the runs made isolated agree with lab.check on the hidden bank of
    the same secret: the same parts pass, and a failing part fails on the same seed and the same invariant."""
    from autograder.grading import grade_service
    from sandbox.explore import Counterexample

    secret = "isolated-grading-test"
    parts, batch = grade_service(LAB_DIR, lab, (LAB_DIR / f"{name}.py").read_text(), secret=secret)
    # the generated code breaks every part: its process is stopped once they all have their verdicts
    assert batch.outcome.stopped if name == "generated" else batch.outcome.ok, batch.outcome.stderr[-2000:]
    module = load_module(LAB_DIR, name, f"chaos_dojo_labs.grade_test_{name.replace('/', '_')}")
    assert [p.part for p in parts] == list(lab.PARTS)
    for part in parts:
        here = lab.check(module.create_app, "hidden", secret=secret, shrink=False, only=part.names, workers=1)
        if isinstance(here, Counterexample):
            run, verdict = part.failed
            assert (run.seed, verdict.invariant) == (here.seed, here.verdict.invariant), part.part
        else:
            assert part.ok and here.ok and part.runs == here.runs, part.part
    if name == "solution":
        assert all(p.ok for p in parts)
    else:
        assert not all(p.ok for p in parts)


def test_a_batch_stops_once_every_part_has_its_verdict_which_is_the_whole_batchs():
    """The generated code breaks every part of lab 02 in the first worlds of the hidden bank: its process is
    stopped there (the later runs are never made, and say so), and each part's verdict and message are those the
    same runs give when every one is made."""
    import dataclasses

    from autograder.grading import grade_service, hidden_runs, judge

    secret = "early-stop-test"
    source = (LAB_DIR / "generated.py").read_text()
    parts, batch = grade_service(LAB_DIR, lab, source, secret=secret)
    assert batch.outcome.stopped and "was stopped" in batch.outcome.why(), batch.outcome.why()
    made = sum(r.evidence is not None for r in batch.results)
    assert 0 < made < len(batch.results) // 2, made
    assert all(r.evidence is not None for r in batch.results[:made])
    assert all(r.evidence is None and "was stopped" in r.error for r in batch.results[made:])
    whole = run_submission(LAB_DIR, source, hidden_runs(lab, secret=secret)[: made + 3])  # made to the end
    assert whole.outcome.ok and all(r.evidence is not None for r in whole.results)
    for part in parts:
        again = judge(part.part, part.names, lab.invariants(), whole.results)
        assert part.failed is not None and again.failed is not None, part.part
        assert (part.failed[0].seed, part.failed[1]) == (again.failed[0].seed, again.failed[1]), part.part
        assert part.message() == dataclasses.replace(again, runs=part.runs, replay=part.replay).message()


def test_lab_01_is_graded_on_what_the_service_declares():
    """Lab 01's parts follow the declared CAP_CHOICE; a declaration that is not a choice fails every part, saying
    what to declare."""
    from autograder.grading import grade_service

    folder = LAB_DIR.parent / "01-cap"
    cap = load_module(folder, "lab", "chaos_dojo_labs.grade_test_cap")
    parts, _batch = grade_service(folder, cap, (folder / "solution_cp.py").read_text(), secret="t")
    assert [p.names for p in parts] == [cap.PROMISES["CP"]["during"], cap.PROMISES["CP"]["after"]]
    assert all(p.ok for p in parts), [(p.part, p.failed, p.error) for p in parts]
    source = (folder / "solution_cp.py").read_text().replace('CAP_CHOICE = "CP"', 'CAP_CHOICE = "CA"')
    parts, _batch = grade_service(folder, cap, source, secret="t")
    assert all(not p.ok and "CAP_CHOICE='CA'" in p.error for p in parts)
