"""Checkers: did a finished run keep its promises?

An invariant takes the finished world (or just its history) and returns a
``Verdict``: PASS, FAIL or UNKNOWN, with the evidence that decided it. UNKNOWN
(the checker ran out of time, or the run did not exercise what it checks) never
counts as a pass: ``bool(verdict)`` is True only for PASS.
"""

from __future__ import annotations

from .linearizability import check_linearizability
from .models import Call, KeyValueModel, Model, RegisterModel
from .verdict import Outcome, Verdict

__all__ = [
    "Outcome",
    "Verdict",
    # linearizability
    "check_linearizability",
    "Model",
    "RegisterModel",
    "KeyValueModel",
    "Call",
]
