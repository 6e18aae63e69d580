"""Mutant: the reference solution, but a customer kept waiting too long is told the order failed.

Saga state persisted, stable ids, compensations in reverse, a recovery loop: all there. The
customer's browser gives up after four seconds, so ``POST /orders`` answers within three:
if the saga has not ended by then, it answers 409 "we could not place your order, please try
again" and leaves the saga to the recovery loop. The recovery loop does what it should: it
drives the saga to its end, and when the participants were only slow, that end is *completed*.
The customer was told "refused" and is charged, and the parcel ships; trying again, as told,
buys it twice. (A 503 or 504, "no answer yet", would have been the truth.) Caught when a
participant's replies are lost or slow for seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import anyio
from fastapi import HTTPException

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_refuses_while_still_running", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)

#: How long a customer is kept waiting before being told the order failed.
DEADLINE = 3.0
_drive = _solution.drive


async def drive(saga: dict, db: sandbox.Database, http: sandbox.HttpClient) -> dict:
    """As the solution's, but a request that has waited ``DEADLINE`` seconds answers 409 (the recovery
    loop, which runs without a deadline, finishes the saga)."""
    if saga["done"] or saga["status"] != "running":
        return await _drive(saga, db, http)  # a saga taken over by recovery
    with anyio.move_on_after(DEADLINE):
        return await _drive(saga, db, http)
    raise HTTPException(409, f"we could not place order {saga['id']} in time, please try again")


_solution.drive = drive
create_app = _solution.create_app
