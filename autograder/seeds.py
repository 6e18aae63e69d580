"""Seed banks: which seeds a lab's checks run.

A lab is checked on two banks of seeds:

* ``visible``: the self-checks a learner runs in the notebook; anyone can see them.
* ``hidden``: what grading runs. Learners have the whole repository, so for graded
  assessments the hidden bank derives from a grading secret (the environment
  variable ``CHAOS_DOJO_GRADING_SECRET``, set only where grading runs) through
  HMAC-SHA256; code that passes only the seeds it has seen fails there. Without a
  secret, a default hidden bank serves self-paced learners.

The two banks never share a seed, and the same inputs always give the same bank.

Example::

    seed_bank("02-idempotency", "visible", 5)   # e.g. [81731, 2291, ...]
    seed_bank("02-idempotency", "hidden", 50, secret="s3cret")
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Literal

GRADING_SECRET_ENV = "CHAOS_DOJO_GRADING_SECRET"
SEED_SPACE = 2**31
VISIBLE_MAX = 1000

Bank = Literal["visible", "hidden"]


def _stream(key: bytes, label: str):
    counter = 0
    while True:
        block = hmac.new(key, f"{label}:{counter}".encode(), hashlib.sha256).digest()
        for i in range(0, len(block), 4):
            yield int.from_bytes(block[i : i + 4], "big") % SEED_SPACE
        counter += 1


def seed_bank(lab: str, bank: Bank, size: int, *, secret: str | None = None) -> list[int]:
    """The first ``size`` seeds of ``lab``'s ``bank`` ("visible" or "hidden").

    The hidden bank uses ``secret``, else the ``CHAOS_DOJO_GRADING_SECRET``
    environment variable, else a public default. It never contains a visible seed.

    Raises:
        ValueError: an empty lab name, an unknown bank, or a size that is not a positive int.
    """
    if not isinstance(lab, str) or not lab:
        raise ValueError(f"lab={lab!r}: name the lab, e.g. '02-idempotency'")
    if bank not in ("visible", "hidden"):
        raise ValueError(f"bank={bank!r}: use 'visible' (self-checks) or 'hidden' (grading)")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r}: ask for a whole number of seeds >= 1")
    if bank == "visible":
        if size > VISIBLE_MAX:
            raise ValueError(f"size={size!r}: a visible bank holds at most {VISIBLE_MAX} seeds")
        return _take(_stream(b"chaos-dojo-visible", lab), size, exclude=set())
    if secret is None:
        secret = os.environ.get(GRADING_SECRET_ENV) or None
    key = b"chaos-dojo-hidden-default" if secret is None else b"chaos-dojo-hidden:" + secret.encode()
    visible = set(_take(_stream(b"chaos-dojo-visible", lab), VISIBLE_MAX, exclude=set()))
    return _take(_stream(key, lab), size, exclude=visible)


def _take(stream, size: int, exclude: set[int]) -> list[int]:
    out: list[int] = []
    seen = set(exclude)
    for seed in stream:
        if seed in seen:
            continue
        seen.add(seed)
        out.append(seed)
        if len(out) == size:
            return out
    raise AssertionError("unreachable: the stream is infinite")  # pragma: no cover
