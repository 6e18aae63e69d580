"""Mutant: the reference solution, but a refusal undoes only the step just before it.

Saga state persisted, stable ids, retries until a definite answer, a recovery loop: all there.
But compensation is written as "undo the previous step": a declined card releases the stock
(right: that is all there was), and an address the carrier does not serve refunds the charge
and stops there. The reservation made two steps earlier is never released: the units stay
held for an order that was refused, and the shelf slowly empties. Caught without any fault,
by the first order to an address the carrier does not serve.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_undoes_only_the_last_step", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)


async def drive(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
    """As the solution's, but only the last step done is compensated."""
    if saga["status"] == "running":
        for step in _solution.STEPS:
            if step in saga["done"]:
                continue
            ok, why = await _solution._until_definite(http, *_solution._call(saga, step))
            if ok:
                saga["done"].append(step)
            else:
                saga["status"], saga["refused"] = "compensating", {"step": step, "detail": why}
            await _solution._save(db, saga)
            if not ok:
                break
        else:
            saga["status"] = "completed"
            await _solution._save(db, saga)
    if saga["status"] == "compensating":
        last = saga["done"][-1:]  # the step just before the refusal: "undo what the previous step did"
        for step in last:
            if step not in saga["undone"]:
                await _solution._until_definite(http, *_solution._undo(saga, step))
                saga["undone"].append(step)
                await _solution._save(db, saga)
        saga["status"] = "compensated"
        await _solution._save(db, saga)
    return saga


_solution.drive = drive
create_app = _solution.create_app
