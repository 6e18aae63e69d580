"""What every lab shares: loading its modules by path, and checking a learner's code on a seed bank.

Lab folders are named like ``labs/02-idempotency`` (dashes: not importable packages),
so their modules are loaded by path. A lab's ``check`` runs the lab's scenario on a
bank of seeds, each under the lab's nemesis, then under each adversarial schedule,
and returns the first counterexample or one ``Passed`` over every run.

Example (inside a lab's ``lab.py``)::

    def check(create_app, bank="visible", *, secret=None, shrink=True, workers=None):
        return check_bank(LAB, bank, VISIBLE if bank == "visible" else HIDDEN, scenario(create_app),
                          invariants(), schedules, ADVERSARIAL, secret=secret, shrink=shrink, workers=workers)
"""

from __future__ import annotations

import functools
import importlib.util
import io
import linecache
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sandbox import replica_globals
from sandbox.errors import ConfigError, UnknownNameError
from sandbox.explore import Counterexample, Passed, Scenario, explore
from sandbox.faults import Schedule

from .seeds import seed_bank

with warnings.catch_warnings():
    # Starlette asks TestClient users to install httpx2: a notice about the environment, nothing a learner can act
    # on, and red in the notebook's staging cell. The labs' happy-path tests take TestClient from here.
    warnings.filterwarnings("ignore", message=r".*starlette\.testclient|.*httpx2")
    from fastapi.testclient import TestClient

__all__ = [
    "Graded",
    "LearnerOutput",
    "NotPassed",
    "TestClient",
    "alternative_names",
    "cell_source",
    "check_bank",
    "grade_cell",
    "grader",
    "learner_output",
    "load_module",
    "must_pass",
    "mutant_names",
    "rehome",
    "select",
    "service_factory",
]


def load_module(folder: Path, name: str, package: str) -> ModuleType:
    """The module ``folder/name.py`` (``name`` like ``"solution"`` or ``"mutants/http_only"``).

    It is registered in ``sys.modules`` as ``package.name`` so that each replica of a world
    runs a fresh copy of it (``isolate_module=True``): module-level state is per replica.

    Raises:
        UnknownNameError: no such module in the folder.
    """
    path = folder / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.py")) + mutant_names(folder) + alternative_names(folder)
        raise UnknownNameError(f"no module {name!r} in {folder}; modules: {known}")
    module_name = f"{package}.{name.replace('/', '.')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def mutant_names(folder: Path) -> list[str]:
    """The partial fixes in ``folder/mutants``, sorted, as ``load_module`` names them (``"mutants/NAME"``)."""
    return _modules(folder, "mutants")


def alternative_names(folder: Path) -> list[str]:
    """The correct fixes in ``folder/alternatives`` (written unlike the reference solution, as a learner who
    solved it another way would), sorted, as ``load_module`` names them (``"alternatives/NAME"``)."""
    return _modules(folder, "alternatives")


def _modules(folder: Path, kind: str) -> list[str]:
    return sorted(f"{kind}/{p.stem}" for p in (folder / kind).glob("*.py") if not p.stem.startswith("_"))


def service_factory(create_app: Callable[[], Any]) -> Callable[[], Any]:
    """``create_app`` as the world should run it: each replica on a fresh copy of its code.

    A factory from a ``.py`` file is returned as it is: the world re-runs its module for each
    replica (``isolate_module``). A factory defined in a notebook cell lives in ``__main__``,
    which cannot be re-run; so the cell that defined it (IPython keeps each cell's source) is
    run afresh for each replica, as a module of its own, and its ``create_app`` is called.
    Without this, a dictionary at the top of the cell would be one memory shared by every
    replica and surviving every crash: a fix that no real deployment could have.

    The cell must therefore hold the service and only the service (imports, constants,
    functions, ``create_app``); anything else in it runs again at every replica's start.
    """
    if getattr(create_app, "__chaos_dojo_cell__", None) is not None:
        return create_app
    source = cell_source(create_app)
    if source is None:
        return create_app
    code = create_app.__code__
    _warn_if_refused(source)
    compiled = compile(source, code.co_filename, "exec", dont_inherit=True)
    name = create_app.__name__

    def fresh_replica() -> Any:
        module = ModuleType("chaos_dojo_service_cell")
        module.__dict__["__builtins__"] = __builtins__
        module.__dict__.update(replica_globals())  # this replica's own hash() salt, as a separate process has
        sys.modules[module.__name__] = module  # pydantic resolves string annotations through it
        try:
            exec(compiled, module.__dict__)
        except Exception as exc:
            cause = exc
            while getattr(cause, "exceptions", None):  # an exception group (a task group's): the first inside
                cause = cause.exceptions[0]
            raise ConfigError(
                f"running the code that defines {name}() ({code.co_filename}: a notebook cell, or a script run "
                f"as __main__) again for a new replica failed ({type(cause).__name__}: {cause}). Keep the "
                f"service, and only the service, in that cell: its imports, constants, functions and {name}(), "
                f"nothing that runs the lab. From a script, import {name} from a module of its own instead"
            ) from exc
        factory = getattr(module, name, None)
        if not callable(factory):
            raise ConfigError(f"the cell that defined {name}() no longer defines it; run the service cell again")
        return factory()

    fresh_replica.__chaos_dojo_cell__ = create_app  # type: ignore[attr-defined]
    fresh_replica.__module__ = create_app.__module__
    fresh_replica.__qualname__ = create_app.__qualname__
    fresh_replica.__name__ = name
    return fresh_replica


class GradingWarning(UserWarning):
    """Code that runs here but that grading will refuse (``autograder.policy``)."""


@functools.lru_cache(maxsize=64)
def _warn_if_refused(source: str) -> None:
    """Say once per version of a service cell, while the learner works, what grading would refuse in it."""
    from .policy import check as policy

    refused = policy(source)
    if refused is not None:
        warnings.warn(GradingWarning(f"grading will refuse this service: {refused}"), stacklevel=4)


def select(invariants: Sequence[Any], only: Sequence[str]) -> list[Any]:
    """The ``invariants`` named in ``only`` (all of them if ``only`` is empty), in their order.
    A name is the invariant's name up to its arguments: ``"exactly_once"`` for ``exactly_once(db=...)``.

    Raises:
        UnknownNameError: a name that none of the invariants has.
    """
    if not only:
        return list(invariants)
    short = [inv.name.split("(")[0] for inv in invariants]
    unknown = [n for n in only if n not in short]
    if unknown:
        raise UnknownNameError(f"no invariant named {unknown[0]!r} in this lab; its invariants: {short}")
    return [inv for inv, name in zip(invariants, short) if name in only]


def must_pass(result: Counterexample | Passed, *, public: Sequence[int] = ()) -> Passed:
    """What a grade cell asserts: ``result`` (of a hidden bank) passed. Otherwise AssertionError saying what
    broke, and never a seed of the hidden bank: a counterexample is shown under one of the ``public`` seeds
    that reproduces it (``rehome``: its invariant, evidence, shrunk schedule and a replay line that works),
    else without its seed; undecided runs are counted and summarised, without their seeds."""
    if isinstance(result, Passed) and result.ok:
        return result
    if isinstance(result, Passed):
        raise AssertionError("\n" + undecided_text(result))
    shown = rehome(result, public)
    raise AssertionError("\n" + (str(shown) if shown is not None else seedless_text(result, len(public))))


#: How many seeds of the visible bank a hidden counterexample is tried on, to show it under a public seed.
REHOME_SEEDS = 8


def rehome(found: Counterexample, seeds: Sequence[int]) -> Counterexample | None:
    """The same failure under a public seed: the first of ``seeds`` on which ``found``'s schedule and workload
    break the same invariant again (its replay line then works for the learner, and the hidden seed stays
    hidden), or None if none does."""
    from sandbox.checkers import Outcome

    if not found.invariants:
        return None
    workload = {k: v for k, v in found.workload.items() if found.scenario.workload.get(k) != v}
    for seed in seeds:
        run = found.scenario.run(seed, found.schedule, **workload)
        verdict = next((v for v in run.check(list(found.invariants))
                        if v.outcome is Outcome.FAIL and v.invariant == found.verdict.invariant), None)
        if verdict is not None:
            return Counterexample(
                found.scenario, seed, found.schedule, dict(found.workload), verdict, run.fingerprint, found.runs,
                found.original_schedule, found.original_workload, found.seconds, run.world, found.invariants,
            )
    return None


def seedless_text(found: Counterexample, tried: int) -> str:
    """A hidden counterexample told without its seed (none of the ``tried`` public seeds reproduced it)."""
    body = str(found).splitlines()[1:]  # the first line names the seed
    kept = [line for line in body if not line.startswith(("Replay:", "Fingerprint:"))]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join([
        f"Counterexample - {found.scenario.name} - a world of the hidden bank (its seed stays hidden: with these "
        f"faults and this workload, none of the visible bank's first {tried} seeds breaks it)",
        *kept,
        "",
        "To see it yourself: lab.check(create_app) explores the visible bank, whose failures replay; the evidence "
        "and the faults above say what to look for.",
    ])


def undecided_text(result: Passed) -> str:
    """Undecided runs of a hidden bank, counted and summarised without their seeds."""
    summaries = list(dict.fromkeys(f"{v.invariant}: {v.summary}" for _seed, v in result.undecided))
    lines = [f"Not a pass: {len(result.undecided)} of {result.runs} runs of the hidden bank were undecided "
             f"(UNKNOWN is not a pass; the checker could not tell from what the run did), for example:"]
    lines += [f"  {line}" for line in summaries[:5]]
    return "\n".join(lines)


@dataclass(frozen=True)
class Graded:
    """What a passing grade cell shows: how much was checked, never which seeds (the bank stays hidden)."""

    parts: tuple[str, ...]
    runs: int
    faults: tuple[int, int]  # (acted, scheduled)
    recovery: tuple[tuple[str, int], ...]

    def __repr__(self) -> str:
        what = ", ".join(self.parts) or "every invariant"
        acted, scheduled = self.faults
        line = f"Passed: {what}, on {self.runs} runs of the hidden bank and adversarial schedules"
        if scheduled:
            line += f"; {acted} of {scheduled} scheduled faults acted"
        if self.recovery:
            line += "; recovery paths taken: " + ", ".join(f"{name} {n}" for name, n in self.recovery)
        return line


class LearnerOutput:
    """What the learner's code wrote while it was graded (see ``learner_output``): its ``text`` and ``lines``."""

    #: How many of the last lines a failing grade shows.
    TAIL = 10

    def __init__(self) -> None:
        self.text = ""

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def tail(self) -> str:
        """The last lines, for a failing grade's message ("" if nothing was written)."""
        lines = self.lines
        if not lines:
            return ""
        shown = [line if len(line) <= 200 else line[:199] + "…" for line in lines[-self.TAIL:]]
        head = f"Your code wrote {len(lines)} lines to its output while it was graded"
        head += f"; the last {len(shown)}:" if len(lines) > len(shown) else ":"
        return "\n".join([head, *(f"  | {line}" for line in shown)])


def _streams_of_handlers(originals: set[int]) -> list[tuple[Any, Any]]:
    """The logging handlers (root's and every named logger's) that write to one of the stream objects whose
    ids are ``originals`` (the kernel's stdout and stderr), with the stream each writes to."""
    import logging

    loggers = [logging.getLogger()] + [lg for lg in list(logging.Logger.manager.loggerDict.values())
                                       if isinstance(lg, logging.Logger)]
    found = []
    for logger in loggers:
        for handler in logger.handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and id(stream) in originals:
                found.append((handler, stream))
    return found


@contextmanager
def learner_output() -> Iterator[LearnerOutput]:
    """Hold everything written while the learner's code is graded, so that none of it reaches the cell.

    nbgrader scores a grade cell 0 as soon as it has any output on stderr, so a service that logs a
    warning (``logging.warning``, a ``print`` to stderr, a library's warning) would lose every point
    under nbgrader and keep them in the learner's own kernel. Inside this block the process's standard
    streams (the ``sys`` objects and file descriptors 1 and 2, which forked check workers inherit) and
    every logging handler writing to them go to one temporary file; afterwards everything is restored
    and the text is in the ``LearnerOutput`` this yields.

    Example::

        with learner_output() as out:
            result = check(create_app, "hidden")
        print(len(out.lines), "lines held back")
    """
    out = LearnerOutput()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 (a closed or odd stream: nothing to flush)
            pass
    originals = {id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)}
    handlers = _streams_of_handlers(originals)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved_fds = [(fd, os.dup(fd)) for fd in (1, 2)]
        text = io.TextIOWrapper(open(os.dup(sink.fileno()), "wb", buffering=0), encoding="utf-8",
                                errors="replace", line_buffering=True, write_through=True)
        saved_sys = (sys.stdout, sys.stderr)
        try:
            for fd, _saved in saved_fds:
                os.dup2(sink.fileno(), fd)
            sys.stdout = sys.stderr = text
            for handler, _stream in handlers:
                handler.setStream(text)
            yield out
        finally:
            for handler, stream in handlers:
                handler.setStream(stream)
            sys.stdout, sys.stderr = saved_sys
            try:
                text.flush()
            except Exception:  # noqa: BLE001
                pass
            for fd, saved in saved_fds:
                os.dup2(saved, fd)
                os.close(saved)
            text.close()
            sink.seek(0)
            out.text = sink.read().decode("utf-8", errors="replace")


class NotPassed(AssertionError):
    """A graded part that did not pass. In a notebook, IPython shows its message (the counterexample) and not a
    traceback through the grader (``_render_traceback_``, IPython's hook for exceptions that render themselves)."""

    def _render_traceback_(self) -> list[str]:
        return ["\x1b[1;31mNot passed\x1b[0m", *str(self).splitlines()]


def cell_source(create_app: Callable[[], Any]) -> str | None:
    """The source of the notebook cell (or ``__main__`` script) that defined ``create_app``, or None if a module
    file defined it."""
    code = getattr(create_app, "__code__", None)
    if getattr(create_app, "__module__", None) != "__main__" or code is None:
        return None
    return "".join(linecache.getlines(code.co_filename)) or None


def grade_cell(run: Callable[..., str]) -> Callable[..., None]:
    """A grade cell's function from ``run``, which checks and returns a one-line summary or raises
    AssertionError: the learner's output is held back while it runs (``learner_output``), the summary is
    printed, and nothing is returned. nbgrader reads a number returned by a grade cell as partial credit
    and any output on stderr as a failure; a grade cell's only answers are "passed" (quietly, on stdout)
    and an AssertionError (with the counterexample, and the last lines the learner's code wrote)."""

    @functools.wraps(run)
    def cell(*args: Any, **kwargs: Any) -> None:
        with learner_output() as out:
            try:
                summary = run(*args, **kwargs)
            except AssertionError as failed:
                error = failed
            else:
                error = None
        if error is not None:
            tail = out.tail()
            raise NotPassed(f"{error}\n\n{tail}" if tail else str(error)) from None
        if out.lines:
            summary += f" (your code wrote {len(out.lines)} lines of output while graded; held back, never scored)"
        print(summary)

    return cell


def grader(check: Callable[..., Counterexample | Passed], *, lab: str) -> Callable[..., None]:
    """A lab's ``grade`` from its ``check``: what a grade cell runs.

    ``grade(create_app, *only, secret=None)`` checks the hidden bank (drawn from ``secret`` or the
    grading secret: no seed is written in the notebook), only the invariants named in ``only``
    (all if none), and prints a ``Graded`` summary (runs, faults, recovery paths; no seed), or raises
    AssertionError with the counterexample, shown under a seed of ``lab``'s visible bank (``must_pass``).
    It returns nothing (see ``grade_cell``).

    The parts of one submission share one run of the hidden bank: the first grade cell checks every
    invariant on every run (unshrunk), and while that passes, each part's verdict is read from it, for the
    same code (the same cell text) and secret; only a part of code that broke something runs its own check,
    as before (its first counterexample, shrunk). A lab of four parts runs its hidden bank once, not four times.
    """
    shared: dict[tuple[Any, ...], Passed | None] = {}  # None: that code broke something (no world kept here)

    def checked(create_app: Callable[[], Any], source: str | None, only: tuple[str, ...],
                secret: str | None) -> Counterexample | Passed:
        from .seeds import GRADING_SECRET_ENV

        key = (source if source is not None else create_app, secret, os.environ.get(GRADING_SECRET_ENV))
        if key not in shared:
            whole = check(create_app, "hidden", secret=secret, shrink=False)
            shared[key] = whole if isinstance(whole, Passed) else None
        whole = shared[key]
        if whole is not None:
            return part_of(whole, only)
        return check(create_app, "hidden", secret=secret, only=only)

    def grade(create_app: Callable[[], Any], *only: str, secret: str | None = None) -> str:
        from .policy import check as policy

        source = cell_source(create_app)
        refused = policy(source) if source is not None else None
        if refused is not None:
            raise AssertionError(f"Refused, as grading will refuse it: {refused}")
        result = checked(create_app, source, only, secret)
        ok = isinstance(result, Passed) and result.ok
        passed = must_pass(result, public=() if ok else seed_bank(lab, "visible", REHOME_SEEDS))
        return repr(Graded(tuple(only), passed.runs, passed.faults, passed.recovery))

    grade.__doc__ = grader.__doc__
    return grade_cell(grade)


def part_of(result: Passed, only: Sequence[str]) -> Passed:
    """``result`` (every invariant, passed on every run) as the part that checks only the invariants named in
    ``only`` saw it: the same runs, with only those invariants' undecided verdicts (all if ``only`` is empty)."""
    import dataclasses

    if not only:
        return result
    undecided = tuple((seed, v) for seed, v in result.undecided if v.invariant.split("(")[0] in only)
    return dataclasses.replace(result, undecided=undecided)


def check_bank(
    lab: str,
    bank: str,
    size: int,
    scenario: Scenario,
    invariants: Sequence[Any],
    schedules: Callable[[int], Schedule],
    adversarial: Sequence[Schedule],
    *,
    secret: str | None = None,
    shrink: bool = True,
    workers: int | None = None,
    only: Sequence[str] = (),
) -> Counterexample | Passed:
    """Run ``scenario`` on ``size`` seeds of the lab's ``bank`` under ``schedules``, then each
    ``adversarial`` schedule paired with the bank's first seeds; return the first
    ``Counterexample`` (shrunk unless ``shrink=False``), or ``Passed`` over every run.
    ``only`` names the invariants to check (a grade cell's part); empty: all of them.

    Raises:
        ValueError: a bank other than "visible" or "hidden" (from ``seed_bank``).
        UnknownNameError: a name in ``only`` that is not one of ``invariants``.
    """
    invariants = select(invariants, only)
    seeds = seed_bank(lab, bank, size, secret=secret)
    found = explore(scenario, invariants, seeds=seeds, schedules=schedules, shrink=shrink, workers=workers)
    if found.found or not adversarial:
        return found
    paired = (seeds * len(adversarial))[: len(adversarial)]
    hard = explore(scenario, invariants, seeds=paired, schedules=list(adversarial), shrink=shrink, workers=workers)
    if hard.found:
        return hard
    return found + hard
