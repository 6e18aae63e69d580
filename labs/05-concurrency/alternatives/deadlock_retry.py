"""A correct alternative: locks taken in the order the request names them, deadlocks broken by the lock timeout.

The reference takes a transfer's two row locks in key order, so that no two transactions
ever wait for each other in a circle. This one does not: a transfer east -> west and one west
-> east can deadlock. But every wait is bounded (``lock_timeout``): the first of the two to
time out is aborted, releasing its lock, the other goes through, and the aborted one is tried
again after a jittered backoff (or answered 503). That is what PostgreSQL does with a
deadlock it detects (it aborts one of the transactions, the application retries it): a
deadlock is not a bug if something breaks it quickly and the work is retried.
"""

from __future__ import annotations

from pathlib import Path

from autograder.labs import load_module

# The reference solution with one change. The world runs this module afresh for each replica (so create_app is here).
_service = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab05.deadlock_retry")
_service.lock_order = lambda keys: list(dict.fromkeys(keys))  # source, then target: deadlocks possible


def create_app():
    """The reference service, its locks in request order: see the module docstring."""
    return _service.create_app()
