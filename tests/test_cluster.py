"""`dojo grade --cluster ADDRESS`: grading spread over a Dask cluster, here a local one of two worker processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from sandbox.cli import main

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="isolated grading runs on Linux")

LABS = Path(__file__).resolve().parent.parent / "labs"
LAB = "02-idempotency"


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_port=0) as local:
        yield local


def _submission(folder: Path, service: str) -> Path:
    import nbformat

    nb = nbformat.read(str(LABS / LAB / "lab.ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "service":
            cell.source = service
    folder.mkdir(parents=True)
    nbformat.write(nb, str(folder / "lab.ipynb"))
    return folder / "lab.ipynb"


def test_the_cluster_grades_each_submission_on_its_workers(cluster, tmp_path, monkeypatch, capsys):
    """Each submission is a task on the cluster's workers (none graded in this process); the results and feedback
    pages are written here, with the points and messages `dojo grade` gives (tests/test_submissions.py)."""
    monkeypatch.setenv("CHAOS_DOJO_GRADING_SECRET", "cluster-test")
    submitted = tmp_path / "submitted"
    _submission(submitted / "ada", (LABS / LAB / "solution.py").read_text())
    _submission(submitted / "bob", (LABS / LAB / "generated.py").read_text())
    (submitted / "cy").mkdir()
    (submitted / "cy" / "lab.ipynb").write_text("not a notebook")

    import autograder.submissions as submissions

    here = []
    monkeypatch.setattr(submissions, "grade_notebook", lambda *a, **k: here.append(a) or {})
    on_cluster = tmp_path / "on-cluster"
    assert main(["grade", str(submitted), "--lab", LAB, "--out", str(on_cluster), "--no-pictures",
                 "--cluster", cluster.scheduler_address]) == 0
    assert here == [], "a submission was graded in dojo grade's own process"
    printed = capsys.readouterr().out
    assert "ada/lab.ipynb: 10/10" in printed and "bob/lab.ipynb: 0/10" in printed

    assert {"grade-ada-lab", "grade-bob-lab", "grade-cy-lab"} <= set(cluster.scheduler.task_prefixes)
    workers = {w.pid for w in cluster.scheduler.workers.values()}
    assert len(workers) == 2 and os.getpid() not in workers

    results = {p.stem: json.loads(p.read_text()) for p in on_cluster.glob("*.json")}
    assert sorted(results) == ["ada-lab", "bob-lab", "cy-lab"]
    assert [(p["id"], p["passed"]) for p in results["ada-lab"]["parts"]] == [
        ("no-double-charge", True), ("consumer-exactly-once", True), ("idempotency-key-semantics", True)]
    assert results["ada-lab"]["process"]["how"] == "finished"
    assert results["bob-lab"]["points"] == 0 and "Broken: no_double_charge" in results["bob-lab"]["parts"][0]["message"]
    assert results["bob-lab"]["parts"][0]["replay"]["line"].startswith("from sandbox.faults import *; lab.scenario(")
    assert "is not a Jupyter notebook" in results["cy-lab"]["parts"][0]["message"]
    assert sorted(p.stem for p in on_cluster.glob("*.html")) == sorted(results)


def test_an_unreachable_cluster_is_named_with_what_to_do(tmp_path, capsys, monkeypatch):
    import autograder.submissions as submissions

    monkeypatch.setattr(submissions, "CLUSTER_CONNECT_TIMEOUT", 2.0)
    notebook = _submission(tmp_path / "ada", (LABS / LAB / "generated.py").read_text())
    assert main(["grade", str(notebook), "--lab", LAB, "--out", str(tmp_path / "o"),
                 "--cluster", "tcp://127.0.0.1:9"]) == 2
    out = capsys.readouterr().out
    assert "cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'" in out and "dask scheduler" in out
    assert not (tmp_path / "o" / "ada-lab.json").exists()
