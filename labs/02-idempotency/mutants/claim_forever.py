"""Mutant: a claim is for ever, not a lease.

Everything else is the reference solution (the key claimed durably before the charge, the
stored response replayed, 422 / 400, the deduplicating consumer). But a key found "in
flight" is answered 409 whatever its age: when the replica holding the claim dies between
claiming and recording, every retry of that payment hears 409 until the shopper gives up,
and the payment can never complete. No double charge, no lost event: only a payment left in
flight for ever, which the Idempotency-Key semantics check catches after a Kill.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab02.claim_forever")
_solution.LEASE = float("inf")  # no claim ever grows old enough to be taken over


def create_app():
    """The reference solution's service, with claims that never expire."""
    return _solution.create_app()
