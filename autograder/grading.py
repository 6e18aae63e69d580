"""The grader's side of isolated grading: run a submission's runs in a locked-down process, read back the evidence.

``run_submission(lab_dir, service_source, runs)`` writes the learner's service and a job
into a fresh folder, runs ``autograder.runner`` there under ``autograder.isolation``
(bubblewrap where installed: no network, no view of the grader's files beyond the
``sandbox`` and ``autograder`` packages and the lab's ``lab.py``; a wall-clock and a
memory limit; nothing left running), and reads each run's evidence back with
``sandbox.evidence.Evidence.from_json``, which does not trust it. The checkers then run
here, in the grader, on that evidence (``sandbox.checkers.check(evidence, invariants)``):
learner code never sees them, the hidden bank's secret, the reference solutions or other
submissions. The learner's process only ever learns the seeds and schedules of the runs it
is given.

The grader reads each run's evidence as soon as the process has written it, and judges it
then: once every graded part has its verdict (a run that broke it, or a run without
evidence), the process is stopped and the runs after are never made. The verdicts are those
of the whole batch (a part's verdict is its first broken run, in the batch's order), at the
cost of the runs that decide them: code that breaks every part on the first run costs one run.

Example::

    batch = run_submission(Path("labs/02-idempotency"), service_cell_source,
                           [(seed, lab.schedules(seed), {}) for seed in seeds])
    for result in batch.results:
        verdicts = check(result.evidence, lab.invariants()) if result.evidence else None
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.errors import InvalidParameterError
from sandbox.evidence import Evidence, schedule_data
from sandbox.faults import Schedule

from .isolation import Limits, Outcome, run_isolated
from .runner import JOB_FORMAT

#: What a submission's whole batch of runs may take, unless the caller says otherwise.
DEFAULT_LIMITS = Limits(wall=300.0, memory=3 * 1024**3)


@dataclass(frozen=True)
class RunResult:
    """One run of a batch: its evidence, or why there is none (one line, for the learner)."""

    seed: int
    schedule: Schedule
    evidence: Evidence | None = None
    error: str | None = None


@dataclass(frozen=True)
class Batch:
    """Every run of one submission, what it declared (``report``), and how its process ended."""

    results: list[RunResult]
    declared: dict[str, Any]
    outcome: Outcome
    #: The graded answer in each world asked (``answer=`` of ``run_submission``), in order.
    answers: list[str] = field(default_factory=list)


def _package_dir(name: str) -> Path:
    module = sys.modules.get(name) or __import__(name)
    return Path(module.__file__).resolve().parent  # type: ignore[arg-type]


def run_submission(
    lab_dir: Path,
    service_source: str,
    runs: Sequence[tuple[int, Schedule, Mapping[str, int]]],
    *,
    report: Sequence[str] = (),
    answer: tuple[str, str, Sequence[int]] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    mechanism: str | None = None,
    until: Callable[[RunResult], bool] | None = None,
) -> Batch:
    """Run ``service_source`` (the learner's service cell: a module defining ``create_app``) in the lab's scenario
    for each ``(seed, schedule, workload)`` of ``runs``, isolated, and read back each run's evidence.

    A run that could not be built or raised, and every run left when the process died, ran out of time or of
    memory, has no evidence and an ``error`` saying why. ``report`` names module-level values of the service
    to report in ``declared`` (plain values only). ``answer`` is ``(source, function name, seeds)``: a graded
    answer cell, whose function is asked about the lab's world of each seed (``Batch.answers``). ``until``, if given,
    is called with each run's result, in the runs' order, as soon as the process has written it (while later runs
    go on): once it returns true, the process is stopped (``Batch.outcome.stopped``) and the runs not made yet
    have no evidence; ``until`` is not called again.

    Raises:
        InvalidParameterError: ``lab_dir`` has no ``lab.py``, or ``service_source`` is not text.
    """
    lab_file = Path(lab_dir).resolve() / "lab.py"
    if not lab_file.is_file():
        raise InvalidParameterError(f"lab_dir={str(lab_dir)!r} has no lab.py: give a lab's folder, e.g. labs/02-idempotency")
    if not isinstance(service_source, str):
        raise InvalidParameterError(f"service_source={service_source!r}: give the service cell's source as text")
    runs = list(runs)
    with tempfile.TemporaryDirectory(prefix="chaos-dojo-submission-") as tmp:
        folder = Path(tmp)
        (folder / "service.py").write_text(service_source)
        if answer is not None:
            (folder / "answer.py").write_text(answer[0])
        job = {
            "format": JOB_FORMAT,
            "lab": str(lab_file),
            "service": "service.py",
            "report": list(report),
            "runs": [{"seed": seed, "schedule": schedule_data(schedule), "workload": dict(workload)}
                     for seed, schedule, workload in runs],
        }
        if answer is not None:
            job["answer"] = {"source": "answer.py", "function": answer[1], "seeds": list(answer[2])}
        (folder / "job.json").write_text(json.dumps(job))
        results: list[RunResult] = []
        enough = False

        def read_on(why: str | None) -> bool:
            """Read the runs written since the last call (with ``why``: every run left, none being made any more),
            each handed to ``until``; true once ``until`` has had enough."""
            nonlocal enough
            while len(results) < len(runs):
                seed, schedule, _workload = runs[len(results)]
                result = _read(folder, len(results), seed, schedule, why)
                if result is None:
                    break
                results.append(result)
                enough = enough or (until is not None and until(result))
            return enough

        outcome = run_isolated(
            [sys.executable, "-P", "-m", "autograder.runner", "job.json"],
            folder=folder,
            readable=[_package_dir("sandbox"), _package_dir("autograder"), lab_file],
            limits=limits,
            mechanism=mechanism,
            stop=(lambda: read_on(None)) if until is not None else None,
        )
        read_on(f"no evidence: the process that ran the service {outcome.why()}")
        declared = _declared(folder, report)
        answers = _answers(folder, len(answer[2]) if answer is not None else 0, outcome)
    return Batch(results, declared, outcome, answers)


def _read(folder: Path, i: int, seed: int, schedule: Schedule, missing: str | None) -> RunResult | None:
    """Run ``i``'s result as the process wrote it; if it wrote nothing, a result whose error is ``missing``
    (None: no result yet, the process may still write it)."""
    evidence_file = folder / "evidence" / f"{i}.json"
    error_file = folder / "evidence" / f"{i}.error"
    if evidence_file.is_file():
        try:
            return RunResult(seed, schedule, Evidence.from_json(evidence_file.read_text()))
        except (InvalidParameterError, ValueError, UnicodeDecodeError) as exc:
            return RunResult(seed, schedule, error=f"the run's evidence could not be read: {str(exc)[:500]}")
    if error_file.is_file():
        return RunResult(seed, schedule, error=error_file.read_text(errors="replace")[:2000])
    return None if missing is None else RunResult(seed, schedule, error=missing)


def _answers(folder: Path, n: int, outcome: Outcome) -> list[str]:
    if not n:
        return []
    try:
        data = json.loads((folder / "answers.json").read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, list) or len(data) != n or not all(isinstance(a, str) for a in data):
        return [f"<no answer: the process that ran it {outcome.why()}>"] * n
    return [a[:200] for a in data]


def _declared(folder: Path, report: Sequence[str]) -> dict[str, Any]:
    try:
        data = json.loads((folder / "declared.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    plain = (str, int, float, bool, type(None))
    return {name: data[name] for name in report if name in data and isinstance(data[name], plain)}


# --- judging a submission's hidden runs, in the grader ---------------------------------------------------------


@dataclass(frozen=True)
class PartResult:
    """One graded part judged on a batch: passed (every run PASS), or the first run that broke one of its
    invariants (``failed``: the run and the verdict), or runs that no verdict could decide (``undecided``), or
    no verdict at all (``error``: the service declared nothing valid, or no run left evidence)."""

    part: str
    names: tuple[str, ...]
    runs: int
    failed: tuple[RunResult, Any] | None = None
    undecided: tuple[tuple[RunResult, Any], ...] = ()
    error: str | None = None
    #: A graded answer that was wrong (lab 04's): how often, and the first wrong answer against the right one.
    wrong: str | None = None
    #: The failure again in a world of the visible bank (``rehome_failures``): its seed and the line that replays
    #: it in the learner's notebook; or how many visible worlds were tried in vain (``(None, "", tried)``).
    replay: tuple[int | None, str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.failed is None and not self.undecided and self.error is None and self.wrong is None

    def message(self) -> str:
        """What the learner reads about this part: one line when it passed, what broke otherwise; never a seed of
        the hidden bank."""
        if self.error is not None:
            return f"Not passed: {self.error}" if self.error.startswith("refused: ") else f"No verdict: {self.error}"
        if self.wrong is not None:
            return self.wrong
        if self.failed is not None:
            run, verdict = self.failed
            lines = [f"Broken: {verdict.invariant}: {verdict.summary}"]
            lines += [f"  - {item}" for item in verdict.evidence[:8]]
            if len(verdict.evidence) > 8:
                lines.append(f"  ... and {len(verdict.evidence) - 8} more")
            if len(run.schedule):
                lines.append("In a world of the hidden bank (its seed stays hidden), under the faults:")
                lines += [f"  {line}" for line in str(run.schedule).splitlines()]
            else:
                lines.append("In a world of the hidden bank (its seed stays hidden), without any fault")
            if self.replay is not None:
                seed, line, tried = self.replay
                if seed is not None:
                    lines.append(f"The same faults break it in world {seed} of the visible bank. Replay it in your "
                                 f"notebook, after the service cell:")
                    lines += [f"  {statement}" for statement in line.split("; ")]
                else:
                    lines.append(f"None of the first {tried} worlds of the visible bank breaks it under these faults: "
                                 f"look for what differs (the timing of a retry, a replica that restarts, a lost "
                                 f"answer), not for a seed")
            return "\n".join(lines)
        if self.undecided:
            shown = list(dict.fromkeys(f"{v.invariant}: {v.summary}" for _run, v in self.undecided))
            return (f"Not a pass: {len(self.undecided)} verdicts over {self.runs} runs were undecided (UNKNOWN is "
                    f"not a pass), for example: " + "; ".join(shown[:3]))
        return f"Passed: {', '.join(self.names)}, on {self.runs} runs of the hidden bank and adversarial schedules"


def hidden_runs(lab: Any, *, secret: str | None, choice: str | None = None) -> list[tuple[int, Schedule, dict]]:
    """The runs a lab's graded parts are judged on, as ``lab.check(create_app, "hidden")`` makes them: the hidden
    bank (drawn from ``secret``), each seed under the lab's nemesis, then each adversarial schedule paired with the
    bank's first seeds. Lab 01's depend on the declared ``choice``."""
    from .seeds import seed_bank

    seeds = seed_bank(lab.LAB, "hidden", lab.HIDDEN, secret=secret)
    schedules = lab.schedules_for(choice) if choice is not None else lab.schedules
    adversarial = lab.adversarial(choice) if choice is not None else lab.ADVERSARIAL
    paired = (seeds * len(adversarial))[: len(adversarial)]
    return [(seed, schedules(seed), {}) for seed in seeds] + [(s, sch, {}) for s, sch in zip(paired, adversarial)]


def judge(part: str, names: Sequence[str], invariants: Sequence[Any], results: Sequence[RunResult]) -> PartResult:
    """Judge one part on a batch's results with the grader's own ``invariants`` (those named ``names``): the first
    run, in the batch's order, where one fails; a run without evidence counts as failed (it says why)."""
    judging = Judging(part, names, invariants)
    for result in results:
        if judging.feed(result):
            break
    return judging.result(len(results))


class Judging:
    """``judge``'s work on one part, run by run as a batch's runs arrive: ``feed`` each run in the batch's order
    (true once the part's verdict is settled: a run broke it, or had no evidence; later runs cannot change it),
    then ``result``."""

    def __init__(self, part: str, names: Sequence[str], invariants: Sequence[Any]) -> None:
        from .labs import select

        self.part, self.names = part, tuple(names)
        self._chosen = select(list(invariants), self.names)
        self._undecided: list[tuple[RunResult, Any]] = []
        self._settled: dict[str, Any] | None = None

    def feed(self, result: RunResult) -> bool:
        from sandbox.checkers import Outcome, check

        if self._settled is not None:
            return True
        if result.evidence is None:
            self._settled = {"error": result.error}
            return True
        verdicts = check(result.evidence, self._chosen)
        failed = next((v for v in verdicts if v.outcome is Outcome.FAIL), None)
        if failed is not None:
            self._settled = {"failed": (result, failed)}
            return True
        self._undecided += [(result, v) for v in verdicts if v.outcome is Outcome.UNKNOWN]
        return False

    def result(self, runs: int) -> PartResult:
        """The part's verdict over a batch of ``runs`` runs."""
        if self._settled is not None:
            return PartResult(self.part, self.names, runs, **self._settled)
        return PartResult(self.part, self.names, runs, undecided=tuple(self._undecided))


def grade_service(lab_dir: Path, lab: Any, service_source: str, *, secret: str | None,
                  answer_source: str | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> tuple[list[PartResult], Batch | None]:
    """Every part of ``lab.PARTS`` judged on the submission's hidden runs, made isolated in one batch. Lab 01's
    parts follow the ``CAP_CHOICE`` and ``PRIMARY`` the service declares; lab 04's graded answer
    (``answer_source``, the answer cell) is asked about the worlds of ``lab.answer_seeds(secret)``.

    Code that breaks ``autograder.policy`` never runs: every part fails with the policy's line (and there is
    no batch)."""
    from .policy import check as policy

    refused = policy(service_source, "service cell")
    if refused is None and answer_source is not None:
        refused = policy(answer_source, "answer cell", modules=frozenset({"lab"}),
                         attributes=frozenset(getattr(lab, "ANSWER_MAY_NOT_USE", ())))
    if refused is not None:
        return [PartResult(p, (), 0, error=f"refused: {refused}") for p in lab.PARTS], None
    declared: dict[str, Any] = {}
    choice = None
    if hasattr(lab, "CHOICES"):  # lab 01: what is graded depends on what the service declares
        probe = run_submission(lab_dir, service_source, [], report=("CAP_CHOICE", "PRIMARY"), limits=limits)
        declared = probe.declared
        choice = declared.get("CAP_CHOICE")
        if choice not in lab.CHOICES or declared.get("PRIMARY", None) not in (None, *lab.REPLICAS):
            why = (f"the service declares CAP_CHOICE={choice!r}, PRIMARY={declared.get('PRIMARY')!r}: declare "
                   f"CAP_CHOICE = \"CP\" or \"AP\", and PRIMARY as one of {list(lab.REPLICAS)} or None")
            parts = [PartResult(p, (), 0, error=why) for p in lab.PARTS]
            return parts, probe
    answered = [p for p, names in lab.PARTS.items() if names == ("slowest_dependency",)]
    seeds = lab.answer_seeds(secret) if answered else []
    answer = (answer_source or "", "slowest_dependency", seeds) if answered else None
    if choice is not None:
        invariants = lab.invariants(choice, primary=declared.get("PRIMARY"))
        parts = {p: lab.PROMISES[choice][what] for p, what in lab.PARTS.items()}
    else:
        invariants = lab.invariants()
        parts = {p: names for p, names in lab.PARTS.items() if names != ("slowest_dependency",)}
    judging = [Judging(p, names, invariants) for p, names in parts.items()]
    runs = hidden_runs(lab, secret=secret, choice=choice)
    batch = run_submission(lab_dir, service_source, runs, answer=answer, limits=limits,
                           until=lambda run: all([j.feed(run) for j in judging]))  # a list: every part fed
    results = [j.result(len(runs)) for j in judging]
    results = rehome_failures(lab_dir, lab, service_source, results, parts, invariants, limits=limits)
    for part in answered:
        results.append(_judge_answer(lab, part, seeds, batch.answers))
    return results, batch


def rehome_failures(lab_dir: Path, lab: Any, service_source: str, results: list[PartResult],
                    parts: Mapping[str, Sequence[str]], invariants: Sequence[Any], *,
                    limits: Limits = DEFAULT_LIMITS) -> list[PartResult]:
    """Each failed part with its failure shown again in a world the learner can replay: the failing run's faults
    and workload on the first ``REHOME_SEEDS`` seeds of the visible bank, in one more isolated batch; the first
    that breaks the same invariant gives the part its ``replay`` (seed and a line to paste after the service
    cell). The hidden seed is never shown."""
    import dataclasses

    from .labs import REHOME_SEEDS
    from .seeds import seed_bank

    failed = [r for r in results if r.failed is not None]
    if not failed:
        return results
    seeds = seed_bank(lab.LAB, "visible", REHOME_SEEDS)
    # parts that broke in the same run share its faults: each schedule is tried once
    schedules = list(dict.fromkeys(repr(r.failed[0].schedule) for r in failed))
    distinct = {repr(r.failed[0].schedule): r.failed[0].schedule for r in failed}
    runs = [(seed, distinct[key], {}) for key in schedules for seed in seeds]
    replays: dict[str, tuple[int | None, str, int]] = {}
    counted = itertools.count()

    def look(run: RunResult) -> bool:
        """Try one more run of the batch (in order) on the parts whose schedule it has; true once every part has
        its replay, or has seen all its runs in vain."""
        block, k = divmod(next(counted), len(seeds))
        for r in failed:
            if r.part in replays or schedules.index(repr(r.failed[0].schedule)) != block:
                continue
            again = judge(r.part, parts[r.part], invariants, [run]) if run.evidence is not None else None
            if again is not None and again.failed is not None and again.failed[1].invariant == r.failed[1].invariant:
                schedule = f", {run.schedule!r}" if len(run.schedule) else ""
                head = "from sandbox.faults import *; " if len(run.schedule) else ""
                replays[r.part] = (run.seed, f"{head}lab.scenario(create_app).replay({run.seed}{schedule})", len(seeds))
            elif k == len(seeds) - 1:
                replays[r.part] = (None, "", len(seeds))
        return len(replays) == len(failed)

    run_submission(lab_dir, service_source, runs, limits=limits, until=look)
    found = {r.part: dataclasses.replace(r, replay=replays.get(r.part, (None, "", len(seeds)))) for r in failed}
    return [found.get(r.part, r) for r in results]


def _judge_answer(lab: Any, part: str, seeds: Sequence[int], answers: Sequence[str]) -> PartResult:
    wrong = [(said, lab.culprit(seed)[0]) for seed, said in zip(seeds, answers) if not lab.answer_is_right(said, seed)]
    if not wrong:
        return PartResult(part, ("slowest_dependency",), len(seeds))
    said, right = wrong[0]
    return PartResult(part, ("slowest_dependency",), len(seeds), wrong=(
        f"slowest_dependency was wrong on {len(wrong)} of {len(seeds)} hidden worlds. The first: it answered "
        f"{said!r}, but the slow orders there wait on the {right}."))
