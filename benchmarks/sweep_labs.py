"""Do the right fixes pass everywhere? Every correct implementation of every lab, under many grading secrets and
thousands of seeds.

A grade is a claim about a learner's code, so the labs' correct implementations (each lab's reference
solutions, ``solution*.py``, and the correct alternatives written unlike them, ``alternatives/*.py``) must pass
every graded part whatever the grading secret, and no seed may fail them. The test suite holds a small version
of this sweep (a few secrets, a few hundred seeds per lab); this script holds the long one:

1. **Secrets**: ``lab.check(create_app, "hidden", secret=...)`` (the hidden bank drawn from the secret, then the
   adversarial schedules: exactly what a grade cell runs, every part at once) under ``--secrets`` secrets
   (``sweep-0``, ``sweep-1``...).
2. **Seeds**: the lab's scenario under its nemesis on ``--seeds`` seeds of a hidden bank of their own (secret
   ``sweep-seeds``), every invariant of the lab checked in every run; a failing seed is recorded and the sweep
   goes on after it, so the figure is a count, not a first failure.

It prints one line per implementation and part, the failures with their seed and invariant (this is the
instructors' tool: seeds are fine here), and writes the figures as JSON (``--out``). Run it from the repository
root::

    python benchmarks/sweep_labs.py                               # every lab: 50 secrets, 5,000 seeds (hours)
    python benchmarks/sweep_labs.py --labs 02-idempotency --secrets 5 --seeds 200
    python benchmarks/sweep_labs.py --only solution               # the references alone

It exits non-zero if any implementation failed anything, so it can gate a release.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.labs import alternative_names, load_module  # noqa: E402
from autograder.seeds import seed_bank  # noqa: E402
from sandbox.explore import explore  # noqa: E402

perf_counter = inspect.unwrap(time.perf_counter)  # the real clock, whatever the sandbox redirects
LABS = sorted(p.parent.name for p in (ROOT / "labs").glob("*/lab.py"))


@dataclass
class Figures:
    """What one implementation of one lab did in the sweep."""

    lab: str
    implementation: str
    secrets: int = 0
    secrets_failed: list[dict[str, Any]] = field(default_factory=list)
    seeds: int = 0
    seeds_failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.secrets_failed and not self.seeds_failed


def load(name: str, module: str = "lab") -> ModuleType:
    """The module ``labs/<name>/<module>.py`` (``"lab"``, ``"solution"``, ``"alternatives/NAME"``)."""
    return load_module(ROOT / "labs" / name, module, f"chaos_dojo_labs.sweep_{name.replace('-', '_')}")


def implementations(name: str) -> list[str]:
    """The correct implementations of a lab: its reference solutions, then its alternatives."""
    folder = ROOT / "labs" / name
    return sorted(p.stem for p in folder.glob("solution*.py")) + alternative_names(folder)


def invariants_for(lab: ModuleType, create_app: Any) -> list:
    """The lab's invariants for this implementation (lab 01: those of its declared CAP choice)."""
    if hasattr(lab, "cap_choice"):
        return lab.invariants(lab.cap_choice(create_app))
    return lab.invariants()


def nemesis_for(lab: ModuleType, create_app: Any) -> Any:
    """The lab's nemesis for this implementation (lab 01: the one of its declared CAP choice, which draws
    disk losses for CP and duplicated replication messages for AP)."""
    if hasattr(lab, "schedules_for"):
        return lab.schedules_for(lab.cap_choice(create_app))
    return lab.schedules


def sweep_secrets(lab: ModuleType, create_app: Any, secrets: int, workers: int, figures: Figures) -> None:
    for i in range(secrets):
        secret = f"sweep-{i}"
        result = lab.check(create_app, "hidden", secret=secret, shrink=False, workers=workers)
        figures.secrets += 1
        if result.found or not result.ok:
            what = (f"{result.invariant}: {result.verdict.summary}" if result.found
                    else f"{len(result.undecided)} undecided: {result.undecided[0][1]}")
            seed = result.seed if result.found else result.undecided[0][0]
            figures.secrets_failed.append({"secret": secret, "seed": seed, "what": what[:300]})
            print(f"    secret {secret}: FAILED at seed {seed}: {what[:200]}", flush=True)


def sweep_seeds(lab: ModuleType, create_app: Any, seeds: int, workers: int, figures: Figures) -> None:
    scenario = lab.scenario(create_app)
    invariants = invariants_for(lab, create_app)
    remaining = seed_bank(lab.LAB, "hidden", seeds, secret="sweep-seeds")
    while remaining:
        result = explore(scenario, invariants, seeds=remaining, schedules=nemesis_for(lab, create_app),
                         shrink=False, workers=workers)
        if not result.found:
            figures.seeds += result.runs
            for seed, verdict in result.undecided:
                figures.seeds_failed.append({"seed": seed, "what": f"UNKNOWN {verdict.invariant}: {verdict.summary}"[:300]})
                print(f"    seed {seed}: UNDECIDED {verdict.invariant}: {verdict.summary[:200]}", flush=True)
            return
        at = remaining.index(result.seed)
        figures.seeds += at + 1
        what = f"{result.invariant}: {result.verdict.summary}"
        figures.seeds_failed.append({"seed": result.seed, "what": what[:300]})
        print(f"    seed {result.seed}: FAILED {what[:200]}", flush=True)
        remaining = remaining[at + 1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labs", nargs="*", default=LABS, help=f"which labs (default: all: {' '.join(LABS)})")
    parser.add_argument("--only", default=None, help="only implementations whose name contains this")
    parser.add_argument("--secrets", type=int, default=50, help="grading secrets per implementation (default 50)")
    parser.add_argument("--seeds", type=int, default=5000, help="nemesis seeds per implementation (default 5000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "chaos-dojo-sweep.json",
                        help="where to write the figures as JSON")
    args = parser.parse_args(argv)
    unknown = [name for name in args.labs if name not in LABS]
    if unknown:
        parser.error(f"no lab named {unknown[0]!r}; labs: {', '.join(LABS)}")
    results: list[Figures] = []
    for name in args.labs:
        lab = load(name)
        for impl in implementations(name):
            if args.only and args.only not in impl:
                continue
            create_app = load(name, impl).create_app
            figures = Figures(name, impl)
            print(f"{name} {impl}:", flush=True)
            started = perf_counter()
            if args.secrets:
                sweep_secrets(lab, create_app, args.secrets, args.workers, figures)
            if args.seeds:
                sweep_seeds(lab, create_app, args.seeds, args.workers, figures)
            figures.seconds = perf_counter() - started
            results.append(figures)
            print(f"  {name} {impl}: secrets {figures.secrets - len(figures.secrets_failed)}/{figures.secrets} "
                  f"passed; seeds {figures.seeds - len(figures.seeds_failed)}/{figures.seeds} passed; "
                  f"{figures.seconds:.0f} s", flush=True)
            args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    print()
    print(f"{'lab':<16} {'implementation':<34} {'secrets':>9} {'seeds':>11} {'seconds':>8}")
    for r in results:
        print(f"{r.lab:<16} {r.implementation:<34} {r.secrets - len(r.secrets_failed):>4}/{r.secrets:<4} "
              f"{r.seeds - len(r.seeds_failed):>5}/{r.seeds:<5} {r.seconds:>8.0f}")
    print(f"\nfigures written to {args.out}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
