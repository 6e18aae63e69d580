"""Mutant: the request's fingerprint is Python's ``hash()`` of its canonical JSON.

Everything else is the reference solution. ``hash()`` is quick and equal payloads give equal
hashes, in one process: under FastAPI's TestClient, or in one replica, it is perfect. But
Python salts ``hash()`` of strings per process (``PYTHONHASHSEED``): the other replica, or
this one after a restart, computes another number for the same payload. A retry or a
double-click that reaches another replica than the one that claimed the key is told 422
("this key was used for a different payment") for the very payment it is retrying, and the
shopper never learns that the payment went through. A fingerprint that is stored and
compared across processes must be a stable hash (``hashlib.sha256``) of a canonical form.
"""

from __future__ import annotations

import json
from pathlib import Path

from autograder.labs import load_module

# A copy of the reference solution, patched. The world runs this module afresh for each replica (so
# create_app must be defined here, not borrowed: a borrowed one would be re-run from solution.py, unpatched).
_solution = load_module(Path(__file__).parent.parent, "solution", "chaos_dojo_labs.lab02.fingerprint_with_hash")


def fingerprint(req) -> str:
    """A hash of the request's canonical JSON: equal payloads, equal fingerprints (in this process)."""
    canonical = json.dumps(req.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return str(hash(canonical))


_solution.fingerprint = fingerprint


def create_app():
    """The reference solution's service, fingerprinting with ``hash()``."""
    return _solution.create_app()
