"""Mutant: the reference solution, but recovery runs once, when a replica starts.

Saga state persisted before and after every step, stable ids, compensations in reverse: all
there, and recovery is what module 03's trip orchestrator does: at start-up, drive every saga
the log says is unfinished (retrying until orders-db answers). That finishes the sagas of a
replica that was killed and restarted. But a saga's driver can stop without any restart: a
request that cannot save its saga (orders-db out of reach for a moment) fails with its saga
half done, in a replica that lives on. Nobody looks at the log again, and the reservation
and the charge stay for ever. Caught when the orchestrators lose orders-db while sagas run.
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import anyio
from fastapi import FastAPI

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_recovers_only_at_startup", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)


async def recover_at_startup(app: FastAPI) -> None:
    """Drive every unfinished saga in orders-db to its end, once (retrying until the scan succeeds)."""
    db = await sandbox.resolve(app, sandbox.database("orders-db"))
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        try:
            rows = await db.scan("sagas")
            break
        except sandbox.SimulatedFailure:
            await sandbox.sleep(_solution.RECOVERY_INTERVAL)
    for row in rows:
        if row.value["status"] in ("running", "compensating"):
            with contextlib.suppress(sandbox.SimulatedFailure):
                await _solution.drive(row.value, db, http)


_create_app = _solution.create_app


def create_app() -> FastAPI:
    """The solution's service, with recovery at start-up instead of a recovery loop."""
    app = _create_app()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(recover_at_startup, app)
            yield
            tasks.cancel_scope.cancel()

    app.router.lifespan_context = lifespan
    return app
