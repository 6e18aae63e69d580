"""Mutant (declared CP): every refusal is a 503, also when the outcome is unknown.

Everything else is the reference solution. But a follower whose forward to the leader
timed out answers 503, and so does a leader when a follower did not answer in time: "not
applied". Neither knows that. The leader may have applied the forwarded write and only
its answer was lost; the silent follower may have stored the value. A clerk who trusts
the 503 tries again, and the stock moves twice. The step missed: 503 only when nothing
was applied anywhere; a timeout is an unknown outcome (504).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import JSONResponse

import sandbox
from autograder.labs import load_module

CAP_CHOICE = "CP"
PRIMARY = "inventory-0"

_solution = load_module(Path(__file__).parent.parent, "solution_cp", "chaos_dojo_labs.lab01.cp_timeout_as_refusal")
_propose = _solution.propose


async def forward(http: sandbox.HttpClient, method: str, path: str, body: dict | None = None) -> JSONResponse:
    """Relay a request to the leader and its answer back; 503 if the leader does not answer in time."""
    try:
        r = await http.request(method, f"http://{_solution.leader()}{path}", json=body,
                               timeout=_solution.FORWARD_TIMEOUT)
    except sandbox.RequestTimeout:
        raise HTTPException(503, "cannot reach the leader: not applied") from None
    return JSONResponse(r.json(), status_code=r.status_code)


async def propose(http: sandbox.HttpClient, proposal) -> str:
    """The reference's proposal, with "no majority answered" taken for "nobody stored it"."""
    outcome = await _propose(http, proposal)
    return "refused" if outcome == "unknown" else outcome


_solution.forward = forward
_solution.propose = propose


def create_app():
    """The reference solution's service, saying 503 for every refusal."""
    return _solution.create_app()
