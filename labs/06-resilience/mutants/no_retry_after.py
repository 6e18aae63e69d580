"""Mutant: refused with a bare 503, no ``Retry-After``.

The checkout fails fast, but a 503 without ``Retry-After`` tells the shopper (and every
client library that retries 503s) nothing about when to come back: they retry at once.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so create_app
# must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab06.no_retry_after")
_refuse = _solution.Checkout.refuse


def _bare(self, detail):
    response = _refuse(self, detail)
    del response.headers["retry-after"]
    return response


_solution.Checkout.refuse = _bare


def create_app():
    """The reference solution's checkout, patched as the module docstring says."""
    return _solution.create_app()
