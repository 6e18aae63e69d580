"""Checkers: did a finished run keep its promises?

An invariant takes the finished world (or just its history) and returns a
``Verdict``: PASS, FAIL or UNKNOWN, with the evidence that decided it. UNKNOWN
(the checker ran out of time, or the run did not exercise what it checks) never
counts as a pass: ``bool(verdict)`` is True only for PASS.

The library of invariants (``no_double_charge()``, ``stock_never_negative()``...)
and ``check(world, invariants)`` are described in ``sandbox.checkers.invariants``.
"""

from __future__ import annotations

from .invariants import (
    Invariant,
    breaker_transitions_legal,
    check,
    connected_traces,
    conserved,
    exactly_once,
    money_conserved,
    no_double_charge,
    retries_within_budget,
    saga_completed_or_compensated,
    stock_conserved,
    stock_never_negative,
)
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
    # invariants
    "Invariant",
    "check",
    "no_double_charge",
    "stock_never_negative",
    "conserved",
    "stock_conserved",
    "money_conserved",
    "exactly_once",
    "saga_completed_or_compensated",
    "breaker_transitions_legal",
    "retries_within_budget",
    "connected_traces",
]
