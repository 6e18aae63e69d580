"""The learner's side of isolated grading: run a submitted service in a lab's worlds and write down the evidence.

Run by ``autograder.grading.run_submission`` inside ``autograder.isolation.run_isolated``
(no network, no grader files, limits), never in the grader's own process::

    python -m autograder.runner job.json

``job.json`` (written by the grader into the submission's folder) names the lab's
``lab.py``, the service module (``service.py`` beside it: the learner's service cell), the
runs (each a seed, a fault schedule as ``sandbox.evidence.schedule_data`` and workload
sizes), and the module-level names whose values the grader wants reported (lab 01's
``CAP_CHOICE`` and ``PRIMARY``), and for a lab with a graded answer (lab 04) the answer cell
(``answer.py``) and the worlds to ask it about. For run ``i`` the runner writes ``evidence/i.json``
(``sandbox.evidence.snapshot`` of the finished world) or, if the run could not even be
built or raised, ``evidence/i.error`` with one line saying why; and ``declared.json``
with the reported names, and ``answers.json``: the answer in each world. Each file appears whole (written
beside, then renamed), in the runs' order, so that the grader may read the runs while later ones are still
running, and stop the process once it has its verdicts. What the learner's code prints goes to this process's output,
which the grader holds back. Nothing here judges anything: the checkers run in the grader,
on the evidence.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

#: The format of a job file.
JOB_FORMAT = "chaos-dojo/job/1"
#: Values a reported name may hold (anything else is reported as its type's name).
_PLAIN = (str, int, float, bool, type(None))


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _write(path: Path, text: str) -> None:
    """Write ``path`` so that a reader sees it whole or not at all (the grader reads while the runs go on)."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


def _one_line(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)
    last = next((f for f in reversed(where) if f.filename.endswith("service.py")), where[-1] if where else None)
    at = f" (service.py line {last.lineno})" if last is not None and last.filename.endswith("service.py") else ""
    return f"{type(exc).__name__}: {exc}{at}".replace("\n", " ")[:2000]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m autograder.runner job.json", file=sys.stderr)
        return 2
    job_path = Path(argv[0]).resolve()
    job = json.loads(job_path.read_text())
    if job.get("format") != JOB_FORMAT:
        print(f"job format {job.get('format')!r}: expected {JOB_FORMAT!r}", file=sys.stderr)
        return 2
    folder = job_path.parent
    out = folder / "evidence"
    out.mkdir(exist_ok=True)
    lab = _load(Path(job["lab"]), "lab")

    from sandbox.evidence import schedule_from_data, snapshot

    try:
        service = _load(folder / job["service"], "chaos_dojo_submission")
        create_app = service.create_app
    except BaseException as exc:  # noqa: BLE001 - whatever the service does at import is its own failure
        error = f"the service cell did not define create_app: {_one_line(exc)}"
        for i, _run in enumerate(job["runs"]):
            _write(out / f"{i}.error", error)
        _write(folder / "declared.json", "{}")
        return 0
    declared = {}
    for name in job.get("report", []):
        if hasattr(service, name):  # a name the service does not define is left out, not reported as None
            value = getattr(service, name)
            declared[name] = value if isinstance(value, _PLAIN) else f"<{type(value).__name__}>"
    _write(folder / "declared.json", json.dumps(declared))
    answer = job.get("answer")
    if answer:  # a graded answer (lab 04's slowest_dependency): asked on each world the job names
        _write(folder / "answers.json", json.dumps(_answers(lab, folder, create_app, answer)))
    scenario = lab.scenario(create_app, **job.get("scenario", {}))
    overran = None
    for i, run in enumerate(job["runs"]):
        if overran is not None:  # one run that never yields is enough to know: the others are not run
            _write(out / f"{i}.error", f"not run: an earlier run was stopped at its wall-clock limit ({overran})")
            continue
        try:
            world = scenario.run(run["seed"], schedule_from_data(run["schedule"]), **run.get("workload", {})).world
            data = json.dumps(snapshot(world))
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            _write(out / f"{i}.error", f"the run raised {_one_line(exc)}")
            continue
        _write(out / f"{i}.json", data)
        overran = world.overran
    return 0


def _answers(lab: ModuleType, folder: Path, create_app: Any, answer: dict) -> list[str]:
    """The answer function's answer in each world ``answer["seeds"]`` names (``lab.example_world``: the lab's
    world, no faults, run to its end; given as ``lab.answer_input(world)`` where the lab says what the answer
    may see): a string, or a line saying what it raised or returned instead."""
    try:
        module = _load(folder / answer["source"], "chaos_dojo_answer")
        function = getattr(module, answer["function"])
    except BaseException as exc:  # noqa: BLE001
        return [f"<the answer cell did not define {answer['function']}: {_one_line(exc)}>"] * len(answer["seeds"])
    said = []
    for seed in answer["seeds"]:
        try:
            world = lab.example_world(create_app, seed=seed)
            value = function(lab.answer_input(world) if hasattr(lab, "answer_input") else world)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            value = f"<raised {_one_line(exc)}>"
        said.append(value if isinstance(value, str) else f"<returned {type(value).__name__}, not a str>")
    return said


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
