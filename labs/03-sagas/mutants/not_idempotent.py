"""Mutant: the reference solution, but every retry of a step sends a fresh idempotency id.

Saga state persisted, compensations in reverse, recovery after a restart: all there. But
the retry loop treats a timeout as "it failed, try again" and makes up a new id for each
attempt (``ch-ord-...-3f9a1c``), the way a "unique request id" is often generated per HTTP
call. The participants are idempotent only by the id the caller gives, so when a reply is
lost or slow the step happens twice: two reservations, or two charges, for one order.
Works without faults and under kills; caught by loss or delay between the orchestrator and
a participant.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location("_lab03_solution_for_not_idempotent", Path(__file__).parent.parent / "solution.py")
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)

#: The id each step finally succeeded with (to refund or release the right one), in memory.
_USED: dict[str, str] = {}


async def _until_definite(http: sandbox.HttpClient, method: str, url: str, body: dict | None) -> tuple[bool, str]:
    """As the solution's, but each attempt carries a new id: a retry is a new request."""
    delay = _solution.BACKOFF
    while True:
        attempt = dict(body) if body is not None else None
        if attempt is not None and "id" in attempt:
            attempt["id"] = f"{body['id']}-{uuid.uuid4().hex[:6]}"  # a unique id per request
        try:
            r = await http.request(method, url, timeout=_solution.TIMEOUT,
                                   **({"json": attempt} if attempt is not None else {}))
        except sandbox.RequestTimeout:
            r = None
        if r is not None and r.status_code < 300:
            if attempt is not None and "id" in attempt:
                _USED[body["id"]] = attempt["id"]
            return True, ""
        if r is not None and 400 <= r.status_code < 500:
            return False, r.text
        await sandbox.sleep(delay)
        delay = min(delay * 2, _solution.MAX_BACKOFF)


def _undo(saga: dict, step: str) -> tuple[str, str, dict | None]:
    oid = saga["id"]
    if step == "charge":
        return "POST", "http://payments/refunds", {"charge_id": _USED.get(f"ch-{oid}", f"ch-{oid}")}
    return "DELETE", f"http://inventory/reservations/{_USED.get(f'res-{oid}', f'res-{oid}')}", None


_solution._until_definite = _until_definite
_solution._undo = _undo
create_app = _solution.create_app
