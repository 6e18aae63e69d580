"""Mutant: the reference solution, but the saga's record is first written after the first step.

Stable ids, compensations in reverse, a recovery loop that finishes or compensates what the
log says is unfinished: all there. But the log is written *after* each step, the first one
included: "there is nothing to remember until something has happened". An orchestrator killed
while its reservation is on the wire (made, its reply not yet in) leaves a reservation that
no record mentions: recovery cannot find what it was never told, and the stock stays held for
an order nobody will finish. Caught by a kill during the first steps of the sagas.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_saves_after_first_step", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)

_real_save = _solution._save


async def _save(db: sandbox.Database, saga: dict) -> None:
    """As the solution's, but a saga that has done nothing yet is not written."""
    if saga["status"] == "running" and not saga["done"]:
        return  # nothing happened yet: nothing to remember
    await _real_save(db, saga)


_solution._save = _save
create_app = _solution.create_app
