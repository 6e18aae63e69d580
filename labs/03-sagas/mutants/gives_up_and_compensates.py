"""Mutant: the reference solution, but a step that stays unanswered is given up after a few retries.

Saga state persisted, compensations in reverse, stable ids, recovery after a restart: all
there. But the retry loop has a budget, as retry loops often do: five attempts (about four
seconds, longer than any blip the orchestrator met in testing), after which the saga is
compensated, the step in doubt included (a refund or a release of a step that never happened
only leaves a tombstone, so that much is safe). A timeout is not a refusal: when the *replies*
from shipping are lost for longer than the budget, the parcel was booked (the request arrived,
the answer did not), nothing undoes a shipment, and the orchestrator refunds the card and
releases the stock of an order that ships. Works under every short fault; caught by the
replies of shipping lost for several seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_gives_up_and_compensates", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)

#: How many times a step or a compensation is sent before the saga gives up on it.
MAX_ATTEMPTS = 5
GAVE_UP = "no definite answer after {n} attempts"


async def _until_definite(http: sandbox.HttpClient, method: str, url: str, body: dict | None) -> tuple[bool, str]:
    """As the solution's, but after ``MAX_ATTEMPTS`` unanswered attempts the step counts as refused."""
    delay = _solution.BACKOFF
    for _attempt in range(MAX_ATTEMPTS):
        try:
            r = await http.request(method, url, timeout=_solution.TIMEOUT,
                                   **({"json": body} if body is not None else {}))
        except sandbox.RequestTimeout:
            r = None
        if r is not None and r.status_code < 300:
            return True, ""
        if r is not None and 400 <= r.status_code < 500:
            return False, r.text
        await sandbox.sleep(delay)
        delay = min(delay * 2, _solution.MAX_BACKOFF)
    return False, GAVE_UP.format(n=MAX_ATTEMPTS)  # the guess: call it refused


_drive = _solution.drive


async def drive(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
    """As the solution's, but a step given up on is compensated too (it may have happened)."""
    if saga["status"] == "running":
        for step in _solution.STEPS:
            if step in saga["done"]:
                continue
            ok, why = await _until_definite(http, *_solution._call(saga, step))
            if ok or why == GAVE_UP.format(n=MAX_ATTEMPTS):
                saga["done"].append(step)  # done, or perhaps done: undo it as well if it comes to that
            if not ok:
                saga["status"], saga["refused"] = "compensating", {"step": step, "detail": why}
            await _solution._save(db, saga)
            if not ok:
                break
        else:
            saga["status"] = "completed"
            await _solution._save(db, saga)
    return await _drive(saga, db, http)


_solution._until_definite = _until_definite
_solution.drive = drive
create_app = _solution.create_app
