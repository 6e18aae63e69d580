"""Mutant: a charge that timed out is answered 503, as if nothing happened.

The charge is retried with its key (no double charge), but when payments never answers in
time the order is refused: the money may well have moved. Refused and charged: the shopper
pays again, or calls the bank. A charge of unknown fate is "pending" (202), not "refused".
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.refuse_after_charge_timeout")
_honest_place = _solution.Checkout.place


async def _refusing_place(self, http, order):
    response = await _honest_place(self, http, order)
    if response.status_code == 202:
        return self.refuse("payments did not answer; try again later")
    return response


_solution.Checkout.place = _refusing_place


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
