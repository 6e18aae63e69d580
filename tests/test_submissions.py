"""Tests of `dojo grade` (autograder.submissions): submitted notebooks graded isolated, without an nbgrader course."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import seed_bank
from sandbox.cli import main

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="isolated grading runs on Linux")

LABS = Path(__file__).resolve().parent.parent / "labs"


def submission(folder: Path, lab: str, **cells: str) -> Path:
    """The lab's own notebook with the given cells (by nbgrader id) replaced, as a learner hands it in."""
    nb = nbformat.read(str(LABS / lab / "lab.ipynb"), as_version=4)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in cells:
            cell.source = cells[grade_id]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lab.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_dojo_grade_scores_a_folder_of_submissions_and_writes_a_result_each(tmp_path, monkeypatch, capsys):
    """The reference pasted in earns every point, the generated code none, a file that is not a notebook and a
    notebook without its service cell none (saying why); each result names its parts and never a hidden seed."""
    secret = "dojo-grade-test"
    monkeypatch.setenv("CHAOS_DOJO_GRADING_SECRET", secret)
    lab = "02-idempotency"
    submitted = tmp_path / "submitted"
    submission(submitted / "ada", lab, service=(LABS / lab / "solution.py").read_text())
    submission(submitted / "bob", lab, service=(LABS / lab / "generated.py").read_text())
    (submitted / "cy").mkdir()
    (submitted / "cy" / "lab.ipynb").write_text("not a notebook")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hi')")])
    (submitted / "dee").mkdir()
    nbformat.write(nb, str(submitted / "dee" / "lab.ipynb"))
    out = tmp_path / "graded"

    assert main(["grade", str(submitted), "--lab", lab, "--out", str(out), "--jobs", "2"]) == 0
    results = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert sorted(results) == ["ada-lab", "bob-lab", "cy-lab", "dee-lab"]
    assert (results["ada-lab"]["points"], results["ada-lab"]["max_points"]) == (10.0, 10.0)
    assert [p["id"] for p in results["ada-lab"]["parts"]] == ["no-double-charge", "consumer-exactly-once",
                                                              "idempotency-key-semantics"]
    assert results["ada-lab"]["process"]["how"] == "finished"
    assert results["bob-lab"]["points"] == 0.0
    assert "Broken: no_double_charge" in results["bob-lab"]["parts"][0]["message"]
    # the failure shown again in a world of the visible bank, with the line that replays it in the notebook
    replay = results["bob-lab"]["parts"][0]["replay"]
    assert replay["seed"] in seed_bank(lab, "visible", 8)
    assert replay["line"].startswith("from sandbox.faults import *; lab.scenario(create_app).replay(")
    assert replay["line"].replace("; ", "\n  ") in results["bob-lab"]["parts"][0]["message"]
    from autograder.labs import load_module

    module = load_module(LABS / lab, "lab", "chaos_dojo_submissions_test.lab")
    namespace = {"lab": module, "create_app": load_module(LABS / lab, "generated", "chaos_dojo_submissions_test").create_app}
    head, _, call = replay["line"].rpartition("; ")
    exec(head, namespace)
    run = eval(call, namespace)  # what the learner pastes: the same invariant breaks
    assert any(v.invariant.startswith("no_double_charge") and v.outcome.name == "FAIL"
               for v in run.check(module.invariants()))
    assert results["cy-lab"]["points"] == 0 and "is not a Jupyter notebook" in results["cy-lab"]["parts"][0]["message"]
    assert "has no service cell" in results["dee-lab"]["parts"][0]["message"]
    text = json.dumps(results)
    assert not any(str(seed) in text for seed in seed_bank(lab, "hidden", 40, secret=secret))
    printed = capsys.readouterr().out
    assert "ada/lab.ipynb: 10/10" in printed and "bob/lab.ipynb: 0/10" in printed
    # a feedback page each: the generated code's with a picture of each broken part, the reference's without
    pages = {p.stem: p.read_text() for p in out.glob("*.html")}
    assert sorted(pages) == sorted(results)
    assert pages["bob-lab"].count("data:image/png;base64,") == 3 and "Broken: no_double_charge" in pages["bob-lab"]
    assert "data:image/png" not in pages["ada-lab"] and "10 / 10" in pages["ada-lab"]
    words = re.sub(r"data:image/png;base64,[^\"]*", "", pages["bob-lab"])
    assert not any(str(seed) in words for seed in seed_bank(lab, "hidden", 40, secret=secret))


def test_dojo_grade_grades_lab_04s_answer_too(tmp_path, monkeypatch):
    """Lab 04's last part is the answer cell: the reference service and answer earn every point; a constant
    answer loses that part's points and says how often it was wrong."""
    monkeypatch.setenv("CHAOS_DOJO_GRADING_SECRET", "dojo-grade-test-04")
    lab = "04-tracing"
    service = (LABS / lab / "solution.py").read_text()
    submission(tmp_path / "right", lab, service=service, answer=(LABS / lab / "answer.py").read_text())
    submission(tmp_path / "guess", lab, service=service, answer="def slowest_dependency(world):\n    return 'courier'\n")
    out = tmp_path / "graded"
    assert main(["grade", str(tmp_path / "right"), str(tmp_path / "guess"), "--lab", lab, "--out", str(out)]) == 0
    right = json.loads((out / "right-lab.json").read_text())
    guess = json.loads((out / "guess-lab.json").read_text())
    assert right["points"] == right["max_points"] == 10.0
    answer = {p["id"]: p for p in guess["parts"]}["slow-dependency"]
    assert answer["points"] == 0.0 and "slowest_dependency was wrong on" in answer["message"]
    assert guess["points"] == 7.0


def test_dojo_grade_refuses_an_unknown_lab_and_nothing_to_grade(tmp_path, capsys):
    assert main(["grade", str(tmp_path), "--lab", "99-nope"]) == 2
    assert "unknown lab '99-nope'" in capsys.readouterr().out
    assert main(["grade", str(tmp_path), "--lab", "02-idempotency", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to grade" in capsys.readouterr().out


def test_a_grader_process_does_not_grow_from_submission_to_submission(tmp_path):
    """Grading runs no world in the grader's process (the learner's runs are isolated), and what it keeps of a
    submission (evidence, verdicts, pictures) is dropped with its result: no run's evidence and no figure is
    alive after a grading, and the process holds no more objects after the fourth grading than after the second,
    give or take a few caches (benchmarks/bench_grading.py measures the memory of 100)."""
    import gc

    from matplotlib.figure import Figure

    from autograder.labs import load_module
    from autograder.submissions import grade_notebook
    from sandbox.evidence import Evidence

    lab = "02-idempotency"
    notebook = submission(tmp_path / "bob", lab, service=(LABS / lab / "generated.py").read_text())
    module = load_module(LABS / lab, "lab", "chaos_dojo_memory_test.lab")
    def kept() -> set[int]:  # other tests in this process may hold evidence or figures of their own
        return {id(o) for o in gc.get_objects() if isinstance(o, (Evidence, Figure))}

    gc.collect()
    before = kept()
    counts = []
    for _ in range(4):
        result = grade_notebook(notebook, LABS / lab, module, secret="memory-test", pictures=True)
        assert result["points"] == 0 and len(result.pop("pictures")) == 3
        del result
        gc.collect()
        assert kept() <= before
        counts.append(len(gc.get_objects()))
    assert counts[3] - counts[1] < 2_000, counts
