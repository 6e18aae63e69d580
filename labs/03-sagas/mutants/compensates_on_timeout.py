"""Mutant: the reference solution, but a step that times out counts as failed, and the saga is compensated.

Saga state persisted, stable ids, compensations in reverse, recovery after a restart: all
there, and a 503 ("busy, try again") is retried. But a timeout is read the way an exception
usually is: the call failed, so the step did not happen, so undo the steps before it. A
timeout says nothing of the kind: the request may have arrived and been done while its reply
was slow or lost. A charge that timed out is kept while the stock is released and the
customer told "declined"; a shipment that timed out ships while the card is refunded. Works
without faults and under kills; caught by delayed or lost replies.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sandbox

_spec = importlib.util.spec_from_file_location(
    "_lab03_solution_for_compensates_on_timeout", Path(__file__).parent.parent / "solution.py"
)
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)


async def _until_definite(http: sandbox.HttpClient, method: str, url: str, body: dict | None) -> tuple[bool, str]:
    """As the solution's, but a timeout is taken for a refusal (only a 5xx is retried)."""
    delay = _solution.BACKOFF
    while True:
        try:
            r = await http.request(method, url, timeout=_solution.TIMEOUT,
                                   **({"json": body} if body is not None else {}))
        except sandbox.RequestTimeout:
            return False, f"{method} {url} timed out"  # it failed: compensate
        if r.status_code < 300:
            return True, ""
        if 400 <= r.status_code < 500:
            return False, r.text
        await sandbox.sleep(delay)
        delay = min(delay * 2, _solution.MAX_BACKOFF)


_solution._until_definite = _until_definite
create_app = _solution.create_app
