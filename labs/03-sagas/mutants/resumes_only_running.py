"""Mutant: the reference solution, but recovery takes over only sagas still going forward.

Saga state persisted, stable ids, compensations in reverse, a recovery loop that finishes a
stale saga found ``running``: all there. But a saga found ``compensating`` is skipped: "a
compensation is two quick calls, it will be done by whoever started it". Not if whoever
started it was killed between the refund and the release, or while a compensation's reply was
lost and it kept asking: the record says ``compensating`` for ever, and the stock (or the
money) stays held for an order that was refused. Caught by a kill while sagas compensate.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_resumes_only_running", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)


async def recover(db: sandbox.Database, http: sandbox.HttpClient) -> None:
    """As the solution's, but only sagas found ``running`` are taken over."""
    for row in await db.scan("sagas"):
        saga = row.value
        if saga["status"] != "running" or time.time() - saga["updated"] < _solution.STALE:
            continue
        saga["updated"] = time.time()
        try:
            await db.put("sagas", saga["id"], saga, if_version=row.version)
        except sandbox.VersionConflict:
            continue
        await _solution.drive(saga, db, http)


_solution.recover = recover
create_app = _solution.create_app
