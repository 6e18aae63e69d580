"""Mutant: the reference solution, but recovery runs when an order arrives, not in a loop of its own.

Saga state persisted, stable ids, compensations in reverse, and a recovery that takes over
stale sagas: all there. But instead of a background loop (the lifespan, a task group, things
outside a request), each ``POST /orders`` first looks for stale sagas and drives them. While
orders keep coming, that works. The sagas left behind by a kill near the end of the day, when
no order comes any more, are never looked at: their stock and money stay held. Caught by a kill
of the orchestrator after the last orders arrive (or before a quiet spell).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from fastapi import FastAPI

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_recovers_on_requests", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)

_drive = _solution.drive


async def recover(db: sandbox.Database, http: sandbox.HttpClient) -> None:
    """The solution's ``recover``: claim each stale saga, drive it to its end."""
    for row in await db.scan("sagas"):
        saga = row.value
        if saga["status"] not in ("running", "compensating") or time.time() - saga["updated"] < _solution.STALE:
            continue
        saga["updated"] = time.time()
        try:
            await db.put("sagas", saga["id"], saga, if_version=row.version)
        except sandbox.VersionConflict:
            continue
        await _drive(saga, db, http)


async def drive(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
    """Before a new order's saga, recover the stale ones; then drive the new one."""
    try:
        await recover(db, http)
    except sandbox.SimulatedFailure:
        pass
    return await _drive(saga, db, http)


_create_app = _solution.create_app


def create_app() -> FastAPI:
    """The solution's service without its recovery loop."""
    app = _create_app()
    app.router.lifespan_context = FastAPI().router.lifespan_context
    return app
