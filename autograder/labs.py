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

import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from sandbox.errors import UnknownNameError
from sandbox.explore import Counterexample, Passed, Scenario, explore
from sandbox.faults import Schedule

from .seeds import seed_bank


def load_module(folder: Path, name: str, package: str) -> ModuleType:
    """The module ``folder/name.py`` (``name`` like ``"solution"`` or ``"mutants/http_only"``).

    It is registered in ``sys.modules`` as ``package.name`` so that each replica of a world
    runs a fresh copy of it (``isolate_module=True``): module-level state is per replica.

    Raises:
        UnknownNameError: no such module in the folder.
    """
    path = folder / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.py")) + mutant_names(folder)
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
    return sorted(f"mutants/{p.stem}" for p in (folder / "mutants").glob("*.py") if not p.stem.startswith("_"))


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
) -> Counterexample | Passed:
    """Run ``scenario`` on ``size`` seeds of the lab's ``bank`` under ``schedules``, then each
    ``adversarial`` schedule paired with the bank's first seeds; return the first
    ``Counterexample`` (shrunk unless ``shrink=False``), or ``Passed`` over every run.

    Raises:
        ValueError: a bank other than "visible" or "hidden" (from ``seed_bank``).
    """
    seeds = seed_bank(lab, bank, size, secret=secret)
    found = explore(scenario, invariants, seeds=seeds, schedules=schedules, shrink=shrink, workers=workers)
    if found.found or not adversarial:
        return found
    paired = (seeds * len(adversarial))[: len(adversarial)]
    hard = explore(scenario, invariants, seeds=paired, schedules=list(adversarial), shrink=shrink, workers=workers)
    if hard.found:
        return hard
    return found + hard
