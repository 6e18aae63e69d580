"""Named random sub-streams derived from one seed.

Every random draw in a world comes from ``world.streams[name]``, a
``random.Random`` seeded from SHA-256 of the world's seed and a stable name such as
``"network/orders-0->orders-db"``. Adding a component creates new names and never
shifts the draws of an existing one, and nothing depends on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
import random

from .errors import BadSeedError


def check_seed(seed: object) -> int:
    """Return ``seed`` if it is a usable seed, else raise BadSeedError saying why."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadSeedError(
            f"seed={seed!r} is a {type(seed).__name__}; a world needs a non-negative int "
            f"seed, for example World(seed=7), so that its runs replay exactly"
        )
    if seed < 0:
        raise BadSeedError(f"seed={seed!r} is negative; use a non-negative int, for example World(seed=7)")
    return seed


def derive(seed: int, name: str) -> int:
    """The 64-bit seed of the sub-stream ``name`` of ``seed``."""
    digest = hashlib.sha256(f"chaos-dojo:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Streams:
    """One seed, many independent named ``random.Random`` streams (created on first use)."""

    def __init__(self, seed: int) -> None:
        self.seed = check_seed(seed)
        self._streams: dict[str, random.Random] = {}

    def __getitem__(self, name: str) -> random.Random:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = random.Random(derive(self.seed, name))
        return stream
