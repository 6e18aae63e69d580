"""What an exploration returns: a ``Counterexample`` to replay and look at, or ``Passed``."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from ..checkers.verdict import Verdict
from ..faults.specs import Schedule
from ..world import World
from .scenario import Run, Scenario

# --- the result -----------------------------------------------------------------------------


@dataclass
class Counterexample:
    """A run that broke an invariant, shrunk to its smallest form (see the module docstring).

    ``str()`` is the terminal / grading-feedback text; in a notebook it shows an
    HTML summary with the sequence diagram, fault timeline and trace waterfall.
    """

    scenario: Scenario
    seed: int
    schedule: Schedule
    workload: dict[str, int]
    verdict: Verdict
    fingerprint: str
    runs: int  # runs made to find and shrink it
    original_schedule: Schedule
    original_workload: dict[str, int]
    seconds: float
    _world: World | None = field(default=None, repr=False)
    #: The invariants the run was checked against (to check a replay elsewhere: ``autograder.labs.rehome``).
    invariants: tuple[Any, ...] = field(default=(), repr=False)

    found = True

    @property
    def invariant(self) -> str:
        return self.verdict.invariant

    @property
    def evidence(self) -> tuple[Any, ...]:
        return self.verdict.evidence

    @property
    def world(self) -> World:
        """The world of the shrunk run (replayed once if needed), to look inside or draw."""
        if self._world is None:
            self._world = self.replay().world
        return self._world

    def replay(self) -> Run:
        """Run the counterexample again; the same seed, schedule and workload give the same run."""
        run = self.scenario.run(self.seed, self.schedule, **self._changed_workload())
        return run

    def _changed_workload(self) -> dict[str, int]:
        return {k: v for k, v in self.workload.items() if self.scenario.workload.get(k) != v}

    @property
    def snippet(self) -> str:
        """One line of Python that replays this counterexample, to paste into a notebook or a shell."""
        ref = self.scenario.reference()
        args = [str(self.seed)] + ([repr(self.schedule)] if len(self.schedule) else [])
        # Every knob, defaults included: another scenario of the same name made later (a notebook cell run
        # again) may have other defaults.
        args += [f"{k}={v}" for k, v in self.workload.items()]
        head = "from sandbox.faults import *; " if len(self.schedule) else ""
        if ref.startswith("sandbox.explore."):  # a name of any kind, colons included
            return f"{head}import sandbox.explore; {ref}.replay({', '.join(args)})"
        if ":" in ref:
            module, attr = ref.split(":")
            return f"{head}from {module} import {attr}; {attr}.replay({', '.join(args)})"
        return f"{head}{ref}.replay({', '.join(args)})"

    def __repr__(self) -> str:  # plain-text front ends show this: short, with where to look next
        return (f"<Counterexample {self.scenario.name} seed {self.seed}: {self.verdict.invariant} broken; "
                f"print() it for the story, .replay() to run it again>")

    def __str__(self) -> str:
        v = self.verdict
        sizes = ", ".join(f"{k}={n}" for k, n in self.workload.items()) or "as built"
        lines = [
            f"Counterexample - {self.scenario.name} - seed {self.seed}",
            f"Broken: {v.invariant}: {v.summary}",
        ]
        lines += [f"  - {item}" for item in v.evidence[:8]]
        if len(v.evidence) > 8:
            lines.append(f"  ... and {len(v.evidence) - 8} more")
        lines.append("")
        errors = self._errors()
        if errors:
            lines += errors + [""]
        stalled = getattr(self.world, "stalled", None)
        if stalled and not getattr(self.world, "overran", None):  # an overrun is the verdict's summary already
            lines += [f"Unfinished: {stalled}", ""]
        if len(self.schedule):
            lines.append(f"Faults ({len(self.schedule)}, shrunk from {len(self.original_schedule)}):")
            lines += [f"  {line}" for line in str(self.schedule).splitlines()]
        else:
            lines.append(f"Faults: none needed (shrunk from {len(self.original_schedule)}): the workload alone breaks it")
        lines += [
            f"Workload: {sizes}",
            "",
            f"Replay:  {self.snippet}",
            f"Fingerprint: {self.fingerprint[:16]}   ({self.runs} runs, {self.seconds:.1f} s to find and shrink)",
        ]
        return "\n".join(lines)

    #: How many of the run's service errors the text shows.
    ERRORS_SHOWN = 5

    def _errors(self) -> list[str]:
        """What escaped service code in the run (a 500's exception, a consumer's, a background task that
        died), as a server's log shows it: a heading and one line per error, the first few."""
        errors = self.world.errors
        if not errors:
            return []
        shown = errors[: self.ERRORS_SHOWN]
        more = f", the first {len(shown)}" if len(errors) > len(shown) else ""
        return [f"Errors in service code ({len(errors)}{more}):"] + [f"  {e}" for e in shown]

    def _repr_html_(self) -> str:
        from html import escape

        errors = self._errors()
        parts = [
            # Amounts like "$38.00 ... $39.00" are not LaTeX: keep JupyterLab's MathJax off this output.
            "<div class='tex2jax_ignore mathjax_ignore' style='font-family: sans-serif'>",
            f"<h3 style='color:#b00020'>Counterexample: {escape(self.verdict.invariant)} broken "
            f"(seed {self.seed})</h3>",
            f"<p><b>{escape(self.verdict.summary)}</b></p>",
            "<ul>" + "".join(f"<li><code>{escape(str(e))}</code></li>" for e in self.verdict.evidence[:8]) + "</ul>",
            *([f"<p>{escape(errors[0])}</p><pre style='white-space:pre-wrap'>"
               f"{escape(chr(10).join(line.strip() for line in errors[1:]))}</pre>"] if errors else []),
            *([f"<p><b>Unfinished:</b> {escape(self.world.stalled)}</p>"]
              if getattr(self.world, "stalled", None) and not getattr(self.world, "overran", None) else []),
            *([f"<p>Faults ({len(self.schedule)}, shrunk from {len(self.original_schedule)}):</p>",
               f"<pre>{escape(str(self.schedule))}</pre>"] if len(self.schedule) else
              [f"<p>Faults: none needed (shrunk from {len(self.original_schedule)}): the workload alone breaks it</p>"]),
            f"<p>Workload: {escape(', '.join(f'{k}={n}' for k, n in self.workload.items()) or 'as built')}</p>",
            f"<p>Replay (paste it to run the same story again):</p>"
            f"<pre style='white-space:pre-wrap; word-break:break-all'>{escape(self.snippet)}</pre>",
        ]
        try:
            from .. import viz

            figure = viz.counterexample_figure(self.world, highlight=self.verdict)
            png = base64.b64encode(viz.to_png(figure)).decode("ascii")
            parts.append(f"<img alt='sequence diagram and faults' style='max-width:100%' src='data:image/png;base64,{png}'>")
        except Exception as exc:  # pictures are a bonus: never hide the counterexample
            parts.append(f"<p><i>(no picture: {escape(type(exc).__name__)}: {escape(str(exc))})</i></p>")
        parts.append("</div>")
        return "\n".join(parts)

    def picture(self) -> Any:
        """The counterexample's figure: sequence diagram, fault timeline and (with tracing) trace waterfall."""
        from .. import viz

        return viz.counterexample_figure(self.world, highlight=self.verdict)


@dataclass(frozen=True)
class Passed:
    """No invariant failed in any run. ``undecided`` lists runs where a checker said UNKNOWN,
    which never counts as a pass: ``ok`` is True only if there were none."""

    scenario: Scenario
    runs: int
    seeds: tuple[int, ...]
    undecided: tuple[tuple[int, Verdict], ...]
    seconds: float
    #: (faults that acted, faults scheduled), over every run
    faults: tuple[int, int] = (0, 0)
    #: recovery paths taken, over every run (see ``sandbox.faults.coverage``)
    recovery: tuple[tuple[str, int], ...] = ()
    #: ``sometimes`` / ``reachable`` assertions that never held in any run
    unexercised: tuple[str, ...] = ()

    found = False

    @property
    def ok(self) -> bool:
        return not self.undecided

    def __repr__(self) -> str:
        state = "no counterexample" if self.ok else f"{len(self.undecided)} runs undecided (not a pass)"
        return f"<Passed {self.scenario.name}: {self.runs} runs, {state}; print() it for the details>"

    def __str__(self) -> str:
        span = f"seeds {self.seeds[0]}..{self.seeds[-1]}" if self.seeds else "no seeds"
        lines = [f"No counterexample - {self.scenario.name} - {self.runs} runs ({span}), {self.seconds:.1f} s"]
        fired, total = self.faults
        if total:
            lines.append(f"Faults: {fired} of {total} scheduled faults acted")
        if self.recovery:
            lines.append("Recovery paths taken: " + ", ".join(f"{name} {n}" for name, n in self.recovery))
        if self.undecided:
            lines.append(f"But {len(self.undecided)} runs were undecided (UNKNOWN is not a pass):")
            lines += [f"  seed {seed}: {v.invariant}: {v.summary}" for seed, v in self.undecided[:5]]
        if self.unexercised:
            lines.append("Never exercised in any run (a green result says less than it seems):")
            lines += [f"  {m}" for m in self.unexercised]
        return "\n".join(lines)

    def __add__(self, other: Passed) -> Passed:
        """Two green explorations of one scenario as one: runs, faults and recovery paths add up;
        an assertion is unexercised only if neither exercised it."""
        if not isinstance(other, Passed):
            return NotImplemented
        recovery: dict[str, int] = dict(self.recovery)
        for path, n in other.recovery:
            recovery[path] = recovery.get(path, 0) + n
        return Passed(
            self.scenario, self.runs + other.runs, self.seeds + tuple(s for s in other.seeds if s not in self.seeds),
            self.undecided + other.undecided, self.seconds + other.seconds,
            (self.faults[0] + other.faults[0], self.faults[1] + other.faults[1]), tuple(sorted(recovery.items())),
            tuple(m for m in self.unexercised if m in other.unexercised),
        )

    def _repr_html_(self) -> str:
        from html import escape

        return f"<pre>{escape(str(self))}</pre>"


