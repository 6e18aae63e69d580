"""Mutant: the reference solution, but recovery always compensates what it finds unfinished.

State persisted, steps idempotent, compensations in reverse: all there. Its recovery loop
reasons "a saga nobody finished has failed: undo it", and refunds and releases every saga
it takes over. That is right when the orchestrator died before shipping, and wrong when it
died just after the parcel was booked but before it wrote that down (the shipment exists,
the money goes back), or when the saga's driver is alive but slow (a partition towards
shipping): recovery refunds while the driver goes on to ship. A race between the driver,
the crash and the recovery loop: caught when a kill or a partition lands on a ship step.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_compensate_on_recovery", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)


async def recover(db: sandbox.Database, http: sandbox.HttpClient) -> None:
    """As the solution's, but every saga it takes over is compensated, never finished."""
    for row in await db.scan("sagas"):
        saga = row.value
        if saga["status"] not in ("running", "compensating") or time.time() - saga["updated"] < _solution.STALE:
            continue
        saga["updated"] = time.time()
        saga["status"] = "compensating"  # nobody finished it: call it failed
        saga["refused"] = saga["refused"] or {"step": "ship", "detail": "abandoned"}
        try:
            await db.put("sagas", saga["id"], saga, if_version=row.version)
        except sandbox.VersionConflict:
            continue
        await _solution.drive(saga, db, http)


_solution.recover = recover
create_app = _solution.create_app
