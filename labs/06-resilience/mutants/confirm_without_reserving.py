"""Mutant: the fallback confirms the order without reserving the stock.

When inventory is unavailable the checkout charges and confirms anyway ("we will sort the
stock out later"): fast, and no outage to the shopper, but a promise of stock nobody held.
A fallback must say what really happened: 503, or 202 pending and a reservation later.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.confirm_without_reserving")
_reserve = _solution.Checkout.reserve


async def _reserve_or_pretend(self, http, order, until):
    await _reserve(self, http, order, until)
    return True  # reserved or not, carry on


_solution.Checkout.reserve = _reserve_or_pretend


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
