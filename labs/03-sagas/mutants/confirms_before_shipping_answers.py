"""Mutant: the reference solution, but a customer is told "confirmed" once paid, if the carrier is slow.

Saga state persisted, stable ids, compensations in reverse, a recovery loop: all there. But the
customer should not wait for a slow carrier: once the card is charged, the shipment is asked for
once, and if shipping does not answer at once (a timeout, a 503), ``POST /orders`` answers 201
"confirmed" and leaves the booking to the recovery loop, which drives the saga properly. Every
saga still ends completed or compensated. But shipping had not said yes: when the address is
one the carrier does not serve and its refusal is late or lost, the order the customer was told
is confirmed gets refunded and released. A confirmation must wait for the last step's answer.
Caught when shipping's replies are slow or lost while such an order ships.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_confirms_before_shipping_answers", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)

_drive = _solution.drive


async def drive(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
    """For a request: as the solution's up to the charge; then one try at shipping, and if it does not answer,
    report the saga completed (the recovery loop books the parcel later)."""
    if saga["status"] != "running" or saga["done"]:
        return await _drive(saga, db, http)
    for step in ("reserve", "charge"):
        ok, why = await _solution._until_definite(http, *_solution._call(saga, step))
        if not ok:
            saga["status"], saga["refused"] = "compensating", {"step": step, "detail": why}
            await _solution._save(db, saga)
            return await _drive(saga, db, http)
        saga["done"].append(step)
        await _solution._save(db, saga)
    method, url, body = _solution._call(saga, "ship")
    try:
        r = await http.request(method, url, json=body, timeout=_solution.TIMEOUT)
    except sandbox.RequestTimeout:
        r = None
    if r is None or r.status_code >= 500:
        return {**saga, "status": "completed"}  # paid: as good as done (recovery books the parcel)
    return await _drive(saga, db, http)  # an answer: the solution's way (asks again, gets the same one)


async def recover(db: sandbox.Database, http: sandbox.HttpClient) -> None:
    """The solution's recovery, driving with the solution's drive."""
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


_solution.drive = drive
_solution.recover = recover
create_app = _solution.create_app
