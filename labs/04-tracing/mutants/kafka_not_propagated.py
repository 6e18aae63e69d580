"""Mutant: the reference solution, but the context crosses HTTP only, never Kafka.

Attributes on every span that handles an order, errors recorded and marked, every span a
context manager: all there. But ``POST /orders`` sends ``order-placed`` without the
``traceparent`` header (the learner trusted "auto-instrumentation" to carry it, as it does
over HTTP; the producer does not). Every message the consumer handles starts a trace of its
own: the customer's trace ends at the producer, and the warehouse's and courier's work for the
order sits in another trace, found only by searching for the order id. Caught on every run,
faults or not: the CONSUMER span is a root (``connected_traces``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_lab04_solution_for_kafka_not_propagated",
                                               Path(__file__).parent.parent / "solution.py")
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)


def _no_inject(carrier: dict) -> None:
    """The one change: nothing goes into the message headers."""


_solution.inject = _no_inject
create_app = _solution.create_app
