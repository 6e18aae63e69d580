"""The world's event log: every message, request, storage operation, crash and commit.

Each entry is a tuple ``(time, kind, *fields)`` of plain values (str, int, float,
bool, None, tuples of those), appended in the order things happen. The log is
what ``World.fingerprint()`` hashes, so two runs with the same seed produce the
same log entry for entry, in any process and with any ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

Entry = tuple[Any, ...]


class Recorder:
    """An append-only log of what happened in a world, in virtual-time order.

    Example::

        world.recorder.entries("http.response")[:3]
        # [(0.0031, 'http.response', 'orders-0', 'client-0', 7, 201), ...]
    """

    def __init__(self) -> None:
        self.log: list[Entry] = []

    def __len__(self) -> int:
        return len(self.log)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.log)

    def entries(self, kind: str | None = None) -> list[Entry]:
        """Every entry, or only those of one kind (``"net.drop"``, ``"node.crash"``...)."""
        if kind is None:
            return list(self.log)
        return [e for e in self.log if e[1] == kind]

    def counts(self) -> dict[str, int]:
        """How many entries of each kind, sorted by kind."""
        return dict(sorted(Counter(e[1] for e in self.log).items()))

    def fingerprint(self, extra: list[str] = ()) -> str:  # type: ignore[assignment]
        """SHA-256 (hex) of the whole log in a canonical text form, then of the ``extra`` lines."""
        digest = hashlib.sha256()
        for entry in self.log:
            digest.update(repr(entry).encode())
            digest.update(b"\n")
        for line in extra:
            digest.update(line.encode())
            digest.update(b"\n")
        return digest.hexdigest()
