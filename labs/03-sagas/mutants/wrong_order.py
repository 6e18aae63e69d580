"""Mutant: the reference solution, but it compensates in the order the steps were done.

State persisted, steps retried idempotently, recovery after a restart: all there. But when
shipping refuses an address, it releases the stock *before* refunding the charge, walking
the saga forwards instead of backwards. For a moment the books say "stock back on the
shelf, money still taken"; a crash in that moment, or a concurrent order for the last
units, leaves a story no compensation order can tell. Caught without any fault: the first
refused shipment undoes ``reserve`` before ``charge``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_lab03_solution_for_wrong_order", Path(__file__).parent.parent / "solution.py")
_solution = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)

# The one change: compensations walk the steps forwards.
_solution.COMPENSATION_ORDER = ("reserve", "charge")
create_app = _solution.create_app
