"""Mutant: the reference solution, but its recovery loop does not survive a database error.

Saga state persisted, stable ids, compensations in reverse, and a recovery loop started by
the app's lifespan that takes over stale sagas every 0.3 s: all there. But the loop has no
``try``: the first time orders-db does not answer (a partition, a slow disk), ``db.scan``
raises, the loop's task dies, and the replica goes on serving orders with no recovery at all.
The same outage makes requests fail with their sagas half done, and no kill comes to restart
the replica: those sagas stay half done for ever. Caught when the orchestrators lose orders-db
while sagas run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_recovery_dies_on_db_error", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)


async def recovery_loop(app: FastAPI) -> None:
    """As the solution's, without the ``try``: a database error ends the loop."""
    db = await sandbox.resolve(app, sandbox.database("orders-db"))
    http = await sandbox.resolve(app, sandbox.http_client)
    while True:
        await _solution.recover(db, http)
        await sandbox.sleep(_solution.RECOVERY_INTERVAL)


_solution.recovery_loop = recovery_loop
create_app = _solution.create_app
