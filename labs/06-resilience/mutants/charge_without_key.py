"""Mutant: the charge is retried without an ``Idempotency-Key``.

A charge whose answer is late is sent again as a new charge: when payments is slow the card
is charged twice (or three times) for one order.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.charge_without_key")
import sandbox  # noqa: E402


async def _charge(self, http, order, until):
    import time

    body = {"order_id": order.order_id, "amount": order.amount}
    while (left := until - time.monotonic()) > 0.01:
        try:
            r = await http.post("http://payments/charges", json=body, timeout=min(_solution.CHARGE_TIMEOUT, left))
            if r.status_code == 201:
                return True
        except sandbox.RequestTimeout:
            pass
    return None


_solution.Checkout.charge = _charge


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
